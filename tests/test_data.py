"""Data: reading UTF-8, the train/val split, contiguous batches by hand, random windows."""

import io
import sys
import types

import numpy as np
import pytest

from charrnn.train.data import ContiguousBatches, RandomWindows, make_batches, min_corpus_chars, split_train_val, validate_split

from charrnn.store.text import DataError, read_text
from charrnn.store.vocab import Vocab

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def alphabet_ids():
    v = Vocab.from_text(ALPHABET)
    ids = v.encode(ALPHABET)
    assert ids.tolist() == list(range(26))  # a=0 ... z=25, so the arrays below read as letters
    return ids


# ---------------------------------------------------------------- read_text

def test_read_text_keeps_newlines_and_non_ascii(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("a\r\nb\né—😀\n".encode())
    assert read_text(str(p)) == "a\r\nb\né—😀\n"


def test_read_text_strips_bom(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbfabc")
    assert read_text(str(p)) == "abc"


def test_invalid_utf8_names_path_byte_and_offset(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"hello\xffworld")
    with pytest.raises(DataError) as e:
        read_text(str(p))
    assert str(e.value).startswith(f"{p} is not valid UTF-8: invalid byte 0xff at byte offset 5")


def test_invalid_utf8_offset_counts_the_bom(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"\xef\xbb\xbfab\xe9cd")  # latin-1 'é' after a BOM: offset in the file is 5
    with pytest.raises(DataError, match="invalid byte 0xe9 at byte offset 5"):
        read_text(str(p))


def test_missing_file_names_path(tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(DataError, match=f"^{missing} does not exist"):
        read_text(missing)


def test_read_text_from_stdin(monkeypatch):
    fake = types.SimpleNamespace(buffer=io.BytesIO("ROMEO: é\n".encode()))
    monkeypatch.setattr(sys, "stdin", fake)
    assert read_text("-") == "ROMEO: é\n"


def test_bad_utf8_on_stdin_says_standard_input(monkeypatch):
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(b"ab\x80")))
    with pytest.raises(DataError, match="^standard input is not valid UTF-8: invalid byte 0x80"):
        read_text("-")


# ---------------------------------------------------------------- split

def test_split_last_fraction_is_validation_and_no_copy():
    ids = np.arange(100, dtype=np.uint8)
    train, val = split_train_val(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    assert np.shares_memory(train, ids) and np.shares_memory(val, ids)


def test_min_corpus_chars_is_the_smallest_that_works():
    for f, B, T in [(0.1, 2, 3), (0.3, 4, 5), (0.05, 1, 1), (0.5, 3, 2)]:
        def ok(n, f=f, B=B, T=T):
            tr, va = split_train_val(np.zeros(n), f)
            return len(tr) >= B * T + 1 and len(va) >= 2
        brute = next(n for n in range(1, 10_000) if ok(n))
        assert min_corpus_chars(f, B, T) == brute


def test_validate_split_small_validation_names_minimum():
    ids = np.arange(10)
    train, val = split_train_val(ids, 0.1)  # 9 / 1
    with pytest.raises(DataError) as e:
        validate_split(train, val, 0.1, batch_size=2, seq_len=3)
    assert "leaves 1" in str(e.value) and "at least 11 characters" in str(e.value)
    validate_split(*split_train_val(np.arange(11), 0.1), 0.1, batch_size=2, seq_len=3)


def test_validate_split_small_training_names_minimum():
    train, val = split_train_val(np.arange(100), 0.5)
    with pytest.raises(DataError, match="at least 132 characters"):
        validate_split(train, val, 0.5, batch_size=13, seq_len=5)  # 66 training chars: int(132 * 0.5) = 66


# ---------------------------------------------------------------- contiguous batches

def test_first_contiguous_batches_by_hand():
    b = ContiguousBatches(alphabet_ids(), batch_size=2, seq_len=3)
    # 26 ids, B=2: streams of L=(26-1)//2=12: "abcdefghijkl" and "mnopqrstuvwx"; 'y' is only a
    # target, 'z' unused. 12 // 3 = 4 batches.
    assert b.batches_per_epoch == 4
    x, y = b.get(0)
    np.testing.assert_array_equal(x, [[0, 1, 2], [12, 13, 14]])     # abc, mno
    np.testing.assert_array_equal(y, [[1, 2, 3], [13, 14, 15]])     # bcd, nop
    x, y = b.get(1)
    np.testing.assert_array_equal(x, [[3, 4, 5], [15, 16, 17]])     # def, pqr
    np.testing.assert_array_equal(y, [[4, 5, 6], [16, 17, 18]])
    x, y = b.get(3)
    np.testing.assert_array_equal(x, [[9, 10, 11], [21, 22, 23]])   # jkl, vwx
    np.testing.assert_array_equal(y, [[10, 11, 12], [22, 23, 24]])  # klm, wxy
    assert x.dtype == np.int64 and y.dtype == np.int64


def epoch_from(batches, position):
    """What the trainer reads from `position` (the next batch) to the end of the epoch."""
    return [(k, *(a.tolist() for a in batches.get(k)))
            for k in range(position, batches.batches_per_epoch)]


def test_epoch_boundary_and_resume_position():
    b = ContiguousBatches(alphabet_ids(), batch_size=2, seq_len=3)
    seen = epoch_from(b, 0)
    assert [k for k, _, _ in seen] == [0, 1, 2, 3] and b.batches_per_epoch == 4
    assert epoch_from(b, 2) == seen[2:]          # a resumed epoch continues where it stopped
    with pytest.raises(IndexError):
        b.get(4)
    with pytest.raises(IndexError):
        b.get(-1)
    # A second epoch is the same batches again, from the start.
    assert epoch_from(b, 0) == seen


def test_smallest_corpus_makes_exactly_one_batch():
    b = ContiguousBatches(np.arange(7), batch_size=2, seq_len=3)  # B*T + 1
    assert b.batches_per_epoch == 1
    x, y = b.get(0)
    np.testing.assert_array_equal(x, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(y, [[1, 2, 3], [4, 5, 6]])


def test_too_small_corpus_states_minimum():
    with pytest.raises(DataError) as e:
        ContiguousBatches(np.arange(100), batch_size=32, seq_len=64)
    assert str(e.value).startswith(
        "the training text has 100 characters; batch_size 32 x seq_len 64 needs at least 2049")
    with pytest.raises(DataError, match="needs at least 7"):
        ContiguousBatches(np.arange(6), batch_size=2, seq_len=3)


def test_contiguous_does_not_copy_the_corpus():
    ids = np.arange(1000, dtype=np.uint16)
    b = ContiguousBatches(ids, batch_size=4, seq_len=10)
    assert np.shares_memory(b._x, ids) and np.shares_memory(b._y, ids)
    x, _ = b.get(0)
    assert not np.shares_memory(x, ids)  # batches never alias the corpus


# ---------------------------------------------------------------- random windows

def test_random_windows_reproducible_and_shifted():
    ids = np.arange(50, dtype=np.uint8)
    a = RandomWindows(ids, 4, 5, np.random.default_rng(7))
    b = RandomWindows(ids, 4, 5, np.random.default_rng(7))
    c = RandomWindows(ids, 4, 5, np.random.default_rng(8))
    for _ in range(3):
        (xa, ya), (xb, yb), (xc, _) = a.get(0), b.get(0), c.get(0)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(ya[:, :-1], xa[:, 1:])  # targets = inputs shifted by one
        # ids are 0..49, so each window is consecutive numbers and y is x + 1.
        np.testing.assert_array_equal(ya, xa + 1)
    assert not np.array_equal(xa, xc)
    assert a.batches_per_epoch == 50 // 20


def test_random_windows_resume_from_rng_state():
    ids = np.arange(40)
    rng = np.random.default_rng(3)
    w = RandomWindows(ids, 2, 4, rng)
    w.get(0)
    state = rng.bit_generator.state
    expected = [x for _, x, _ in epoch_from(w, 1)]
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = state
    w2 = RandomWindows(ids, 2, 4, rng2)
    assert [x for _, x, _ in epoch_from(w2, 1)] == expected


def test_random_windows_cover_both_ends_and_stay_in_range():
    ids = np.arange(8)
    w = RandomWindows(ids, 16, 3, np.random.default_rng(0))
    starts = np.concatenate([w.get(0)[0][:, 0] for _ in range(20)])
    assert starts.min() == 0 and starts.max() == 8 - 3 - 1  # last window's target is ids[7]
    assert w.batches_per_epoch == 1  # at least one batch even when N < B*T


def test_random_windows_too_small():
    with pytest.raises(DataError, match="needs at least 6 \\(random batching\\)"):
        RandomWindows(np.arange(5), 2, 5, np.random.default_rng(0))


def test_make_batches_factory():
    cfg = types.SimpleNamespace(batch_size=2, seq_len=3)
    assert isinstance(make_batches(np.arange(26), cfg, "contiguous"), ContiguousBatches)
    r = make_batches(np.arange(26), cfg, "random", np.random.default_rng(0))
    assert isinstance(r, RandomWindows) and r.stateful is False
    with pytest.raises(ValueError):
        make_batches(np.arange(26), cfg, "shuffled")
