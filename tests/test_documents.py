"""Documents mode on a tiny list of names: batches, the trainer's resets, the masked loss,
per-document evaluation, samples that are one document each, novelty, several temperatures."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.config import Config
from charrnn.fast.parallel import DataParallel
from charrnn.infer.evaluate import evaluate_documents, evaluate_ids
from charrnn.nn import ops
from charrnn.store.checkpoint import load_checkpoint, save_checkpoint
from charrnn.store.corpus import join_documents, novelty_marker
from charrnn.train.docbatch import PAD, DocumentStreams, RandomPieces
from charrnn.optim import SGD
from charrnn.store.vocab import EOD, Vocab
from tests.conftest import tiny_model

NAMES = ["anna", "bo", "cyrilla", "dee", "eve", "fitzgeraldo", "gus", "hal", "ivy", "jo",
         "kim", "lou", "maximiliana", "ned", "ola", "pia", "quinn", "rob", "sue", "tom"]


def names_ids():
    vocab = Vocab.from_text("".join(NAMES), eod=EOD)
    return vocab, vocab.encode(join_documents(NAMES))


def rows_never_cross_a_boundary(batches, vocab, K):
    """Replays what the trainer carries; returns the documents read, in each stream's order."""
    eod = vocab.eod_id
    open_doc = [None] * batches.batch_size        # the text of the document a row is in, or None
    seen = []
    for k in range(K):
        x, y = batches.get(k)
        resets = batches.resets(k)
        for b in range(batches.batch_size):
            scored = y[b] != PAD
            n = int(scored.sum())
            assert scored[:n].all() and not scored[n:].any()      # padding only at the end
            if resets[b]:
                assert x[b, 0] == eod                              # a document's start symbol
                open_doc[b] = ""
            else:
                assert open_doc[b] is not None and x[b, 0] != eod  # continues a document
            assert not (x[b, 1:n] == eod).any()                    # no second document inside
            open_doc[b] += vocab.decode(y[b, :n])
            if n and y[b, n - 1] == eod:                           # document ended: no carry
                seen.append(open_doc[b][:-1])
                open_doc[b] = None
            elif n == 0:                                           # a stream ran out: padding
                open_doc[b] = None
            else:
                assert n == batches.seq_len                        # a full row, to be continued
    return seen


@pytest.mark.parametrize("T", [3, 5, 12])
def test_contiguous_document_batches_never_carry_state_across_a_boundary(T):
    vocab, ids = names_ids()
    batches = DocumentStreams(ids, vocab.eod_id, batch_size=3, seq_len=T)
    seen = rows_never_cross_a_boundary(batches, vocab, batches.batches_per_epoch)
    assert sorted(seen) == sorted(NAMES)                  # every name, whole, once an epoch


def test_random_pieces_always_start_from_zero_and_stay_in_one_document():
    vocab, ids = names_ids()
    batches = RandomPieces(ids, vocab.eod_id, 4, 6, np.random.default_rng(0))
    for _ in range(20):
        x, y = batches.get(0)
        assert batches.resets(0).all() and not batches.stateful
        for b in range(4):
            n = int((y[b] != PAD).sum())
            assert not (x[b, 1:n] == vocab.eod_id).any()


def test_the_trainer_zeroes_exactly_the_rows_whose_document_starts(tmp_path):
    from charrnn.train import loop
    from charrnn.train.run import prepare

    (tmp_path / "names.txt").write_text("\n".join(NAMES * 3) + "\n")
    cfg = Config()
    cfg.data.path, cfg.data.documents = str(tmp_path / "names.txt"), "lines"
    cfg.model.hidden_size, cfg.model.embed_size, cfg.model.layers = 6, 3, 1
    cfg.train.batch_size, cfg.train.seq_len, cfg.train.threads = 4, 4, 1
    cfg.train.out_dir = str(tmp_path / "run")
    run = prepare(cfg)
    received = []
    real = run.engine.stepper.loss_and_grad
    run.engine.stepper.loss_and_grad = lambda x, y, carry, **kw: (received.append(carry), real(x, y, carry, **kw))[1]
    for _ in range(run.batches.batches_per_epoch):
        k = run.progress.position
        resets = run.batches.resets(k)
        before = run.engine.carry
        loop.train_step(run)
        carry = received[-1]
        if k == 0:
            assert carry is None
            continue
        for part, old in zip(carry, before):
            assert not part[:, resets].any()                       # a new document: zeros
            np.testing.assert_array_equal(part[:, ~resets], old[:, ~resets])   # carried as is


