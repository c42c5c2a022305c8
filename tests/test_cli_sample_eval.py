"""`charrnn sample` and `charrnn eval` from the command line: output, options, errors, pipes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from charrnn.cli import cli
from charrnn.fast.parallel import can_fork
from charrnn.infer.evaluate import evaluate_ids
from charrnn.store.checkpoint import save_checkpoint
from tests.conftest import TINY_TEXT as TEXT
from tests.conftest import TINY_VOCAB as VOCAB
from tests.conftest import child_pids, process_start, wait_until
from tests.numerics import sum_rtol


@pytest.fixture
def ckpt(lstm_checkpoint):
    """conftest's small random LSTM checkpoint (weights scaled up so its distributions are
    peaky), under a short name."""
    return lstm_checkpoint


def run(*args, input=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def assert_one_line_error(result, code, *words):
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in lines[0], lines[0]


# -- sample -----------------------------------------------------------------------------------

def test_sample_echoes_the_prime_then_n_characters(ckpt):
    r = run("sample", ckpt, "--prime", "the ", "-n", 40, "--seed", 1)
    assert r.exit_code == 0 and r.stderr == ""
    out = r.stdout
    assert out.startswith("the ") and out.endswith("\n")
    generated = out[4:]           # 40 characters, then a newline unless the 40th was one
    assert len(generated) == 40 + (generated[39] != "\n")
    assert set(generated) <= set(VOCAB.symbols)
    no_echo = run("sample", ckpt, "--prime", "the ", "-n", 40, "--seed", 1, "--no-echo").stdout
    assert out == "the " + no_echo


def test_sample_seed_reproducible_and_different_without(ckpt):
    a = run("sample", ckpt, "-n", 100, "--seed", 3).stdout
    assert run("sample", ckpt, "-n", 100, "--seed", 3).stdout == a
    assert run("sample", ckpt, "-n", 100).stdout != run("sample", ckpt, "-n", 100).stdout


def test_sample_json_num_samples_stop_and_separator(ckpt):
    r = run("sample", ckpt, "--prime", "the", "-n", 200, "--seed", 2, "--num-samples", 3,
            "--stop", r"\n", "--json")
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["sample"] for x in records] == [0, 1, 2]
    for x in records:
        assert x["prime"] == "the" and x["length"] == len(x["text"])
        assert x["text"].count("\n") <= 1 and x["stopped"] == x["text"].endswith("\n")
    plain = run("sample", ckpt, "--prime", "the", "-n", 200, "--seed", 2, "--num-samples", 3,
                "--stop", r"\n", "--separator", "==\n").stdout
    assert plain.split("==\n") == ["the" + x["text"] for x in records[:2]] + \
        ["the" + records[2]["text"] + ("" if records[2]["stopped"] else "\n")]


def test_sample_greedy_top_k_top_p_and_temperature_run(ckpt):
    greedy = run("sample", ckpt, "--greedy", "-n", 50, "--prime", "the").stdout
    for t in ("0", "-1", "0.3"):                 # --greedy ignores the temperature
        r = run("sample", ckpt, "--greedy", "-t", t, "-n", 50, "--prime", "the")
        assert r.exit_code == 0 and r.stderr == "" and r.stdout == greedy, r.output
    assert run("sample", ckpt, "-t", "1e-7", "-n", 50, "--prime", "the", "--seed", 9).stdout == greedy
    assert run("sample", ckpt, "--top-k", 1, "-n", 50, "--prime", "the", "--seed", 4).stdout == greedy
    for opts in (["--top-k", 3], ["--top-p", 0.9], ["-t", 0.5, "--top-k", 5, "--top-p", 0.8]):
        r = run("sample", ckpt, "-n", 30, "--seed", 1, *opts)
        assert r.exit_code == 0 and len(r.stdout) >= 30


def test_sample_prime_file_and_stdin(ckpt, tmp_path):
    f = tmp_path / "prime.txt"
    f.write_text("the dog", encoding="utf-8")
    a = run("sample", ckpt, "--prime-file", f, "-n", 20, "--seed", 1).stdout
    assert a.startswith("the dog")
    assert run("sample", ckpt, "--prime-file", "-", "-n", 20, "--seed", 1, input="the dog").stdout == a
    assert run("sample", ckpt, "--prime", "the dog", "-n", 20, "--seed", 1).stdout == a


def test_sample_unknown_prime_characters(ckpt):
    r = run("sample", ckpt, "--prime", "the ZOO", "-n", 5)
    assert_one_line_error(r, 2, "prime has 3 character(s)", "'O', 'Z'", "--unknown skip")
    r = run("sample", ckpt, "--prime", "the ZOO", "-n", 5, "--unknown", "skip", "--seed", 0)
    assert r.exit_code == 0 and r.stdout.startswith("the ")
    assert "warning: skipped 3 character(s) of the prime" in r.stderr and "'Z'" in r.stderr


@pytest.mark.parametrize("opts,words", [
    (["-t", "0"], "--temperature must be a number > 0"),
    (["-t", "-0.5"], "--temperature must be a number > 0"),
    (["-t", "nan"], "--temperature"),
    (["--top-k", "0"], "--top-k must be >= 1"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["-n", "-3"], "--length must be >= 0"),
    (["--num-samples", "0"], "--num-samples must be >= 1"),
    (["--prime", "a", "--prime-file", "x"], "--prime or --prime-file, not both"),
])
def test_sample_bad_options_are_usage_errors(ckpt, opts, words):
    assert_one_line_error(run("sample", ckpt, *opts), 2, words)


def test_sample_missing_prime_file_is_an_error(ckpt, tmp_path):
    assert_one_line_error(run("sample", ckpt, "--prime-file", tmp_path / "none.txt"), 1,
                          "does not exist")


def test_sample_defaults_come_from_the_checkpoints_sample_section(ckpt, tmp_path):
    """Options left out take the trained config's sample: values; options given win."""
    import dataclasses

    from charrnn.store.checkpoint import load_checkpoint
    c = load_checkpoint(ckpt)
    cfg = dataclasses.replace(c.config, sample=dataclasses.replace(
        c.config.sample, length=30, temperature=0.5, top_k=2, prime="the ", seed=4))
    saved = str(tmp_path / "s.safetensors")
    save_checkpoint(saved, c.build_model(), c.vocab, cfg)
    explicit = ("-n", 30, "-t", 0.5, "--top-k", 2, "--prime", "the ", "--seed", 4)
    out = run("sample", saved).stdout
    assert out.startswith("the ") and out == run("sample", ckpt, *explicit).stdout
    assert len(out.rstrip("\n")) <= 4 + 30
    assert run("sample", saved, "--seed", 9).stdout == run("sample", ckpt, *explicit[:-1], 9).stdout
    assert run("sample", saved, "--prime", "").stdout == run("sample", ckpt, *explicit[:6],
                                                             "--seed", 4).stdout
    assert_one_line_error(run("sample", saved, "-t", 0), 2, "temperature")


