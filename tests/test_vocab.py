"""Vocab: order, vectorised encode/decode against a per-character reference, dtypes, unknowns."""

import numpy as np
import pytest

from charrnn.store import vocab as vocab_mod
from charrnn.store.vocab import UnknownCharactersError, Vocab

TEXT = "héllo — wörld 😀\nhello\tworld é"


def reference_encode(v, text):
    """The obvious slow version the vectorised encoder must agree with."""
    return [v.symbols.index(c) for c in text]


def test_symbols_are_distinct_characters_in_code_point_order():
    v = Vocab.from_text("cabbage\n")
    assert v.symbols == ["\n", "a", "b", "c", "e", "g"]
    assert len(v) == 6
    assert v.index("\n") == 0 and v.index("g") == 5


def test_non_ascii_order_and_round_trip():
    v = Vocab.from_text(TEXT)
    assert v.symbols == sorted(set(TEXT))
    assert v.symbols[-1] == "😀" and "—" in v
    ids = v.encode(TEXT)
    assert ids.tolist() == reference_encode(v, TEXT)
    assert v.decode(ids) == TEXT


def test_chunked_encoding_matches_reference(monkeypatch):
    # Tiny chunks force chunk boundaries, ASCII-only chunks and mixed chunks in one text.
    monkeypatch.setattr(vocab_mod, "CHUNK", 5)
    text = "plain ascii here, then ünïcödé and 😀😀 and ascii again"
    assert len(list(vocab_mod._chunks(text))) == -(-len(text) // 5)
    v = Vocab.from_text(text)
    assert v.symbols == sorted(set(text))
    assert v.encode(text).tolist() == reference_encode(v, text)
    ids, n, unknown = v.encode_skipping("xyz😀ü🙃q")
    assert v.decode(ids) == "😀ü" and n == 5 and unknown == {"x", "y", "z", "🙃", "q"}


def test_dtype_is_smallest_that_fits():
    assert Vocab.from_text("ab").encode("ba").dtype == np.uint8
    v256 = Vocab([chr(i) for i in range(256)])
    assert v256.encode("\x00\xff").dtype == np.uint8
    assert v256.encode("\xff").tolist() == [255]
    v257 = Vocab([chr(i) for i in range(257)])
    ids = v257.encode("\u0100a")
    assert ids.dtype == np.uint16 and ids.tolist() == [256, 97]
    big = Vocab([chr(0x4E00 + i) for i in range(70_000)])  # beyond uint16
    ids = big.encode(chr(0x4E00 + 69_999))
    assert ids.dtype == np.uint32 and ids.tolist() == [69_999]


def test_unknown_characters_raise_with_set_and_count():
    v = Vocab.from_text("abc")
    with pytest.raises(UnknownCharactersError) as e:
        v.encode("abxxzc😀")
    assert e.value.unknown == {"x", "z", "😀"}
    assert e.value.count == 4
    assert isinstance(e.value, ValueError)
    assert "4 character(s)" in str(e.value)


def test_code_points_above_the_table_are_unknown():
    # 'z' and '😀' are above the largest code point in the vocabulary ('c').
    v = Vocab.from_text("abc")
    ids, n, unknown = v.encode_skipping("azb😀c")
    assert ids.tolist() == [0, 1, 2] and n == 2 and unknown == {"z", "😀"}


def test_skip_with_nothing_unknown():
    v = Vocab.from_text("abc")
    ids, n, unknown = v.encode_skipping("cab")
    assert ids.tolist() == [2, 0, 1] and n == 0 and unknown == set()


def test_empty_text():
    v = Vocab.from_text("ab")
    assert v.encode("").tolist() == [] and v.encode("").dtype == np.uint8
    assert v.decode([]) == ""
    assert len(Vocab.from_text("")) == 0


def test_decode_accepts_lists_and_rejects_bad_ids():
    v = Vocab.from_text("abc")
    assert v.decode([2, 1, 0]) == "cba"
    assert v.decode(np.array([[0, 1], [2, 0]])) == "abca"
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        v.decode([3])
    with pytest.raises(ValueError):
        v.decode([-1])


def test_list_and_json_round_trip_keep_id_order():
    v = Vocab(["z", "é", "a", "😀", "\n"])  # not code-point order: a stored list is kept as is
    assert v.encode("aé😀").tolist() == [2, 1, 3]
    assert Vocab.from_list(v.to_list()) == v
    w = Vocab.from_json(v.to_json())
    assert w.symbols == ["z", "é", "a", "😀", "\n"]
    assert w.decode(w.encode("z\na")) == "z\na"
    assert v.to_json().isascii()


def test_index_and_contains():
    v = Vocab.from_text("hello")
    assert "l" in v and "z" not in v and "ll" not in v
    with pytest.raises(UnknownCharactersError):
        v.index("z")


def test_bad_symbol_lists_rejected():
    with pytest.raises(ValueError, match="single characters"):
        Vocab(["ab"])
    with pytest.raises(ValueError, match="distinct"):
        Vocab(["a", "a"])
