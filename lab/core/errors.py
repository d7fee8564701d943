"""The one error type the CLI turns into a one-line message (and exit code 2)."""


class LabError(Exception):
    """A user-facing failure: the message names the object and says what to do."""
