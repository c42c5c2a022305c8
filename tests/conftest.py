"""Shared test fixtures and helpers: the cells to test (read from the registry), tiny models,
the tiny corpus, checkpoints, and waiting for a condition instead of sleeping.

A new cell is tested by registering it in charrnn/nn/cells: every per-cell test takes its list
from CELL_CASES (cell, nonlinearity) or CELL_NAMES, never from a list written here.
"""

import glob
import os
import threading
import time

import numpy as np
import pytest

from charrnn.config import Config, ModelConfig
from charrnn.nn.cells import CELLS, nonlinearities_of
from charrnn.nn.model import CharRNN
from charrnn.store.vocab import Vocab

# -- the cells ----------------------------------------------------------------------------------

# every registered cell, with each of its nonlinearities: a new cell is tested by registering it
CELL_CASES = [(name, nonlinearity) for name, module in CELLS.items()
              for nonlinearity in nonlinearities_of(module)]
CELL_NAMES = list(CELLS)


@pytest.fixture(params=CELL_CASES, ids=lambda case: "-".join(case))
def cell_case(request):
    """(cell, nonlinearity) of every registered cell."""
    return request.param


# -- models -------------------------------------------------------------------------------------

def tiny_model(cell="lstm", nonlinearity="tanh", layers=2, *, hidden=4, embed=3, vocab=5,
               dropout=0.0, dtype=np.float64, seed=0, scale=1.0, **spec):
    """A CharRNN small enough for finite differences and the slow reference.

    vocab: the vocabulary's size, or a Vocab. scale: multiplies every parameter after the
    initialisation (> 1: peakier distributions). spec: further ModelConfig fields (init, ...).
    """
    config = ModelConfig(cell=cell, nonlinearity=nonlinearity, layers=layers, hidden_size=hidden,
                         embed_size=embed, dropout=dropout, **spec)
    size = vocab if isinstance(vocab, (int, np.integer)) else len(vocab)
    model = CharRNN(vocab_size=size, spec=config, dtype=dtype, seed=seed)
    if scale != 1.0:
        model.params.flat[...] *= scale
    return model


# -- text -----------------------------------------------------------------------------------------

# The tiny corpus of the sample, eval and diagnose tests: 180 characters, 14 symbols, all lower
# case and no z, q or ! (the tests use those as characters outside its vocabulary).
TINY_TEXT = "the cat sat on the mat.\nthe dog ate the hat.\n" * 4
TINY_VOCAB = Vocab.from_text(TINY_TEXT)

TRAIN_WORDS = ["the ", "cat ", "sat ", "on ", "a ", "mat.\n", "dog ", "ran ", "é "]


