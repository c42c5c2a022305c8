"""The ways a training run stops early, each with a message written for the user."""

from __future__ import annotations

from charrnn.errors import CharrnnError


class TrainingError(CharrnnError):
    """Training cannot go on (non-finite loss, unusable run folder, ...): exit status 1."""


class TrainingInterrupted(CharrnnError):
    """SIGINT / SIGTERM arrived; last.safetensors holds the state. exit_code is 128 + signal.
    A stop the user asked for: the CLI says it as a note, not an error."""

    is_error = False

    def __init__(self, message: str, exit_code: int):
        super().__init__(message, exit_code)
