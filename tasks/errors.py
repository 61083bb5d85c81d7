"""Errors a user can meet. Each message says what went wrong and what to do next."""


class CiteopsError(Exception):
    """Base of every error citeops reports to its users as one clear line."""


class DataFileError(CiteopsError):
    """A data file is missing, unreadable or corrupt; the message names the file."""


class ChecksumError(CiteopsError):
    """A downloaded file does not match its recorded SHA-256 sum."""