def test_the_masked_loss_ignores_padding_and_matches_finite_differences():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 5))
    targets = np.array([1, PAD, 3, 0, PAD, 4])
    keep = targets >= 0
    loss, probs = ops.softmax_cross_entropy_forward(logits, targets)
    assert loss == pytest.approx(ops.softmax_cross_entropy_forward(logits[keep], targets[keep])[0],
                                 rel=1e-14)
    grad = ops.softmax_cross_entropy_backward(probs, targets)
    assert not grad[~keep].any()
    eps, numeric = 1e-6, np.zeros_like(logits)
    for i in np.ndindex(*logits.shape):
        d = np.zeros_like(logits)
        d[i] = eps
        numeric[i] = (ops.softmax_cross_entropy_forward(logits + d, targets)[0]
                      - ops.softmax_cross_entropy_forward(logits - d, targets)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-8)


def test_sharded_padded_step_equals_the_full_batch_step():
    vocab, ids = names_ids()
    x, y = DocumentStreams(ids, vocab.eod_id, batch_size=5, seq_len=6).get(0)
    y[:2, 1:] = PAD                       # shards with very different numbers of scored targets
    model = tiny_model("gru", vocab=len(vocab), hidden=5, embed=3)
    loss, _, _ = model.loss_and_grad(x, y)
    expected = model.grads.flat.copy()
    dp = DataParallel(model, SGD(model.params, 0.1), 2, processes=False)
    try:
        got, _, _ = dp.loss_and_grad(x, y)
    finally:
        dp.close()
    assert got == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(model.grads.flat, expected, rtol=1e-10, atol=1e-13)


def test_per_document_evaluation_equals_evaluating_each_document_alone():
    vocab, ids = names_ids()
    model = tiny_model("lstm", vocab=len(vocab), hidden=6, embed=3, scale=2.0)
    nll, counts = evaluate_documents(model, ids, vocab.eod_id, chunk_len=8)   # 3 take the long way
    assert counts.tolist() == [len(n) + 1 for n in NAMES]
    for name, total in zip(NAMES, nll):
        alone, n = evaluate_ids(model, vocab.encode(EOD + name + EOD), pipeline=False)
        assert total == pytest.approx(alone, rel=1e-12) and n == len(name) + 1
    assert len(evaluate_documents(model, ids, vocab.eod_id, max_chars=10)[0]) == 2  # 5 + 3


# -- through the command line ---------------------------------------------------------------

@pytest.fixture(scope="module")
def names_run(tmp_path_factory):
    """A documents-mode checkpoint trained for a few steps on the names (a second of work)."""
    root = tmp_path_factory.mktemp("names")
    (root / "names.txt").write_text("\n".join(NAMES * 5 + ["xavier"]) + "\n")
    r = CliRunner().invoke(cli, ["train", "--data", str(root / "names.txt"), "-q",
                                 "--set", "data.documents=lines", "--set", "model.hidden_size=16",
                                 "--set", "model.layers=1", "--set", "train.batch_size=4",
                                 "--set", "train.seq_len=8", "--set", "train.max_steps=30",
                                 "--set", "train.threads=1", "--set", f"train.out_dir={root / 'run'}"])
    assert r.exit_code == 0, r.output
    return root


def sample(run, *args):
    r = CliRunner().invoke(cli, ["sample", str(run / "run"), *map(str, args)])
    assert r.exit_code == 0, r.output
    return r


def test_the_checkpoint_keeps_its_end_of_document_symbol(names_run, tmp_path):
    ckpt = load_checkpoint(str(names_run / "run" / "last.safetensors"))
    assert ckpt.vocab.eod == EOD and ckpt.config.data.documents == "lines"
    model = ckpt.build_model()
    save_checkpoint(str(tmp_path / "again.safetensors"), model, ckpt.vocab, ckpt.config)
    assert load_checkpoint(str(tmp_path / "again.safetensors")).vocab == ckpt.vocab


def test_samples_are_one_name_each_and_end_at_the_symbol(names_run):
    r = sample(names_run, "--num-samples", 20, "--seed", 3, "-n", 300, "--json")
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 20
    for rec in records:
        assert rec["stopped"] and "\n" not in rec["text"] and EOD not in rec["text"]
    text = sample(names_run, "--num-samples", 20, "--seed", 3, "-n", 300).stdout
    assert text.splitlines() == [rec["text"] for rec in records]      # one name per line


