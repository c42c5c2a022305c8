"""The one base of every error a user can fix: its message is one sentence for them, naming the
problem and the fix, and it carries the process's exit status (the CLI prints the message and
exits with it; nothing else is caught there).

    CharrnnError     exit 1: a runtime failure (bad data, a corrupt checkpoint, a diverged run)
    UsageError       exit 2: a bad command line or config setting
"""

from __future__ import annotations


class CharrnnError(Exception):
    """An error with a message for the user; exit_code is the process's exit status (1)."""

    exit_code = 1
    is_error = True        # False: a stop the user asked for, said without "error:"

    def __init__(self, message: str = "", exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CharrnnError):
    """A bad command line or setting: exit status 2, as for click's own usage errors."""

    exit_code = 2
