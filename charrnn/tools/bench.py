"""`charrnn bench`: training and sampling throughput, measured as the PyTorch reference script does.

One shape (the options), or with --standard the STANDARD set below: one line (or JSON line)
per shape.

Training: the real step of `charrnn train` (`charrnn.train.loop.train_step`: forward, backward, clip by
global norm 5, Adam at lr 2e-3, hidden state carried between batches) on random ids batched by
the same ContiguousBatches the trainer uses; 3 warm-up steps, then `steps` timed steps.
Sampling: `sample` characters, one at a time, at temperature 0.8, through the real sampling loop
`charrnn.infer.sample.generate` (timed from the call, its set-up included, to the last character).
Peak RSS: ru_maxrss of this process (which holds only the model, random batches and NumPy),
plus, where the training step runs shards in worker processes (charrnn/fast/parallel.py), what each
worker's peak resident size (VmHWM) added above its size when it was forked: a worker starts
sharing the pages of this process, and only what it adds is memory the run costs in addition;
the shared-memory parameters and gradients it touches are counted once, in this process.

Threads: `threads` (2, as torch_ref.py's torch.set_num_threads) is both the BLAS thread count,
set at run time through charrnn.blas, and the trainer's `train.threads`: the training step
splits the batch over that many worker threads, as `charrnn train` does on a machine with that
many cores. The BLAS count actually in effect is reported as `blas_threads` (null when it
could not be set or read), OpenBLAS's kernel set as `blas_kernels`, and whether the per-step
recurrent products run in blocks (charrnn/fast/stepproduct.py) as `step_blocks`.

Engine (`engine`, `device`): train.engine and train.device of the measured run (numpy by
default; torch runs the same train_step on PyTorch, `threads` then being torch's intra-op
threads on the CPU). Sampling always runs charrnn's NumPy sampler, on the trained weights.

Tokenization (`tokenize_mb`): writes an N MB synthetic text file, then a fresh Python process
reads it, builds the vocabulary and encodes it with the trainer's `charrnn.train.load_corpus`,
reporting the seconds and its peak RSS. A child's ru_maxrss starts from the RSS its parent had
when it forked, so this runs before the training; the child's RSS after its imports is reported
as the baseline.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from charrnn.fast import blas

TRAIN_KEYS = ("train_chars_per_s", "sample_chars_per_s", "peak_rss_mb")


# ------------------------------------------------------------------------------------------
# BLAS threads
# ------------------------------------------------------------------------------------------

def get_blas_threads() -> int | None:
    """The number of threads NumPy's BLAS uses now (None if it cannot be read)."""
    return blas.get_threads()


def set_blas_threads(n: int) -> int | None:
    """Limit NumPy's BLAS to n threads for the rest of the process; returns the count in effect."""
    return blas.set_threads(n)


# ------------------------------------------------------------------------------------------
# training and sampling
# ------------------------------------------------------------------------------------------

def bench_vocab(size: int):
    """A vocabulary of `size` printable characters (ASCII first), like a corpus's."""
    from charrnn.store.vocab import Vocab

    return Vocab(chr(c) for c in range(32, 32 + size))


def make_run(cell="lstm", layers=2, hidden=128, emb=64, vocab=65, batch=50, seq=50, steps=30,
             warmup=3, seed=0, threads=1, engine="numpy", device="auto"):
    """A charrnn.train.Run over random ids with exactly enough batches for warmup + steps."""
    from charrnn import engines
    from charrnn.config import Config
    from charrnn.nn.model import CharRNN
    from charrnn.store.checkpoint import Progress
    from charrnn.train.data import make_batches
    from charrnn.train.run import Run

    cfg = Config()
    cfg.model.cell, cfg.model.layers, cfg.model.hidden_size = cell, layers, hidden
    cfg.model.embed_size = emb
    cfg.train.batch_size, cfg.train.seq_len = batch, seq
    cfg.train.optimizer, cfg.train.lr, cfg.train.clip, cfg.train.clip_value = "adam", 2e-3, "norm", 5.0
    cfg.train.threads, cfg.train.engine, cfg.train.device = threads, engine, device
    voc = bench_vocab(vocab)
    rng = np.random.default_rng(seed)
    n = batch * seq * (warmup + steps) + batch  # one stream of (warmup + steps) * seq + 1 per row
    ids = rng.integers(0, vocab, size=n).astype(voc.dtype)
    model = CharRNN(len(voc), cfg.model, dtype=np.float32, seed=seed)
    batches = make_batches(ids, cfg.train, "contiguous")
    return Run(cfg, voc, engines.get(engine)(model, cfg.train), batches, ids[:0],
               np.random.default_rng(seed + 1), np.random.default_rng(seed + 2), Progress(),
               out_dir="")


