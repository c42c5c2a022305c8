"""The run folder: created only when a run is ready to write, refused to a new run when it holds
one, and owned by the running run through an advisory lock on RUN/.lock that the kernel drops
when the process ends, however it ends (kill -9 included), so a killed run never leaves it stuck.

flock(2) where the platform has it (Linux, macOS); elsewhere no lock is taken.
"""

from __future__ import annotations

import os
import tempfile

from charrnn.config import ConfigError
from charrnn.fileio import remove_stale_temporaries, shell_path
from charrnn.store.checkpoint import RUN_CHECKPOINTS
from charrnn.train.errors import TrainingError

try:
    import fcntl
except ImportError:                  # Windows
    fcntl = None

LOCK_NAME = ".lock"


class FolderInUse(TrainingError):
    """Another live process holds the run folder; the message names it and the way out."""


def in_use_message(folder: str) -> str:
    try:
        with open(os.path.join(folder, LOCK_NAME)) as f:
            holder = f.read().strip() or "unknown"
    except OSError:
        holder = "unknown"
    return (f"the run folder {folder} is in use by another charrnn train (process {holder}); "
            f"wait for it to finish or stop it (a new run can go to another train.out_dir)")


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
                f.close()
                raise FolderInUse(in_use_message(folder)) from None
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


def refuse_existing_run(out_dir: str) -> None:
    """ConfigError when out_dir already holds a run's checkpoints: a new run would overwrite them
    and append to its metrics.jsonl. Called before anything in the folder is touched."""
    if in_use(out_dir):
        raise FolderInUse(in_use_message(out_dir))
    _refuse_checkpoints(out_dir)


def _refuse_checkpoints(out_dir: str) -> None:
    if any(os.path.exists(os.path.join(out_dir, name)) for name in RUN_CHECKPOINTS):
        raise ConfigError(f"the output folder {out_dir} already holds a run; continue it with "
                          f"`charrnn train --resume {shell_path(out_dir)}`, or set train.out_dir to another "
                          f"folder for a new run (--set train.out_dir={out_dir.rstrip(os.sep)}-2).")


def prepare_out_dir(out_dir: str) -> bool:
    """Create the run folder if needed and prove it is writable; True if it was created here."""
    created = not os.path.isdir(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise TrainingError(f"train.out_dir {out_dir} is a file, not a folder; set train.out_dir "
                            f"to a folder for the run.")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"cannot create the output folder {out_dir}: {e.strerror}; "
                            f"set train.out_dir to a writable folder.") from None
    try:
        with tempfile.TemporaryFile(dir=out_dir, prefix=".write-test-") as f:
            f.write(b"ok")
            f.flush()
    except OSError as e:
        raise TrainingError(f"the output folder {out_dir} is not writable ({e.strerror}); free "
                            f"some space or make it writable.") from None
    return created


def own_out_dir(out_dir: str, new_run: bool) -> tuple[FolderLock, tuple, bool]:
    """(lock, removed temporaries, created): the run folder, created if needed (created says
    so), locked for this run, and cleaned of temporary files of interrupted writes (safe now
    that no other run writes there). A folder in use by another run is left as it is."""
    created = prepare_out_dir(out_dir)
    lock = FolderLock(out_dir)
    try:
        if new_run:
            _refuse_checkpoints(out_dir)     # again, under the lock: a run may have just begun
        return lock, tuple(remove_stale_temporaries(out_dir)), created
    except BaseException:
        lock.close()
        raise


def in_use(out_dir: str) -> bool:
    """Whether a live run holds out_dir's lock (probed without taking it for long)."""
    path = os.path.join(out_dir, LOCK_NAME)
    if fcntl is None or not os.path.isfile(path):
        return False
    try:
        with open(path) as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return True
    return False


def remove_empty_folder(out_dir: str) -> None:
    """Remove a run folder that holds nothing but its lock file (a run that never began)."""
    try:
        if set(os.listdir(out_dir)) <= {LOCK_NAME}:
            for name in os.listdir(out_dir):
                os.unlink(os.path.join(out_dir, name))
            os.rmdir(out_dir)
    except OSError:
        pass
