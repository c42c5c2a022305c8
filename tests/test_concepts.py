"""docs/concepts.md cannot drift from the code: every command in its ```sh blocks is run here, in a
quick form on a tiny made-up corpus, and the figures the page talks about are checked.

QUICK maps each command of the page, exactly as written there, to the command run here. A new
command in the page fails test_every_command_of_the_page_has_a_quick_form until it is added.
The commands run in the page's order, in one temporary folder laid out like the repository
(configs/, data/shakespeare.txt, docs/), so the runs a command makes are there for the next.
"""

import contextlib
import functools
import importlib.util
import io
import json
import math
import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.tools import diagnose

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None   # an optional extra
ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "concepts.md"

# appended to every `charrnn train` of the page: a small model and a few steps (the last --set wins)
SMALL = ("--set model.hidden_size=16 --set model.embed_size=8 --set train.batch_size=8 "
         "--set train.seq_len=32 --set train.eval_every=20 --set train.eval_chars=2000 "
         "--set train.checkpoint_every=20 --set train.threads=1")
QUICK_STEPS = 40

# section 5's two runs
CLIP_NONE = ("charrnn train configs/irnn.yaml --set train.lr=0.002 --set train.clip=none "
             "--set train.max_steps=300 --set train.out_dir=runs/clip-none")
CLIP_NORM = ("charrnn train configs/irnn.yaml --set train.lr=0.002 --set train.max_steps=300 "
             "--set train.out_dir=runs/clip-norm")

# the page's commands -> the quick forms run here (None: run as written)
QUICK = {
    "tail -c 505732 data/shakespeare.txt > held_out.txt":      # eval reads 1 char per step
        "tail -c 3000 data/shakespeare.txt > held_out.txt",
    "charrnn train configs/rnn.yaml --set train.max_steps=1500":
        f"charrnn train configs/rnn.yaml --set train.max_steps={QUICK_STEPS} {SMALL}",
    "charrnn train configs/demo.yaml --set train.max_minutes=null":
        f"charrnn train configs/demo.yaml --set train.max_minutes=null "
        f"--set train.max_steps={QUICK_STEPS} {SMALL}",
    "charrnn eval runs/demo held_out.txt": None,
    'charrnn sample runs/demo --prime "ROMEO:" -n 200 --seed 1 --temperature 0.5': None,
    'charrnn sample runs/demo --prime "ROMEO:" -n 200 --seed 1 --temperature 1.0': None,
    'charrnn sample runs/demo --prime "ROMEO:" -n 200 --seed 1 --temperature 1.5': None,
    "charrnn gradcheck --cell rnn --layers 1": None,
    "charrnn gradcheck --cell lstm --layers 2": None,
    "charrnn diagnose runs/rnn held_out.txt --window 100": None,
    "charrnn diagnose runs/demo held_out.txt --window 100": None,
    CLIP_NONE:
        f"charrnn train configs/irnn.yaml --set train.lr=0.002 --set train.clip=none "
        f"--set train.out_dir=runs/clip-none --set train.max_steps={QUICK_STEPS} {SMALL}",
    CLIP_NORM:
        f"charrnn train configs/irnn.yaml --set train.lr=0.002 --set train.out_dir=runs/clip-norm "
        f"--set train.max_steps={QUICK_STEPS} {SMALL}",
    "charrnn train configs/irnn.yaml --set train.max_steps=1500":
        f"charrnn train configs/irnn.yaml --set train.max_steps={QUICK_STEPS} {SMALL}",
    "charrnn diagnose runs/irnn held_out.txt --window 100": None,
    "charrnn gradcheck --cell gru --layers 3": None,
    "charrnn eval runs/demo held_out.txt --dynamic": None,
}

# gradcheck's quick form: the same cells and layers on 1 sequence of 3 steps instead of 3 of 10
GRADCHECK_SIZE = {"batch": 1, "steps": 3}


# -- reading the page ------------------------------------------------------------------------------

def blocks(language: str) -> list[str]:
    """The bodies of the page's fenced blocks of `language`, in order."""
    text = PAGE.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def page_commands() -> list[str]:
    """Every command line of the page's ```sh blocks, without its trailing `# comment`."""
    lines = (line for body in blocks("sh") for line in body.splitlines())
    return [re.sub(r"\s+#.*$", "", line).strip() for line in lines if line.strip()]