def test_novelty_marks_copies_of_training_and_validation_lines(names_run):
    from charrnn.config import DataConfig

    data = DataConfig(path=str(names_run / "names.txt"), documents="lines")
    mark = novelty_marker(data)
    assert mark("anna") == "train" and mark("xavier") == "val" and mark("annabel") == "new"
    r = sample(names_run, "--num-samples", 30, "--seed", 1, "-n", 100, "--json")   # default on
    records = [json.loads(line) for line in r.stdout.splitlines()]
    for rec in records:
        assert rec["novelty"] == mark(rec["text"])
    new = sum(rec["novelty"] == "new" for rec in records)
    assert f"novelty: {new} of 30 samples new ({new / 30:.0%});" in r.stderr


def test_several_temperatures_are_labelled_and_reproducible(names_run):
    args = ("--num-samples", 4, "--seed", 5, "-n", 50)
    out = sample(names_run, *args, "-t", "0.5,1,2").stdout
    assert out == sample(names_run, *args, "-t", "0.5,1,2").stdout
    groups = out.split("\n\n")
    assert [g.splitlines()[0] for g in groups] == [f"--- temperature {t} ---" for t in ("0.5", "1", "2")]
    for t, group in zip(("0.5", "1", "2"), groups):       # each: the same seed's draws at that t
        assert group.split("\n", 1)[1].rstrip("\n") == sample(names_run, *args, "-t", t).stdout.rstrip("\n")


def test_eval_scores_each_document_from_a_zero_state(names_run, tmp_path):
    (tmp_path / "held.txt").write_text("anna\n\nbo\n")
    r = CliRunner().invoke(cli, ["eval", str(names_run / "run"), str(tmp_path / "held.txt"), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert [d["chars_scored"] for d in got["documents"]] == [5, 3] and got["chars_scored"] == 8
    total = sum(d["loss"] * d["chars_scored"] for d in got["documents"])
    assert got["loss"] == pytest.approx(total / 8, rel=1e-12)


def test_checkpoints_without_documents_store_no_symbol_and_load_as_before(tmp_path):
    from charrnn.store.checkpoint import _header_metadata
    from tests.conftest import FORMAT_CHECKPOINT, FORMAT_VOCAB, save_tiny_checkpoint

    path, _, _ = save_tiny_checkpoint(tmp_path / "plain.safetensors", FORMAT_VOCAB, **FORMAT_CHECKPOINT)
    meta = json.loads(_header_metadata(open(path, "rb").read())["charrnn"])
    assert "eod" not in meta and load_checkpoint(path).vocab.eod is None
    with pytest.raises(ValueError, match="not among the symbols"):
        Vocab(["a", "b"], eod=EOD)


def test_a_documents_run_resumes_bit_for_bit(tmp_path):
    (tmp_path / "names.txt").write_text("\n".join(NAMES * 3) + "\n")
    common = ["--data", str(tmp_path / "names.txt"), "-q", "--set", "data.documents=lines",
              "--set", "model.hidden_size=8", "--set", "model.layers=1", "--set",
              "train.batch_size=4", "--set", "train.seq_len=5", "--set", "train.threads=1",
              "--set", "train.eval_every=5", "--set", "train.lr_schedule=constant"]
    a, b = straight_and_resumed(common, tmp_path)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])


def straight_and_resumed(common, tmp_path, steps=12, stop=7):
    """(checkpoint of `charrnn train COMMON` run for `steps` steps in one go, checkpoint of the
    same run stopped at `stop` and resumed to `steps`), from run folders a and b in tmp_path.
    COMMON should keep a constant rate: a cosine's horizon would move with max_steps."""
    for out, n in (("a", steps), ("b", stop)):
        r = CliRunner().invoke(cli, ["train", *common, "--set", f"train.max_steps={n}",
                                     "--set", f"train.out_dir={tmp_path / out}"])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "b"), "-q",
                                 "--set", f"train.max_steps={steps}"])
    assert r.exit_code == 0, r.output
    return tuple(load_checkpoint(str(tmp_path / d / "last.safetensors")) for d in "ab")


def test_the_periodic_sample_shows_one_document_per_line(names_run):
    from charrnn.train import loop
    from charrnn.train.run import open_run

    ckpt = load_checkpoint(str(names_run / "run" / "last.safetensors"))
    cfg = ckpt.config
    cfg.train.out_dir = str(names_run / "other")
    text = loop.sample_text(open_run(cfg))
    assert EOD not in text and text.count("\n") >= 2
