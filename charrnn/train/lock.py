"""A running run owns its folder: an advisory lock on RUN/.lock that the kernel drops when the
process ends, however it ends (kill -9 included), so a killed run never leaves it stuck.

flock(2) where the platform has it (Linux, macOS); elsewhere no lock is taken.
"""

from __future__ import annotations

import os

from charrnn.train.errors import TrainingError

try:
    import fcntl
except ImportError:                  # Windows
    fcntl = None

LOCK_NAME = ".lock"


class FolderInUse(TrainingError):
    """Another live process holds the run folder; the message names it and the way out."""


class FolderLock:
    """Hold RUN/.lock for the life of this object; close() releases it and removes the file
    (process exit releases it too, leaving a file the next run takes over).

    The file records the holder's pid for the message a second run gets. Forked workers share
    the open file, which is fine: they end with this process (fast/parallel.py).
    """

    def __init__(self, folder: str):
        self.file, self.path = None, os.path.join(folder, LOCK_NAME)
        if fcntl is None:
            return
        while self.file is None:
            f = open(self.path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise FolderInUse(f"the run folder {folder} is in use by another charrnn train "
                                  f"(process {holder}); wait for it to finish or stop it, or "
                                  f"set train.out_dir to another folder") from None
            if _same_inode(f, self.path):
                self.file = f
            else:                  # its holder removed it as we opened it: take the new one
                f.close()
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            try:
                os.unlink(self.path)        # before unlocking, so no one locks a removed file
            except OSError:
                pass
            self.file.close()
            self.file = None


def _same_inode(f, path: str) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