# -- the tiny corpus and the runs -------------------------------------------------------------------

SPEAKERS = ["ROMEO:", "JULIET:", "NURSE:"]
WORDS = ["the ", "night ", "is ", "long ", "and ", "my ", "love ", "sleeps ", "o ", "sweet ",
         "moon, ", "thou ", "art ", "fair. ", "come ", "away ", "i ", "shall ", "go. "]


def write_play(path: Path, lines: int = 400, seed: int = 0) -> str:
    """A made-up play of `lines` lines of speech: speaker names, then random words."""
    rng = np.random.default_rng(seed)
    text = "".join(f"{rng.choice(SPEAKERS)}\n{''.join(rng.choice(WORDS, size=8)).strip()}\n\n"
                   for _ in range(lines))
    path.write_text(text, encoding="utf-8")
    return text


def run(command: str) -> dict:
    """Run one command in the current folder -> {"code", "out", "err"}."""
    if command.startswith("charrnn "):
        result = CliRunner().invoke(cli, shlex.split(command)[1:], prog_name="charrnn")
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return {"code": result.exit_code, "out": result.stdout, "err": result.stderr}
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)
    return {"code": done.returncode, "out": done.stdout, "err": done.stderr}


@pytest.fixture(scope="module")
def page_run(tmp_path_factory):
    """Every command of the page in its quick form, in order -> (folder, {doc command: result})."""
    folder = tmp_path_factory.mktemp("concepts")
    (folder / "configs").symlink_to(ROOT / "configs")
    (folder / "data").mkdir()
    (folder / "docs").mkdir()
    write_play(folder / "data" / "shakespeare.txt")
    results = {}
    here = os.getcwd()
    os.chdir(folder)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(diagnose, "check_random_model",
                          functools.partial(diagnose.check_random_model, **GRADCHECK_SIZE))
            for command in page_commands():
                results[command] = run(QUICK.get(command) or command)
        for code in blocks("python") if HAVE_MATPLOTLIB else ():   # the first block draws
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                exec(compile(code, str(PAGE), "exec"), {})
            results[code] = {"code": 0, "out": printed.getvalue(), "err": ""}
    finally:
        os.chdir(here)
    return folder, results


def output(page_run, command: str) -> str:
    result = page_run[1][command]
    assert result["code"] == 0, f"{command}: exit {result['code']}\n{result['err']}"
    return result["out"]


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text, flags=re.M)
    assert match, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


# -- the page and the table agree -----------------------------------------------------------------

def test_every_command_of_the_page_has_a_quick_form():
    commands = page_commands()
    assert len(commands) == len(set(commands)), "a command appears twice in the page"
    assert set(commands) == set(QUICK), (
        f"in the page, not in QUICK: {sorted(set(commands) - set(QUICK))}; "
        f"in QUICK, not in the page: {sorted(set(QUICK) - set(commands))}")


def test_every_command_runs(page_run):
    for command in page_commands():
        output(page_run, command)


# -- the figures of each section ------------------------------------------------------------------

def test_gradcheck_errors_are_below_the_tolerance(page_run):
    for command in ("charrnn gradcheck --cell rnn --layers 1",
                    "charrnn gradcheck --cell lstm --layers 2",
                    "charrnn gradcheck --cell gru --layers 3"):
        out = output(page_run, command)
        rows = [line.split() for line in out.splitlines()[1:-1]]
        errors = [float(row[2]) for row in rows]
        assert len(errors) >= 6 and max(errors) < 1e-6, out
        assert all(row[3] == "pass" for row in rows), out
        assert out.splitlines()[-1].startswith(f"ok: all {len(rows)} gradients"), out


def test_eval_figures_agree_with_each_other(page_run):
    out = output(page_run, "charrnn eval runs/demo held_out.txt")
    loss = number(r"^loss:\s+([\d.]+)", out)
    assert number(r"^bits/char:\s+([\d.]+)", out) == pytest.approx(loss / math.log(2), rel=1e-5)
    assert number(r"^perplexity:\s+([\d.]+)", out) == pytest.approx(math.exp(loss), rel=1e-4)
    vocab = len(set((page_run[0] / "data" / "shakespeare.txt").read_text()))
    assert loss < math.log(vocab)              # better than a uniform guess after a few steps


