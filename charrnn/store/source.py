"""What a run records of its text, so that any command finds it again and knows it for the same
text: the checkpoint's train state keeps this record (TrainState.corpus), `--resume` and
`sample --novelty` read it.

    chars, crc32   the fingerprint: the number of ids of the split, and a CRC-32 of them
    given          data.path as the user gave it (for messages; config.yaml keeps it too)
    paths          each entry of data.path made absolute
    from_run       each entry relative to the run folder

A relative data.path names a place relative to the working directory of `charrnn train`; the
record lets a later command, run from anywhere, find it: beside the run folder as it was (the
project moved or copied as a whole), else at its absolute place. A data.path changed with
--set is taken as given.
"""

from __future__ import annotations

import glob
import os
import re
import zlib

import numpy as np

from charrnn.store.text import DataError

_GLOB = re.compile(r"[*?[]")


def fingerprint(train_ids: np.ndarray, val_ids: np.ndarray) -> dict:
    """{"chars": N, "crc32": checksum of the ids}: enough to tell that a run's text changed
    (one pass of zlib's crc32 over them)."""
    crc = zlib.crc32(np.ascontiguousarray(val_ids).data,
                     zlib.crc32(np.ascontiguousarray(train_ids).data))
    return {"chars": int(len(train_ids) + len(val_ids)), "crc32": int(crc)}


def changed(saved: dict | None, now: dict) -> str | None:
    """How the text differs from the one a record was made from ('N characters then, M now,
    different contents'), or None when it is the same or the record has no fingerprint
    (older checkpoints: no check)."""
    if not saved or "crc32" not in saved:
        return None
    if (saved.get("chars"), saved.get("crc32")) == (now["chars"], now["crc32"]):
        return None
    return f"{saved.get('chars')} characters then, {now['chars']} now, different contents"


def _entries(spec) -> list[str]:
    return [spec] if isinstance(spec, str) else list(spec)


def record(spec, read_spec, run_dir: str) -> dict:
    """The places of data.path `spec` (as given), read at `read_spec` (where it was found), for
    a run in run_dir."""
    places = [os.path.abspath(p) if p != "-" else p for p in _entries(read_spec)]
    home = os.path.abspath(run_dir)
    return {"given": spec, "paths": places,
            "from_run": [os.path.relpath(p, home) if p != "-" else p for p in places]}


def _exists(path: str) -> bool:
    return bool(glob.glob(path, recursive=True)) if _GLOB.search(path) else os.path.lexists(path)


def locate(spec, saved: dict | None, run_dir: str, fix: str):
    """data.path `spec` as a run in run_dir can read it from this working directory: each entry
    beside the run folder as recorded, else at its recorded absolute place, else as given.
    A spec other than the recorded one (a --set) is taken as given. DataError naming `fix`
    (the command that sets another path) when an entry is found nowhere."""
    if not saved or saved.get("given") != spec or "paths" not in saved:
        return spec
    home = os.path.abspath(run_dir)
    found = []
    for entry, path, rel in zip(_entries(spec), saved["paths"], saved["from_run"]):
        if entry == "-":
            found.append(entry)
            continue
        tries = [entry] if os.path.isabs(entry) else \
            [os.path.normpath(os.path.join(home, rel)), path, entry]
        place = next((p for p in tries if _exists(p)), None)
        if place is None:
            looked = " or ".join(dict.fromkeys(tries))
            raise DataError(f"the run's text {entry} is gone (looked for {looked}); give its new "
                            f"place: {fix}")
        found.append(place)
    return found[0] if isinstance(spec, str) else found