# -- eval -------------------------------------------------------------------------------------

def test_eval_prints_loss_bpc_perplexity_and_count(ckpt, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT, encoding="utf-8")
    r = run("eval", ckpt, f)
    assert r.exit_code == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["loss", "bits/char", "perplexity", "chars scored"]
    assert lines[3].split()[-1] == str(len(TEXT) - 1)
    j = json.loads(run("eval", ckpt, f, "--json").stdout)
    from charrnn.store.checkpoint import load_model
    model, vocab, _ = load_model(ckpt)
    total, n = evaluate_ids(model, vocab.encode(TEXT))
    assert j["loss"] == pytest.approx(total / n, rel=1e-12) and j["chars_scored"] == n
    assert j["bits_per_char"] == pytest.approx(j["loss"] / np.log(2))
    assert j["perplexity"] == pytest.approx(np.exp(j["loss"]))
    assert f"{j['loss']:.6f}" in lines[0]
    # stdin, the alias, and chunking change nothing
    assert json.loads(run("eval", ckpt, "-", "--json", input=TEXT).stdout) == j
    assert json.loads(run("perplexity", ckpt, "--json", input=TEXT).stdout) == j
    # other chunks are other float32 matrix products: the mean of n nlls rounded apart
    assert json.loads(run("eval", ckpt, f, "--json", "--chunk-len", 7).stdout)["loss"] == \
        pytest.approx(j["loss"], rel=sum_rtol(n))
    assert (j["streams"], j["warmup"]) == (1, 0)


