"""Writing files so that a crash, Ctrl-C or a full disk never leaves half of one."""

from __future__ import annotations

import os
import tempfile


def write_atomically(path: str, data: bytes) -> None:
    """Replace `path` with `data`: a temporary file in the same folder, fsync, then rename.

    A reader sees either the old file or the new one, never a mixture; on any failure the
    temporary file is removed and the old file is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="." + os.path.basename(path), dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())     # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
