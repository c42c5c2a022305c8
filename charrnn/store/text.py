"""Reading a text: the bytes of a file or of stdin, decoded as UTF-8 (charrnn/store/encoding.py
names the encoding of a file that is not), and how messages name it.
"""

from __future__ import annotations

import sys

from charrnn.errors import CharrnnError
from charrnn.store import encoding


class DataError(CharrnnError, ValueError):
    """A corpus that cannot be used; the message is one sentence naming the problem and the fix."""


def read_text(path: str, warn=None) -> str:
    """The text of a UTF-8 file, or of stdin when path is '-'.

    A leading UTF-8 BOM is dropped; newlines are kept exactly as they are (a model trained on
    CRLF text should generate CRLF). Raises DataError for a missing/unreadable file, or for
    bytes that are not UTF-8 (charrnn/store/encoding.py: the message names the encoding and the
    iconv command). warn(message) hears about a text where NUL is frequent (default: stderr).
    """
    return decode_text(read_bytes(path), path, warn)


def read_bytes(path: str) -> bytes:
    """The bytes of a file, or of stdin when path is '-'; DataError when it cannot be read."""
    name = display_name(path)
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{name} does not exist; check the path (or pass '-' for stdin)") from None
    except IsADirectoryError:
        raise DataError(f"{name} is a directory; give the path of a UTF-8 text file") from None
    except OSError as e:
        raise DataError(f"cannot read {name}: {e.strerror or e}") from None


def decode_text(raw: bytes, path: str, warn=None, in_place: bool = False) -> str:
    """read_text's decoding of bytes read from `path` (DataError, warn: as read_text's;
    in_place: the iconv advice converts the file itself, as one found in a folder needs)."""
    try:
        text, warning = encoding.decode(raw, display_name(path), in_place)
    except encoding.EncodingError as e:
        raise DataError(str(e)) from None
    if warning:
        (warn or _stderr_warning)(warning)
    return text


def display_name(path: str) -> str:
    """How messages name a path: 'standard input' for '-'."""
    return "standard input" if path == "-" else path


def _stderr_warning(message: str) -> None:
    print(f"charrnn: warning: {message}", file=sys.stderr)