def test_eval_streams_are_opt_in_and_say_so(ckpt):
    from charrnn.store.checkpoint import load_model
    model, vocab, _ = load_model(ckpt)
    total, n = evaluate_ids(model, vocab.encode(TEXT), streams=4, warmup=9)
    r = run("eval", ckpt, "-", "--streams", "4", "--warmup", "9", input=TEXT)
    assert r.exit_code == 0
    assert "4 parallel streams, 9 characters of warm-up each (approximate" in r.stdout
    j = json.loads(run("eval", ckpt, "-", "--json", "--streams", "4", "--warmup", "9",
                       input=TEXT).stdout)
    assert (j["streams"], j["warmup"], j["chars_scored"]) == (4, 9, n)
    assert j["loss"] == pytest.approx(total / n, rel=1e-12)
    bad = run("eval", ckpt, "-", "--streams", "0", input=TEXT)
    assert bad.exit_code == 2 and "--streams" in bad.stderr
    # more streams than scored characters: one character each, and the report says so
    j = json.loads(run("eval", ckpt, "-", "--json", "--streams", "999999999999", "--warmup", "9",
                       input=TEXT).stdout)
    assert (j["streams"], j["chars_scored"]) == (n, n)
    j = json.loads(run("eval", ckpt, "-", "--json", "--streams", str(n - 1), input=TEXT).stdout)
    assert j["streams"] == -(-n // -(-n // (n - 1)))       # segments of 2: about half as many


def test_eval_one_process_gives_the_same_result(ckpt, monkeypatch):
    import charrnn.infer.evaluate as evaluate_mod
    seen = []
    real = evaluate_mod.evaluate_ids
    monkeypatch.setattr(evaluate_mod, "evaluate_ids",
                        lambda *a, **k: seen.append(k["pipeline"]) or real(*a, **k))
    both = [json.loads(run("eval", ckpt, "-", "--json", *flag, input=TEXT).stdout)
            for flag in ((), ("--one-process",))]
    assert seen == [True, False] and both[0] == both[1]


def test_eval_unknown_characters(ckpt):
    text = TEXT + "QQ!"
    assert_one_line_error(run("eval", ckpt, "-", input=text), 1, "the text has 3 character(s)",
                          "'!', 'Q'", "--unknown skip")
    r = run("eval", ckpt, "-", "--json", "--unknown", "skip", input=text)
    assert r.exit_code == 0 and "skipped 3 character(s)" in r.stderr
    j = json.loads(r.stdout)
    assert j["chars_skipped"] == 3 and j["chars_scored"] == len(TEXT) - 1
    assert j["loss"] == json.loads(run("eval", ckpt, "-", "--json", input=TEXT).stdout)["loss"]


@pytest.mark.parametrize("text,words", [("", "empty"), ("t", "one character")])
def test_eval_too_short_text(ckpt, text, words):
    assert_one_line_error(run("eval", ckpt, "-", input=text), 1, words, "at least 2")


def test_eval_bad_utf8_and_missing_file(ckpt, tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes(b"caf\xe9 the cat")
    assert_one_line_error(run("eval", ckpt, f), 1, "not valid UTF-8")
    assert_one_line_error(run("eval", ckpt, tmp_path / "none.txt"), 1, "does not exist")


# -- checkpoints that cannot be used, for both commands ---------------------------------------

def broken_checkpoints(ckpt, tmp_path):
    """(path, words of its message) for each way a checkpoint can be unusable."""
    data = open(ckpt, "rb").read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:len(data) // 2])
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign))
    future = tmp_path / "future.safetensors"
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + n])["__metadata__"]
    save_file(load_file(ckpt), str(future), metadata={**meta, "format": "charrnn/2"})
    return [(tmp_path / "missing.safetensors", "no checkpoint at"),
            (truncated, "not a readable checkpoint"),
            (foreign, "not a charrnn checkpoint"),
            (future, "has format charrnn/2")]


