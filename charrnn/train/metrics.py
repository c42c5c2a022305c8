"""RUN/metrics.jsonl: one JSON object per logged figure, one per line."""

from __future__ import annotations

import json
import math
import os

from charrnn.fileio import write_atomically


class Metrics:
    """Appends one JSON object per line to RUN/metrics.jsonl, flushed at once.

    A new run (`resumed_at` 0) starts the file afresh: what is there belongs to a run that never
    wrote a checkpoint (a folder with one is refused). A resumed run keeps the lines up to its
    checkpoint's step and drops later ones, which it is about to log again (the run may have
    gone on past its last checkpoint before it was killed), so every step appears once.
    """

    def __init__(self, path: str, resumed_at: int = 0):
        kept = []
        if resumed_at and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        if json.loads(line)["step"] <= resumed_at:
                            kept.append(line if line.endswith("\n") else line + "\n")
                    except (ValueError, KeyError, TypeError):
                        pass                     # a line cut short by a crash
        write_atomically(path, "".join(kept).encode("utf-8"))
        self.file = open(path, "a", encoding="utf-8")

    def log(self, **fields) -> None:
        """One line of standard JSON: a NaN or infinite figure is written as null."""
        fields = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                  for k, v in fields.items()}
        self.file.write(json.dumps(fields, allow_nan=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class NoMetrics:
    """Metrics' calls, writing nothing: a run's processes other than its writer (torchrun)."""

    def log(self, **fields) -> None:
        pass

    def close(self) -> None:
        pass