def make_corpus(path, n=4000, seed=0):
    """A training corpus of about n characters (random words, one non-ASCII) written to path."""
    rng = np.random.default_rng(seed)
    text = "".join(rng.choice(TRAIN_WORDS, size=n // 4))
    path.write_text(text, encoding="utf-8")
    return text


@pytest.fixture
def corpus(tmp_path):
    """The path of a 4000-character training corpus (make_corpus) in tmp_path."""
    path = tmp_path / "corpus.txt"
    make_corpus(path)
    return path


@pytest.fixture
def text_file(tmp_path):
    """tmp_path / "text.txt" holding TINY_TEXT."""
    path = tmp_path / "text.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


# -- checkpoints ----------------------------------------------------------------------------------

def tiny_run(vocab, cell="lstm", *, layers=2, hidden=4, embed=3, dtype="float32", seed=0,
             scale=1.0):
    """(model, config) as a checkpoint holds them: Config() with the model's sizes and dtype."""
    model = tiny_model(cell, layers=layers, hidden=hidden, embed=embed, vocab=vocab,
                       dtype=np.dtype(dtype), seed=seed, scale=scale)
    cfg = Config()
    cfg.model.cell, cfg.model.layers = cell, layers
    cfg.model.hidden_size, cfg.model.embed_size = hidden, embed
    cfg.train.dtype = np.dtype(dtype).name
    assert cfg.model == model.spec
    return model, cfg


def save_tiny_checkpoint(path, vocab=TINY_VOCAB, *, train_state=None, **model):
    """Save tiny_run(vocab, **model) at path; returns (path as str, model, config)."""
    from charrnn.store.checkpoint import save_checkpoint

    net, cfg = tiny_run(vocab, **model)
    save_checkpoint(str(path), net, vocab, cfg, train_state=train_state)
    return str(path), net, cfg


# a small random LSTM whose weights are scaled up so its distributions are peaky (sample, eval)
LSTM_CHECKPOINT = dict(cell="lstm", layers=2, hidden=12, embed=5, seed=1, scale=2.5)
# a small random GRU (diagnose)
GRU_CHECKPOINT = dict(cell="gru", layers=2, hidden=8, embed=4, seed=1)
# the checkpoint format's tests: a vocabulary with a non-ASCII symbol and a training state
FORMAT_VOCAB = Vocab(list("\n abcdé"))
FORMAT_CHECKPOINT = dict(cell="gru", layers=2, hidden=6, embed=4, seed=3)


@pytest.fixture(scope="session")
def lstm_checkpoint(tmp_path_factory):
    """The path of a float32 LSTM checkpoint on TINY_VOCAB (LSTM_CHECKPOINT); read only."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("lstm") / "m.safetensors",
                                **LSTM_CHECKPOINT)[0]


@pytest.fixture(scope="session")
def gru_checkpoint(tmp_path_factory):
    """The path of a float32 GRU checkpoint on TINY_VOCAB (GRU_CHECKPOINT); read only."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("gru") / "model.safetensors",
                                **GRU_CHECKPOINT)[0]


@pytest.fixture
def saved_checkpoint(tmp_path):
    """(path, model, config) of a GRU checkpoint on FORMAT_VOCAB saved after step 7, in tmp_path:
    the test may change or break the file."""
    return save_tiny_checkpoint(tmp_path / "m.safetensors", FORMAT_VOCAB,
                                train_state={"step": 7, "best_val_loss": 1.5}, **FORMAT_CHECKPOINT)


# -- waiting ------------------------------------------------------------------------------------

def wait_until(condition, timeout=60.0, what="the condition", interval=0.02):
    """Poll condition() until it returns something true, and return that; fail the test after
    timeout seconds. Tests wait for what they need (a file, a line, a process) this way, never
    for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def child_pids(pid):
    """The ids of the child processes of process pid (from Linux's /proc; [] elsewhere)."""
    children = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(task) as f:
                children += [int(p) for p in f.read().split()]
        except OSError:                       # the thread or the process has just ended
            pass
    return children


def process_start(pid):
    """When process pid started (clock ticks after boot, Linux /proc), None if there is none:
    with its pid, what identifies a process (a pid is reused once its process has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


# -- the command line -----------------------------------------------------------------------------

def run_cli(*args, input=None):
    """`charrnn ARGS` in-process (arguments turned to strings); an exception the CLI did not turn
    into an exit status is raised here rather than passed as an exit code."""
    from click.testing import CliRunner

    from charrnn.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result



# -- the report's header ------------------------------------------------------------------------

def pytest_report_header(config):
    """Which OpenBLAS kernel set the numbers came from (OPENBLAS_CORETYPE forces one)."""
    from tests.blas_kernel import describe

    return describe()


# -- no fork while other threads run ------------------------------------------------------------

# Python 3.12+ warns at a fork while other threads run ("This process is multi-threaded, use of
# fork() may lead to deadlocks in the child"), but clears the warning even under -W error, so a
# filterwarnings entry cannot fail a test: a fork hook counts this process's Python threads.
_forks_with_threads: list[list[str]] = []


def _count_threads_at_fork() -> None:
    if threading.active_count() > 1:
        _forks_with_threads.append(sorted(t.name for t in threading.enumerate()))


if hasattr(os, "register_at_fork"):          # not on Windows, which cannot fork
    os.register_at_fork(before=_count_threads_at_fork)


@pytest.fixture(autouse=True)
def no_fork_with_threads_alive():
    """Fail a test that forked a worker while another thread of this process was running."""
    _forks_with_threads.clear()
    yield
    assert not _forks_with_threads, f"forked with threads running: {_forks_with_threads[0]}"
