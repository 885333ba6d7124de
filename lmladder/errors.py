"""Errors that reach the user as one `error:` line.

`LadderError` is bad input or usage (exit code 2): a missing file, an impossible option,
a corrupt artifact. The message says what is wrong and how to fix it. Anything else that
escapes a command is an internal failure (exit code 1).
"""


class LadderError(Exception):
    """A problem with the user's input; printed as `error: <message>`, exit code 2."""

    exit_code = 2


class GateFailure(Exception):
    """A check that ran and did not pass (e.g. a regression gate); exit code 1."""

    exit_code = 1


class Interrupted(LadderError):
    """Work stopped by SIGINT or SIGTERM before it finished: nothing partial is kept as a
    result; exit code 130 (Ctrl-C) or 143 (SIGTERM)."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.exit_code = 143 if signal_name == "SIGTERM" else 130
