"""Text encodings: the files that are not UTF-8 are recognised and get the right iconv command."""

import numpy as np
import pytest

from charrnn.store.text import DataError, read_text

TEXT = "The quick brown fox jumps over the lazy dog.\nSecond line, café.\n" * 3


def write(tmp_path, data: bytes, name="t.txt"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def error_of(path) -> str:
    with pytest.raises(DataError) as e:
        read_text(path)
    return str(e.value)


@pytest.mark.parametrize("codec, mark, order", [("utf-16-le", b"\xff\xfe", "little-endian"),
                                                ("utf-16-be", b"\xfe\xff", "big-endian")])
def test_utf16_with_a_bom_gets_the_utf16_command(tmp_path, codec, mark, order):
    p = write(tmp_path, mark + TEXT.encode(codec))
    msg = error_of(p)
    assert msg.startswith(f"{p} is UTF-16 text ({order};")
    assert f"iconv -f UTF-16 -t UTF-8 {p} > {p}.utf8.txt" in msg
    assert "latin1" not in msg.lower()


@pytest.mark.parametrize("codec, name", [("utf-16-le", "UTF-16LE"), ("utf-16-be", "UTF-16BE")])
def test_utf16_without_a_bom_is_recognised_though_it_is_valid_utf8(tmp_path, codec, name):
    raw = TEXT.replace("é", "e").encode(codec)
    raw.decode("utf-8")                     # ASCII text in UTF-16 is valid UTF-8, NULs between
    msg = error_of(write(tmp_path, raw))
    assert f"looks like {name} text without a byte-order mark" in msg
    assert f"iconv -f {name} -t UTF-8" in msg


@pytest.mark.parametrize("codec, mark, order, name", [
    ("utf-32-le", b"\xff\xfe\x00\x00", "little-endian", "UTF-32LE"),
    ("utf-32-be", b"\x00\x00\xfe\xff", "big-endian", "UTF-32BE")])
def test_utf32_with_and_without_a_bom(tmp_path, codec, mark, order, name):
    msg = error_of(write(tmp_path, mark + TEXT.encode(codec), "bom.txt"))
    assert f"is UTF-32 text ({order};" in msg and "iconv -f UTF-32 -t UTF-8" in msg
    msg = error_of(write(tmp_path, TEXT.encode(codec), "bare.txt"))
    assert f"looks like {name} text" in msg and f"iconv -f {name} -t UTF-8" in msg


def test_latin1_text_gets_the_latin1_command(tmp_path):
    p = write(tmp_path, "naïve café\n".encode("latin-1"))
    msg = error_of(p)
    assert msg.startswith(f"{p} is not valid UTF-8: invalid byte 0xef at byte offset 2")
    assert f"if it is Latin-1 text, convert it with: iconv -f LATIN1 -t UTF-8 {p}" in msg


def test_cp1252_text_gets_the_cp1252_command(tmp_path):
    # curly quotes and the euro sign are 0x93, 0x94, 0x80 in Windows-1252: C1 controls in Latin-1
    p = write(tmp_path, "caf\u00e9 \u201cquoted\u201d \u20ac5\n".encode("cp1252"))
    msg = error_of(p)
    assert "invalid byte 0xe9 at byte offset 3" in msg
    assert f"if it is Windows-1252 text, convert it with: iconv -f CP1252 -t UTF-8 {p}" in msg


def test_a_nul_heavy_text_is_read_with_a_warning(tmp_path):
    heard = []
    text = "ab\x00\x00\x00c\x00\x00\n" * 10
    assert read_text(write(tmp_path, text.encode()), warn=heard.append) == text
    assert len(heard) == 1 and "has 50 NUL characters (U+0000), among its 3 most frequent" in heard[0]


def test_a_few_nuls_in_ordinary_text_are_not_warned(tmp_path):
    heard = []
    read_text(write(tmp_path, (TEXT + "\x00").encode()), warn=heard.append)
    assert heard == []


def test_the_nul_warning_goes_to_stderr_by_default(tmp_path, capsys):
    read_text(write(tmp_path, b"\x00\x00\x00a"))
    assert capsys.readouterr().err.startswith("charrnn: warning: ")


def test_a_named_binary_file_is_called_binary_not_given_iconv_advice(tmp_path):
    path = tmp_path / "bin.dat"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    with pytest.raises(DataError, match="looks like a binary file, not text") as e:
        read_text(str(path))
    assert "iconv" not in str(e.value)