@pytest.mark.parametrize("command", [["sample", "-n", "5"], ["eval", "-"]])
def test_unusable_checkpoints_are_one_sentence_and_status_1(ckpt, tmp_path, command):
    for path, words in broken_checkpoints(ckpt, tmp_path):
        r = run(command[0], path, *command[1:], input=TEXT)
        assert_one_line_error(r, 1, words, str(path))


# -- real processes and pipes -----------------------------------------------------------------

def charrnn_cmd(*args):
    return [sys.executable, "-m", "charrnn", *[str(a) for a in args]]


def test_sample_into_a_closed_pipe_exits_0_quietly_and_streams(ckpt):
    """`charrnn sample | head -c 10`: output arrives at once, then the closed pipe ends it."""
    env = dict(os.environ, PYTHONUNBUFFERED="")
    proc = subprocess.Popen(charrnn_cmd("sample", ckpt, "-n", 10_000_000, "--seed", 1),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    start = time.perf_counter()
    first = proc.stdout.read(10)
    assert len(first) == 10 and time.perf_counter() - start < 20
    proc.stdout.close()
    try:
        rc = proc.wait(timeout=30)
    finally:
        proc.kill()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert rc == 0 and stderr == ""


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="needs bash for pipefail")
def test_shell_pipeline_with_head(ckpt):
    cmd = " ".join(charrnn_cmd("sample", ckpt, "-n", 1_000_000))
    r = subprocess.run(["/bin/bash", "-c", f"set -o pipefail; {cmd} | head -c 10"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and len(r.stdout) == 10 and r.stderr == b""


def bytes_read(pid):
    """What process pid has read so far, in bytes, any file or pipe (Linux /proc)."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


class PipelinedEvaluationRunning:
    """A condition for wait_until: the `charrnn eval` in process pid runs its pipelined pass.

    Seen from outside: it has forked its layer-0 process, then read from that process's pipe
    (a later read than the first seen with the child there; once forked it reads nothing else).
    A signal before that could land in the fork itself. .children: (pid, start time) of the
    children seen, so that a test can end any that outlive the process."""

    def __init__(self, pid):
        self.pid, self.reads, self.children = pid, [], set()

    def __call__(self):
        children = {(child, process_start(child)) for child in child_pids(self.pid)}
        self.children |= {c for c in children if c[1] is not None}
        if not children:
            return False
        self.reads.append(bytes_read(self.pid))
        return self.reads[-1] > self.reads[0]

    def kill_leftovers(self):
        for pid, start in self.children:
            if process_start(pid) == start:                  # still that process, not a reuse
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_ctrl_c_is_status_130_and_one_line(ckpt, tmp_path, command):
    """SIGINT mid-run (after the first output, or once the evaluation is under way): no
    traceback, no 'Aborted!', and no wait for a worker process (its copy of our end of the pipe
    once kept it from seeing the pipe close, and stopping it took the 5 s timeout)."""
    big = tmp_path / "big.txt"
    big.write_text(TEXT * 20_000, encoding="utf-8")             # minutes of exact evaluation
    # the evaluation is seen under way from its layer-0 process (Linux); where it cannot fork,
    # the text goes through stdin, which the command itself reads
    pipelined = can_fork() and os.path.exists(f"/proc/{os.getpid()}/io")
    args = (["sample", ckpt, "-n", 100_000_000] if command == "sample" else
            ["eval", ckpt, big if pipelined else "-"])
    proc = subprocess.Popen(charrnn_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if "-" in args else None,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    running = PipelinedEvaluationRunning(proc.pid)
    try:
        if command == "sample":
            assert len(proc.stdout.read(100)) == 100               # it is generating
        elif pipelined:                                             # it is evaluating
            wait_until(running, timeout=30, what="the pipelined evaluation to run")
        else:                                                       # it has read the text
            proc.stdin.write(big.read_bytes())
            proc.stdin.flush()
        proc.send_signal(signal.SIGINT)
        signalled = time.perf_counter()
        _, err = proc.communicate(timeout=30)
        stopping = time.perf_counter() - signalled
    finally:
        proc.kill()
        running.kill_leftovers()                # a layer-0 process that outlived its parent
    assert stopping < 4.5                  # the old fault waited out the 5 s timeout; margin for load
    assert proc.returncode == 130
    assert err.decode().strip() == "charrnn: interrupted"