def train_throughput(run, steps: int, warmup: int = 3) -> tuple[float, float]:
    """(chars/s over `steps` timed train_step calls after `warmup` untimed ones, last loss)."""
    from charrnn.train.loop import train_step

    loss = float("nan")
    for _ in range(warmup):
        loss, _ = train_step(run)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = train_step(run)
    elapsed = time.perf_counter() - t0
    cfg = run.config.train
    return steps * cfg.batch_size * cfg.seq_len / elapsed, loss


def sample_throughput(model, vocab, n: int, temperature: float = 0.8, seed: int = 0) -> float:
    """chars/s of `n` characters drawn one by one from charrnn.infer.sample.generate."""
    from charrnn.infer.sample import generate

    t0 = time.perf_counter()   # the set-up inside generate() is part of the time
    it = generate(model, vocab, length=n, temperature=temperature, seed=seed)
    got = 0
    for _ in it:
        got += 1
    elapsed = time.perf_counter() - t0
    if got != n:
        raise RuntimeError(f"generate yielded {got} characters, expected {n}")
    return n / elapsed


def peak_rss_mb() -> float:
    """ru_maxrss of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------
# tokenization
# ------------------------------------------------------------------------------------------

_TOKENIZE_CHILD = """
import json, resource, sys, time
from charrnn.config import Config
from charrnn.train.run import load_corpus
with open("/proc/self/status") as f:
    base = [int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:")][0]
cfg = Config(); cfg.data.path = sys.argv[1]
t0 = time.perf_counter()
vocab, train_ids, val_ids = load_corpus(cfg, None)
s = time.perf_counter() - t0
print(json.dumps({"tokenize_s": s, "tokenize_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tokenize_baseline_rss_mb": base, "tokenize_chars": len(train_ids) + len(val_ids),
                  "tokenize_vocab": len(vocab)}))
"""


def write_synthetic_text(path: str, mb: float, seed: int = 0) -> int:
    """N MB (10^6 bytes) of random lines over 65 ASCII symbols; returns the byte count."""
    alphabet = np.frombuffer(b"\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                             np.uint8)
    rng = np.random.default_rng(seed)
    total, block = int(mb * 1_000_000), 1 << 20
    with open(path, "wb") as f:
        for start in range(0, total, block):
            picks = rng.integers(0, len(alphabet), min(block, total - start), dtype=np.uint8)
            f.write(alphabet[picks].tobytes())
    return total


def tokenize_measure(mb: float) -> dict:
    """Seconds and peak RSS of reading + vocab + encoding an N MB file, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.txt")
        size = write_synthetic_text(path, mb)
        out = subprocess.run([sys.executable, "-c", _TOKENIZE_CHILD, path], capture_output=True,
                             text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    result["tokenize_file_mb"] = size / 1e6
    # peak RSS (MiB) over the file size in MiB; the baseline (Python + imports) is included
    result["tokenize_rss_per_file_mb"] = result["tokenize_peak_rss_mb"] / (size / 2**20)
    return result


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------

# The shapes charrnn is measured on (docs/performance.md#the-standard-shapes), 2 layers and a
# vocabulary of 65 each: PyTorch's reference (../shared/bench/torch_ref.py's defaults), the
# training shapes of configs/demo.yaml and configs/shakespeare.yaml, and a large one. The steps
# make each about ten seconds of training on two cores.
STANDARD = {
    "reference": dict(hidden=128, emb=64, batch=50, seq=50, steps=30),
    "demo": dict(hidden=192, emb=48, batch=32, seq=64, steps=30),
    "shakespeare": dict(hidden=256, emb=64, batch=32, seq=64, steps=20),
    "large": dict(hidden=512, emb=64, batch=50, seq=50, steps=10),
}
SHAPE_OPTIONS = ("layers", "hidden", "emb", "vocab", "batch", "seq", "steps")


def run_standard(cell="lstm", sample=2000, threads=2, engine="numpy", device="auto"):
    """One run_bench dict per STANDARD shape, in order, each with its name as "shape"."""
    for name, shape in STANDARD.items():
        yield {"shape": name, **run_bench(cell=cell, layers=2, vocab=65, sample=sample,
                                          threads=threads, engine=engine, device=device, **shape)}


def format_standard_row(r: dict) -> str:
    """One line of the standard set's table (the header is STANDARD_HEADER)."""
    sample = "-" if r.get("sample_chars_per_s") is None else f"{r['sample_chars_per_s']:,}"
    return (f"{r['shape']:<12} {r['hidden']:>6} {r['emb']:>4} {r['batch']:>3} x {r['seq']:<3} "
            f"{r['train_chars_per_s']:>12,} {sample:>11} {r['peak_rss_mb']:>9.0f}")


STANDARD_HEADER = (f"{'shape':<12} {'hidden':>6} {'emb':>4} {'B x T':<9} {'train chars/s':>12} "
                   f"{'sample c/s':>11} {'peak MB':>9}")


def run_bench(cell="lstm", layers=2, hidden=128, emb=64, vocab=65, batch=50, seq=50, steps=30,
              sample=2000, threads=2, tokenize_mb=None, warmup=3, engine="numpy",
              device="auto") -> dict:
    """All figures of `charrnn bench` as one dict (see the module docstring)."""
    before = get_blas_threads()
    blas_count = set_blas_threads(threads) if threads else before
    try:
        return _run_bench(cell, layers, hidden, emb, vocab, batch, seq, steps, sample, threads,
                          tokenize_mb, warmup, blas_count, engine, device)
    finally:
        if threads and before:
            set_blas_threads(before)


def _run_bench(cell, layers, hidden, emb, vocab, batch, seq, steps, sample, threads, tokenize_mb,
               warmup, blas_count, engine="numpy", device="auto") -> dict:
    args = dict(cell=cell, layers=layers, hidden=hidden, emb=emb, vocab=vocab, batch=batch,
                seq=seq, steps=steps, sample=sample, threads=threads, engine=engine)
    from charrnn.fast import blas
    result = {"impl": "charrnn", **args, "blas_threads": blas_count,
              "blas_kernels": blas.corename(), "step_blocks": blas.has_small_matrix_kernels()}
    if tokenize_mb:
        result.update({k: round(v, 3) if isinstance(v, float) else v
                       for k, v in tokenize_measure(tokenize_mb).items()})
    run = make_run(cell, layers, hidden, emb, vocab, batch, seq, steps, warmup, threads=threads or 1,
                   engine=engine, device=device)
    result["device"] = str(getattr(run.engine, "device", "cpu"))     # numpy: this CPU
    workers = run.engine.worker_memory_mb()
    train_cps, loss = train_throughput(run, steps, warmup)
    if run.engine.workers > 1:
        # what the worker processes added: the growth of their peak above their size when forked,
        # less the parameters and gradients they share with this process (counted here already)
        added = sum(end["peak"] - start["rss"] - (end["shared"] - start["shared"])
                    for start, end in zip(workers, run.engine.worker_memory_mb()))
        result["worker_processes"] = len(workers)
        result["worker_added_rss_mb"] = round(added, 1)
        run.engine.close()
    else:
        added = 0.0
    result["train_chars_per_s"] = round(train_cps)
    result["train_loss"] = round(loss, 4)
    if sample > 0:
        result["sample_chars_per_s"] = round(sample_throughput(run.engine.inference_model(), run.vocab, sample))
    else:
        result["sample_chars_per_s"] = None
    result["peak_rss_mb"] = round(peak_rss_mb() + added, 1)
    return result


def format_summary(r: dict) -> str:
    """A few human-readable lines."""
    on = "" if r.get("engine", "numpy") == "numpy" else f" (engine {r['engine']}, {r.get('device')})"
    lines = [f"charrnn{on} {r['cell']}: {r['layers']} layers, hidden {r['hidden']}, embedding {r['emb']}, "
             f"vocab {r['vocab']}, batch {r['batch']} x seq {r['seq']}, "
             f"BLAS threads {r['blas_threads'] if r['blas_threads'] is not None else '?'}"
             f" ({r.get('blas_kernels') or 'unknown'} kernels"
             f"{', per-step products in blocks' if r.get('step_blocks') else ''})",
             f"  training: {r['train_chars_per_s']:,} chars/s ({r['steps']} steps after 3 warm-up)"]
    if r.get("sample_chars_per_s") is not None:
        lines.append(f"  sampling: {r['sample_chars_per_s']:,} chars/s ({r['sample']} chars, T=0.8)")
    lines.append(f"  peak RSS: {r['peak_rss_mb']:.0f} MB")
    if "tokenize_s" in r:
        lines.append(f"  tokenize {r['tokenize_file_mb']:g} MB: {r['tokenize_s']:.2f} s, peak RSS "
                     f"{r['tokenize_peak_rss_mb']:.0f} MB ({r['tokenize_rss_per_file_mb']:.2f}x the file;"
                     f" {r['tokenize_baseline_rss_mb']:.0f} MB of it Python + imports)")
    return "\n".join(lines)
