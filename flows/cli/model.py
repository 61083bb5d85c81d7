"""`citeops train`, `citeops evaluate`, `citeops bench train` (registered on the root app)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the model commands to the root and bench apps."""
