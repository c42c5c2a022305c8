"""Writing files so that a crash, Ctrl-C or a full disk never leaves half of one, and removing
the temporary files that an interrupted write (kill -9, power loss) leaves behind."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import sys

# The temporary file of a write to NAME is TEMP_PREFIX + 8 random characters + "." + NAME,
# beside NAME (e.g. .tmp-3f9a0c1e.last.safetensors).
TEMP_PREFIX = ".tmp-"
# What remove_stale_temporaries removes: exactly that shape. The random part also matches
# mkstemp's alphabet, which earlier versions wrote with.
TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[a-z0-9_]{8}\.(?P<target>.+)\Z", re.DOTALL)

_OPEN_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))


def temp_name(name: str) -> str:
    """A fresh temporary file name for a write to `name` (a file name, not a path)."""
    return f"{TEMP_PREFIX}{secrets.token_hex(4)}.{name}"


def _create_temp(path: str) -> tuple[int, str]:
    """Create and open a new temporary file beside `path`; returns (fd, its path)."""
    folder, name = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, temp_name(name))
        try:
            return os.open(tmp, _OPEN_FLAGS, 0o666), tmp   # 0o666 less the umask, as open() gives
        except FileExistsError:                             # 1 in 4 billion: draw again
            continue


def write_atomically(path: str, data: bytes) -> None:
    """Replace `path` with `data`: a temporary file in the same folder, fsync, then rename.

    A reader sees either the old file or the new one, never a mixture; on any failure the
    temporary file is removed and the old file is left as it was.
    """
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_temp_name(name: str) -> bool:
    """Whether `name` (a file name) is one write_atomically gives its temporary files."""
    return TEMP_NAME.match(name) is not None


def remove_stale_temporaries(folder: str) -> list[str]:
    """Remove the temporary files of interrupted writes in `folder` (plain files named as
    write_atomically names them, nothing else); returns the names removed, sorted.

    Call it only where no write to the folder can be under way (a run starting in it).
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:                 # no folder yet: nothing to clean
        return removed
    for entry in entries:
        if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except FileNotFoundError:
                pass
    return sorted(removed)


def shell_path(path: str) -> str:
    """path as a shell word in a command we print: quoted, and never read as an option."""
    return shlex.quote(f"./{path}" if path.startswith("-") else path)


def command_name() -> str:
    """charrnn as the user invoked it, for the commands we print: `charrnn` when that is what
    the PATH finds, else the path they typed (.venv/bin/charrnn), or `python -m charrnn`."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "charrnn"
    if argv0.endswith(os.path.join("charrnn", "__main__.py")):
        return f"{_as_found(sys.executable or 'python')} -m charrnn"
    if os.path.basename(argv0) != "charrnn":          # an embedding program, a test runner
        return "charrnn"
    return _as_found(argv0)


def _as_found(program: str) -> str:
    """program's bare name when the PATH finds that very file under it, else its path."""
    name = os.path.basename(program)
    on_path = shutil.which(name)
    if on_path and os.path.realpath(on_path) == os.path.realpath(program):
        return name
    return shell_path(program)
