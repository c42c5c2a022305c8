"""Decoding a text file's bytes as UTF-8, and recognising the files that are not UTF-8.

The one place for the rule (charrnn reads UTF-8 only; a file in another encoding gets the
iconv command that converts it):

  a byte-order mark       UTF-32 LE/BE (FF FE 00 00 / 00 00 FE FF), UTF-16 LE/BE (FF FE / FE FF):
                          refused with `iconv -f UTF-32` / `iconv -f UTF-16`; the UTF-8 mark
                          (EF BB BF) is dropped and the text read
  no mark, NUL pattern    in the first SNIFF bytes, at least half the bytes at one offset mod 4
                          (UTF-32) or mod 2 (UTF-16) are NUL and almost none at the others, as in
                          mostly-ASCII text of those encodings: refused with UTF-32LE/BE or
                          UTF-16LE/BE
  invalid UTF-8           the first bad byte and its offset are named; bytes 0x80-0x9f among the
                          bad ones are Windows-1252's printable range (C1 controls in Latin-1),
                          so the advice is -f CP1252, else -f LATIN1
  NUL-heavy valid UTF-8   NUL (U+0000) among the NUL_RANK most frequent characters: decoded, and
                          a warning (a binary file, or an encoding the marks did not show)

The byte-level tests follow the Unicode Standard's BOM table (section 23.8) and the WHATWG
Encoding Standard's treatment of windows-1252 (the label latin1 decodes as windows-1252 there).
"""

from __future__ import annotations

import os
from collections import Counter

from charrnn.fileio import shell_path

UTF8_BOM = b"\xef\xbb\xbf"
# longest first: the UTF-32 LE mark starts with the UTF-16 LE one
BOMS = ((b"\xff\xfe\x00\x00", "UTF-32", "little-endian"), (b"\x00\x00\xfe\xff", "UTF-32", "big-endian"),
        (b"\xff\xfe", "UTF-16", "little-endian"), (b"\xfe\xff", "UTF-16", "big-endian"))
SNIFF = 1 << 16          # bytes looked at for a mark-less UTF-16 / UTF-32 pattern
NUL_RANK = 3             # NUL among this many most frequent characters: warn


class EncodingError(ValueError):
    """Bytes that are not UTF-8 text; the message names the file, what it is and the fix."""


def convert_hint(name: str, encoding: str, in_place: bool = False) -> str:
    """The iconv command that converts file `name` from `encoding` to UTF-8: into a new file
    beside it, or (in_place: a file found in a folder, where a copy beside it would be read
    too) over it, through a hidden temporary file that a folder read leaves out, replaced only
    when iconv succeeded."""
    target = "FILE" if name == "standard input" else name
    if in_place:
        folder, base = os.path.split(target)
        tmp = shell_path(os.path.join(folder, f".{base}.utf8"))
        return (f"convert it in place with: iconv -f {encoding} -t UTF-8 {shell_path(target)} > "
                f"{tmp} && mv {tmp} {shell_path(target)}")
    return f"convert it with: iconv -f {encoding} -t UTF-8 {target} > {target}.utf8.txt"


def _nul_share(sample: bytes, offset: int, period: int) -> float:
    part = sample[offset::period]
    return part.count(0) / len(part) if part else 0.0


def sniff_wide(raw: bytes) -> str | None:
    """'UTF-32LE', 'UTF-32BE', 'UTF-16LE' or 'UTF-16BE' when the first SNIFF bytes (no mark) have
    that encoding's NUL pattern for mostly-ASCII text, else None."""
    sample = raw[:SNIFF]
    if len(sample) < 8:
        return None
    shares4 = [_nul_share(sample, k, 4) for k in range(4)]
    if min(shares4[1:]) >= 0.5 and shares4[0] < 0.1:
        return "UTF-32LE"
    if min(shares4[:3]) >= 0.5 and shares4[3] < 0.1:
        return "UTF-32BE"
    even, odd = _nul_share(sample, 0, 2), _nul_share(sample, 1, 2)
    if odd >= 0.5 and even < 0.1:
        return "UTF-16LE"
    if even >= 0.5 and odd < 0.1:
        return "UTF-16BE"
    return None


def _legacy_hint(raw: bytes, start: int) -> str:
    """CP1252 when a byte in 0x80-0x9f is among the non-UTF-8 bytes from `start`, else LATIN1."""
    tail = raw[start:start + SNIFF]
    text = tail.decode("utf-8", errors="surrogateescape")
    bad = {ord(c) - 0xDC00 for c in text if 0xDC80 <= ord(c) <= 0xDCFF}
    return "CP1252" if any(0x80 <= b <= 0x9F for b in bad) else "LATIN1"


def decode(raw: bytes, name: str, in_place: bool = False) -> tuple[str, str | None]:
    """(text, warning or None) of a UTF-8 file's bytes; `name` names it in messages.

    A leading UTF-8 BOM is dropped; nothing else changes. EncodingError (naming the encoding
    and the iconv command, in_place: one that converts the file itself) for the cases in the
    module docstring.
    """
    for mark, encoding, order in BOMS:
        if raw.startswith(mark):
            raise EncodingError(f"{name} is {encoding} text ({order}; it starts with a {encoding} "
                                f"byte-order mark), not UTF-8; {convert_hint(name, encoding, in_place)}")
    wide = sniff_wide(raw)
    if wide is not None:
        raise EncodingError(f"{name} looks like {wide} text without a byte-order mark (every "
                            f"{'fourth' if wide.startswith('UTF-32') else 'other'} byte is ASCII, "
                            f"the rest NUL), not UTF-8; {convert_hint(name, wide, in_place)}")
    start = len(UTF8_BOM) if raw.startswith(UTF8_BOM) else 0
    try:
        text = str(memoryview(raw)[start:], "utf-8")   # no copy of the bytes after the mark
    except UnicodeDecodeError as e:
        offset = start + e.start
        if b"\x00" in raw[:8000]:          # NUL bytes and not UTF-8: no text encoding fits
            raise EncodingError(f"{name} looks like a binary file, not text: it holds NUL bytes "
                                f"and an invalid UTF-8 byte 0x{raw[offset]:02x} at byte offset "
                                f"{offset}; give a text file") from None
        legacy = _legacy_hint(raw, offset)
        raise EncodingError(
            f"{name} is not valid UTF-8: invalid byte 0x{raw[offset]:02x} at byte offset {offset} "
            f"({e.reason}); if it is {'Windows-1252' if legacy == 'CP1252' else 'Latin-1'} "
            f"text, {convert_hint(name, legacy, in_place)}") from None
    return text, nul_warning(text, name)


def nul_warning(text: str, name: str) -> str | None:
    """A warning when NUL is among the NUL_RANK most frequent characters of `text`."""
    nuls = text.count("\x00")
    if not nuls:
        return None
    if nuls * 100 < len(text) and len(text) > 1000:
        return None      # under 1% of a longer text: never among the top characters of prose
    top = [c for c, _ in Counter(text).most_common(NUL_RANK)]
    if "\x00" not in top:
        return None
    return (f"{name} has {nuls:,} NUL characters (U+0000), among its {NUL_RANK} most frequent; "
            f"is it a binary file, or in another encoding (UTF-16: {convert_hint(name, 'UTF-16')})?")