def test_dynamic_eval_prints_the_static_loss_beside_the_dynamic_one(page_run):
    static = number(r"^loss:\s+([\d.]+)", output(page_run, "charrnn eval runs/demo held_out.txt"))
    out = output(page_run, "charrnn eval runs/demo held_out.txt --dynamic")
    assert number(r"^static loss:\s+([\d.]+)", out) == pytest.approx(static, abs=2e-6)
    gain = number(r"^static loss:\s+([\d.]+)", out) - number(r"^dynamic loss:\s+([\d.]+)", out)
    assert number(r"^gain:\s+(-?[\d.]+)", out) == pytest.approx(gain, abs=2e-6)


def test_samples_at_three_temperatures(page_run):
    outs = [output(page_run, f'charrnn sample runs/demo --prime "ROMEO:" -n 200 --seed 1 '
                             f'--temperature {t}') for t in ("0.5", "1.0", "1.5")]
    vocab = set((page_run[0] / "data" / "shakespeare.txt").read_text())
    for out in outs:         # the prime, the 200 characters asked for, a final newline
        assert out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 200 + 1, out
        assert set(out) <= vocab
    assert len(set(outs)) == 3


def decay(out: str) -> list[float]:
    """The decay/step of every layer from diagnose's table."""
    return [float(v) for v in re.findall(r"^\s+\d+\s+([\d.]+)\s", out, flags=re.M)]


def test_the_tanh_rnn_forgets_faster_than_the_lstm(page_run):
    rnn = decay(output(page_run, "charrnn diagnose runs/rnn held_out.txt --window 100"))
    lstm = decay(output(page_run, "charrnn diagnose runs/demo held_out.txt --window 100"))
    assert len(rnn) == len(lstm) == 2
    assert max(rnn) < min(lstm), (rnn, lstm)


def test_the_irnn_keeps_its_gradient_longer_than_the_tanh_rnn(page_run):
    rnn = decay(output(page_run, "charrnn diagnose runs/rnn held_out.txt --window 100"))
    irnn = decay(output(page_run, "charrnn diagnose runs/irnn held_out.txt --window 100"))
    assert len(irnn) == 2 and max(rnn) < min(irnn), (rnn, irnn)


def grad_norms(folder: Path, run_dir: str) -> list[float]:
    lines = (folder / run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["grad_norm"] for r in map(json.loads, lines) if "grad_norm" in r]


def test_the_clipped_irnn_learns_more_and_only_the_unclipped_one_keeps_a_burst_in_adam(page_run):
    """Section 5's claims: the clipped run ends with the lower validation loss, and Adam's
    running mean of squared gradients stays at most 1 (clipping at 1.0 bounds every gradient
    entry by 1) in the clipped run only, far above it in the unclipped one."""
    best = {}
    for run_dir, command in (("runs/clip-none", CLIP_NONE), ("runs/clip-norm", CLIP_NORM)):
        printed = output(page_run, command) + page_run[1][command]["err"]    # `done:` is on stderr
        best[run_dir] = number(r"best validation loss ([\d.]+) nats/char", printed)
    assert best["runs/clip-norm"] < best["runs/clip-none"], best
    pytest.importorskip("matplotlib")
    folder, results = page_run
    for run_dir in ("runs/clip-none", "runs/clip-norm"):
        assert len(grad_norms(folder, run_dir)) == QUICK_STEPS // 10
    printed = results[blocks("python")[1]]["out"].split()
    assert printed[0::2] == ["runs/clip-none", "runs/clip-norm"]
    memory = dict(zip(printed[0::2], map(float, printed[1::2])))
    assert 0 < memory["runs/clip-norm"] <= 1.0, memory
    assert memory["runs/clip-none"] > 5 * memory["runs/clip-norm"], memory


def test_the_python_block_draws_the_picture(page_run):
    pytest.importorskip("matplotlib")
    picture = (page_run[0] / "docs" / "clipping.png").read_bytes()
    assert picture.startswith(b"\x89PNG") and len(picture) > 10_000


def test_the_picture_in_the_page_is_there_and_small():
    assert "(clipping.png)" in PAGE.read_text(encoding="utf-8")
    picture = ROOT / "docs" / "clipping.png"
    assert picture.read_bytes().startswith(b"\x89PNG") and picture.stat().st_size < 150_000
