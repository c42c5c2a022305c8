"""Checkpoints written by an earlier charrnn (format charrnn/1) load and give the same results.

tests/data/<cell>-v1.safetensors were written by `charrnn train` before the package was
reorganised (2-layer, H=8, E=4, 12 Adam steps, with optimizer state and carried state);
golden-v1.json holds what `charrnn sample` and `charrnn eval` printed for them then, on one
machine: another CPU's BLAS kernel rounds the float32 forward differently, so the loss is compared
to the float32 rounding of its sum and the sampled text is checked draw by draw (tests/numerics.py).
"""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.infer.sample import NOISE_BLOCK
from charrnn.nn.stepper import Stepper
from charrnn.store.checkpoint import load_model
from tests.numerics import dot_bound, sum_rtol

DATA = os.path.join(os.path.dirname(__file__), "data")
GOLDEN = json.load(open(os.path.join(DATA, "golden-v1.json"), encoding="utf-8"))


SAMPLE = dict(prime="The ", seed=7, length=200, temperature=0.8)   # how the golden text was drawn


def draw_margins(model, vocab, text, *, prime, seed, length, temperature):
    """Replay `charrnn sample`'s Gumbel-max draws along `text` (the prime, then the drawn
    characters), feeding the text's own characters: per draw, how far the drawn character's
    score (tempered float32 logit plus float32 noise, added as the sampler adds them) lies below
    the best score; 0.0 where it is the best."""
    ids = [vocab.index(c) for c in text[:len(prime) + length]]
    assert len(ids) == len(prime) + length and length <= NOISE_BLOCK   # one block of noise
    u = np.random.default_rng(seed).random((length, len(vocab)))       # the sampler's uniforms
    with np.errstate(divide="ignore"):
        noise = (-np.log(-np.log(u))).astype(model.dtype)
    stepper = Stepper(model, 1.0 / temperature)
    step = stepper.make_step()
    for t in ids[:len(prime) - 1]:
        stepper.advance(t)
    logits, margins = step(ids[len(prime) - 1]), []
    for j, drawn in enumerate(ids[len(prime):]):
        if j:
            logits = step(ids[len(prime) + j - 1])
        score = logits + noise[j]
        margins.append(float(score.max()) - float(score[drawn]))
    return np.array(margins), float(np.abs(stepper.dec).sum(axis=0).max())


def rounding_of_a_score(model, decoder_colsum):
    """How far two machines' float32 scores of one candidate may differ: its logit is a dot
    product of H + 1 terms (the bias as one) with |o| <= 1, whose inputs carry the rounding of
    the cell's own H + E + 1-term products; both machines round, hence the 2."""
    H, E = model.hidden_size, model.spec.embed_size
    return 2 * (dot_bound(H + 1) + dot_bound(H + E + 1)) * decoder_colsum


@pytest.mark.parametrize("cell", sorted(GOLDEN))
def test_an_old_checkpoint_samples_the_same_text(cell):
    """The same text, except where a draw was within rounding: the committed text's every
    character is the best candidate here, or within the rounding of two machines' scores of it;
    this machine's own text is the best candidate at every draw (the same operations)."""
    ckpt = os.path.join(DATA, f"{cell}-v1.safetensors")
    result = CliRunner().invoke(cli, ["sample", ckpt, "--seed", str(SAMPLE["seed"]), "-n",
                                      str(SAMPLE["length"]), "-t", str(SAMPLE["temperature"]),
                                      "--prime", SAMPLE["prime"]])
    assert result.exit_code == 0, result.output
    model, vocab, _ = load_model(ckpt)
    ours, _ = draw_margins(model, vocab, result.output, **SAMPLE)
    assert not ours.any(), f"the sampler's own draw {np.flatnonzero(ours)[0]} was not its best"
    theirs, colsum = draw_margins(model, vocab, GOLDEN[cell]["sample"], **SAMPLE)
    tol = rounding_of_a_score(model, colsum)
    assert theirs.max() <= tol, (f"draw {theirs.argmax()} of the committed text is "
                                 f"{theirs.max():.3g} below the best, more than rounding ({tol:.3g})")
    assert result.output[len(SAMPLE["prime"]) + SAMPLE["length"]:] == "\n"   # the closing newline


@pytest.mark.parametrize("cell", sorted(GOLDEN))
def test_an_old_checkpoint_evaluates_to_the_same_loss(cell):
    ckpt = os.path.join(DATA, f"{cell}-v1.safetensors")
    result = CliRunner().invoke(cli, ["eval", ckpt, os.path.join(DATA, "golden-text.txt"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    got, want = json.loads(result.output), GOLDEN[cell]["eval"]
    assert got["chars_scored"] == want["chars_scored"]
    # a mean of 437 float64 nlls from float32 logits: each carries the logits' float32 rounding
    assert got["loss"] == pytest.approx(want["loss"], rel=sum_rtol(want["chars_scored"]))


@pytest.mark.parametrize("cell", sorted(GOLDEN))
def test_an_old_checkpoint_resumes(cell, tmp_path):
    """Its optimizer and training state are read back: a resumed run takes two more steps."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(os.path.join(DATA, f"{cell}-v1.safetensors"), run / "last.safetensors")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(open(os.path.join(DATA, "golden-text.txt"), encoding="utf-8").read() * 6,
                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "-q",
                                      "--set", f"data.path={corpus}",
                                      "--set", "train.max_steps=14"])
    assert result.exit_code == 0, result.output
    from charrnn.store.checkpoint import load_checkpoint
    assert load_checkpoint(str(run / "last.safetensors")).train_state["progress"]["step"] == 14
