"""An epoch of documents batching trains on every training character exactly once, whatever the
document lengths, and no row carries state across a document boundary."""

import re

import numpy as np
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from charrnn.cli import cli
from charrnn.train.docbatch import PAD, DocumentStreams, RandomPieces

EOD = 0


def corpus(lengths):
    """ids of EOD d_1 EOD ... d_n EOD where every character's id is its position (EOD is 0)."""
    ids = [EOD]
    for n in lengths:
        ids += list(range(len(ids), len(ids) + n)) + [EOD]
    return np.array(ids, np.int64)


def replay(batches, carried: bool):
    """Every target of one epoch; asserts a row holds one document and continues its stream."""
    B, T = batches.batch_size, batches.seq_len
    targets, last = [], [None] * B       # last: the row's final target if it was a full row
    for k in range(batches.batches_per_epoch):
        x, y = batches.get(k)
        resets = batches.resets(k)
        for b in range(B):
            n = int((y[b] != PAD).sum())
            assert (y[b, :n] != PAD).all() and (x[b, n:] == EOD).all()   # padding at the end
            assert not (x[b, 1:n] == EOD).any()                          # one document a row
            if not carried or (n and x[b, 0] == EOD):   # a zero state: a document starts,
                assert resets[b]                          # or a random piece (no carry)
            elif n:                                       # continues the row before it
                assert not resets[b] and last[b] == x[b, 0]
            last[b] = int(y[b, n - 1]) if n == T and y[b, n - 1] != EOD else None
            targets += y[b, :n].tolist()
    return targets


