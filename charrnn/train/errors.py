"""The ways a training run stops early, each with a message written for the user."""

from __future__ import annotations


class TrainingError(Exception):
    """Training cannot go on (non-finite loss, unusable run folder, ...): exit status 1."""

    exit_code = 1


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM arrived; last.safetensors holds the state. exit_code is 128 + signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
