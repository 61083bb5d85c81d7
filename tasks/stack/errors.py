"""Errors a user can meet while starting, stopping or checking the stack."""

from __future__ import annotations

from citeops.tasks.errors import CiteopsError


class StackError(CiteopsError):
    """The stack cannot be started, stopped or reached; the message says what to do."""


class PortTakenError(StackError):
    """A port the stack needs is already used by another program."""


class ServiceStartError(StackError):
    """A service did not answer its health check in time, or exited while starting."""