lengths = st.one_of(
    st.lists(st.integers(1, 6), min_size=1, max_size=60),                          # many short
    st.tuples(st.lists(st.integers(1, 6), min_size=1, max_size=40),
              st.lists(st.integers(40, 300), min_size=1, max_size=3)).map(lambda p: p[0] + p[1]),
    st.lists(st.integers(1, 30), min_size=1, max_size=30).map(lambda s: s + [sum(s) + 7]),
).flatmap(st.permutations)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)   # reproducible
@given(lengths=lengths, B=st.integers(1, 9), T=st.integers(1, 40), seed=st.integers(0, 3))
def test_an_epoch_scores_every_training_character_once(lengths, B, T, seed):
    ids = corpus(lengths)
    expected = sorted(ids[1:].tolist())               # every character and every EOD after one
    if len(lengths) >= B:
        targets = replay(DocumentStreams(ids, EOD, B, T), carried=True)
        assert sorted(targets) == expected
    pieces = sum(-(-(n + 1) // T) for n in lengths)
    if pieces >= B:
        rng = np.random.default_rng(seed)
        batches = RandomPieces(ids, EOD, B, T, rng)
        epochs = [sorted(replay(batches, carried=False)) for _ in range(2)]
        assert epochs == [expected, expected]


def test_random_pieces_resume_at_any_batch_of_an_epoch():
    ids = corpus([3, 9, 1, 40, 2, 2, 7, 5, 11])
    rng = np.random.default_rng(5)
    batches = RandomPieces(ids, EOD, 3, 4, rng)
    seen, saved = [], []
    for _ in range(2 * batches.batches_per_epoch):
        saved.append(rng.bit_generator.state)
        seen.append(batches.get(len(seen) % batches.batches_per_epoch))
    first, second = seen[:batches.batches_per_epoch], seen[batches.batches_per_epoch:]
    assert any((a[0] != b[0]).any() for a, b in zip(first, second))       # a new order
    for k in (1, batches.batches_per_epoch - 1, batches.batches_per_epoch + 2):
        rng2 = np.random.default_rng(0)
        rng2.bit_generator.state = saved[k]
        again = RandomPieces(ids, EOD, 3, 4, rng2).get(k % batches.batches_per_epoch)
        np.testing.assert_array_equal(again[0], seen[k][0])
        np.testing.assert_array_equal(again[1], seen[k][1])


def names_and_one_long_line(path, names=500, long=6000):
    letters = "abcdefghijklmnopqrstuvwxyz"
    rows = ["".join(letters[(i * 7 + j * 3) % 26] for j in range(3 + i % 6)) for i in range(names)]
    rows.insert(250, "".join(letters[(j * 5) % 26] for j in range(long)))
    path.write_text("\n".join(rows) + "\n")
    return rows


def sum_targets(tmp_path, docs):
    """Targets of the training documents: each one's characters and its EOD."""
    rows = (tmp_path / "n.txt").read_text().split("\n")[:-1][:docs]
    return sum(len(r) + 1 for r in rows)


def test_documents_of_very_different_lengths_train_on_the_whole_text(tmp_path):
    """500 short names and one line of 6,000 characters: every piece is in an epoch."""
    names_and_one_long_line(tmp_path / "n.txt")
    for batch in (8, 32):
        result = CliRunner().invoke(cli, [
            "train", "--data", str(tmp_path / "n.txt"), "--dry-run", "--set", "data.documents=lines",
            "--set", f"train.batch_size={batch}", "--set", "train.seq_len=64",
            "--set", "model.hidden_size=8", "--set", f"train.out_dir={tmp_path / 'r'}"])
        assert result.exit_code == 0, result.output
        line = next(s for s in result.stderr.splitlines() if "packed into" in s)
        # the long line is 94 pieces of 64 (6,001 inputs), every name one piece: the
        # streams are as long as the long line's, the rows of names beside it
        found = re.search(r"([\d,]+) documents \(([\d,]+) pieces .* ([\d,]+) steps an epoch; "
                          r"([\d.]+)% of the slots are padding", line)
        docs, pieces, steps = (int(g.replace(",", "")) for g in found.groups()[:3])
        assert docs > 251 and pieces == docs - 1 + 94           # the long line is in training
        assert steps == max(94, -(-pieces // batch))
        assert abs(float(found[4]) / 100 - (1 - sum_targets(tmp_path, docs) / (steps * batch * 64))) < 1e-3


def test_a_random_documents_run_resumes_bit_for_bit_across_epochs(tmp_path):
    """Each epoch's order comes from the saved generator: 7 steps, then 5 more, give the
    weights of 12 in one go (an epoch here is a few steps: the runs cross new orders)."""
    from tests.test_documents import straight_and_resumed

    names = ["anna", "bo", "cyrilla", "dee", "eve", "fitzgeraldo", "gus", "hal", "ivy", "jo"]
    (tmp_path / "names.txt").write_text("\n".join(names * 2) + "\n")
    common = ["--data", str(tmp_path / "names.txt"), "-q", "--set", "data.documents=lines",
              "--set", "data.batching=random", "--set", "model.hidden_size=8", "--set",
              "model.layers=1", "--set", "train.batch_size=4", "--set", "train.seq_len=5",
              "--set", "train.threads=1", "--set", "train.eval_every=5",
              "--set", "train.lr_schedule=constant"]
    a, b = straight_and_resumed(common, tmp_path)
    assert a.train_state["progress"]["epoch"] >= 2
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])


def test_a_documents_run_saved_before_the_whole_text_packing_says_it_goes_on_otherwise(tmp_path):
    """A checkpoint without batch_order (written before version 2) resumes with a note that its
    batches are not the ones it was saved with; one that has it resumes without the note."""
    import json

    from tests.test_checkpoint import rewrite

    (tmp_path / "names.txt").write_text("\n".join(["anna", "bo", "cyrilla", "dee", "eve"] * 8) + "\n")
    common = ["-q", "--set", "model.hidden_size=8", "--set", "model.layers=1", "--set",
              "train.threads=1", "--set", "train.eval_every=4"]
    r = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "names.txt"), *common,
                                 "--set", "data.documents=lines", "--set", "train.batch_size=4",
                                 "--set", "train.seq_len=5", "--set", "train.max_steps=4",
                                 "--set", f"train.out_dir={tmp_path / 'r'}"])
    assert r.exit_code == 0, r.output
    last = str(tmp_path / "r" / "last.safetensors")
    r = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "r"), "--set", "train.max_steps=5"])
    assert r.exit_code == 0 and "saved by an earlier charrnn" not in r.output, r.output
    with open(last, "rb") as f:
        data = f.read()
    meta = json.loads(json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]["charrnn"])
    assert meta["train_state"].pop("batch_order") == 2
    rewrite(last, meta={"train_state": meta["train_state"]})
    r = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "r"), "--set", "train.max_steps=6"])
    assert r.exit_code == 0, r.output
    assert "this documents-mode run was saved by an earlier charrnn" in r.stderr
