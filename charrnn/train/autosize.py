"""`model.size: auto`: the layers, hidden size and dropout that train best in the run's budget.

The rule reads a measured table (MEASURED; docs/model-size.md, made by charrnn/tools/size_study.py):
validation loss of each candidate size after a fixed number of steps (batches of 32 x 64
characters), on corpora of three sizes. For a new run it

  1. takes the measured corpus nearest to the training text in log(characters);
  2. converts the run's limit into each candidate's steps: max_steps, max_epochs x batches per
     epoch, and max_minutes x 60 / that candidate's seconds per step, timed here on a training
     batch (the first of these limits wins, as in the run itself), counted in the table's
     32 x 64 characters per step;
  3. predicts each candidate's loss at its steps, interpolating its measured losses linearly in
     log(steps), a candidate counting only within REACH of the steps it was measured at;
  4. keeps the lowest prediction; where no candidate counts, the budget is beyond the table and
     the choice is the best measured at the table's budget nearest to it.

Explicit sizes win: with a model.layers, hidden_size or dropout given in the config file or by
--set, only the candidates with those values compete (none measured: the other sizes keep their
defaults). The resolved sizes are stored in the run's config (with model.size null), so sample,
eval and resume read plain numbers.

The default: a new run with a time budget (train.max_minutes) whose config file and --set give
no size (model.size, layers, hidden_size, dropout) is a model.size auto run where the rule can
choose (an lstm on the numpy engine, not --init-from), and keeps the plain defaults elsewhere;
the table says it trains better than the default 2 x 256 (docs/model-size.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from charrnn.config import Config, ConfigError

SIZE_KEYS = ("layers", "hidden_size", "dropout")
REACH = 1.5        # a candidate's measured steps stand for steps within this factor of them
TIMED = 2          # training passes timed per candidate hidden size (after one untimed)


@dataclass(frozen=True)
class Candidate:
    layers: int
    hidden_size: int
    dropout: float

    def describe(self) -> str:
        return f"{self.layers}x{self.hidden_size}, dropout {self.dropout:g}"


CANDIDATES = {
    "2x128": Candidate(2, 128, 0.0),
    "2x128-d3": Candidate(2, 128, 0.3),
    "2x256": Candidate(2, 256, 0.0),
    "2x256-d1": Candidate(2, 256, 0.1),
    "2x256-d3": Candidate(2, 256, 0.3),
    "2x256-d5": Candidate(2, 256, 0.5),
    "2x384": Candidate(2, 384, 0.0),
    "2x384-d1": Candidate(2, 384, 0.1),
    "2x512": Candidate(2, 512, 0.0),
}

# seconds per training step (lstm, embedding 64, batch 32 x 64) on the machine of the table,
# 2 cores: what converts its budgets in minutes into each candidate's steps
STEP_SECONDS = {128: 0.034, 256: 0.090, 384: 0.180, 512: 0.315}

# the measured corpora: their training characters
CORPORA = {"shk-100K": 90_000, "shk-1M": 1_003_854, "code-10M": 9_000_000}

# (corpus, budget in minutes on the table's machine, candidate, steps, validation loss in
# nats/char after those steps, from a run of that many steps): docs/model-size.md
MEASURED: tuple[tuple[str, float, str, int, float], ...] = (
    ("code-10M", 1, "2x128", 1765, 1.5051),
    ("code-10M", 1, "2x256", 667, 1.5675),
    ("code-10M", 3, "2x256", 2000, 1.2596),
    ("code-10M", 10, "2x256", 6667, 1.1002),
    ("code-10M", 1, "2x384", 333, 1.7426),
    ("code-10M", 3, "2x384", 1000, 1.328),
    ("code-10M", 10, "2x384", 3333, 1.1232),
    ("code-10M", 3, "2x512", 571, 1.3874),
    ("shk-100K", 1, "2x128", 1765, 1.575),
    ("shk-100K", 1, "2x128-d3", 1765, 1.5036),
    ("shk-100K", 3, "2x128-d3", 5294, 1.6167),
    ("shk-100K", 1, "2x256", 667, 1.5083),
    ("shk-100K", 3, "2x256", 2000, 2.129),
    ("shk-100K", 1, "2x256-d3", 667, 1.5069),
    ("shk-100K", 3, "2x256-d3", 2000, 1.6664),
    ("shk-100K", 3, "2x256-d5", 2000, 1.5766),
    ("shk-1M", 1, "2x128", 1765, 1.6185),
    ("shk-1M", 3, "2x128", 5294, 1.5238),
    ("shk-1M", 1, "2x256", 667, 1.6583),
    ("shk-1M", 3, "2x256", 2000, 1.4759),
    ("shk-1M", 10, "2x256-d1", 6667, 1.4528),
    ("shk-1M", 1, "2x384", 333, 1.7805),
    ("shk-1M", 3, "2x384", 1000, 1.4872),
    ("shk-1M", 10, "2x384-d1", 3333, 1.4257),
)

TABLE_CHARS_PER_STEP = 32 * 64      # the table's batch: a run's steps count in these


@dataclass
class Choice:
    candidate: str
    steps: int            # the run's steps for it, in table steps (TABLE_CHARS_PER_STEP each)
    loss: float           # predicted at those steps, or measured at `minutes` (beyond the table)
    minutes: float | None = None     # beyond the table: the nearest budget it measured


def corpus_class(train_chars: int) -> str:
    """The measured corpus nearest to `train_chars` in log(characters)."""
    return min(CORPORA, key=lambda c: abs(math.log(CORPORA[c] / max(train_chars, 1))))


def curve(corpus: str, candidate: str) -> list[tuple[int, float]]:
    """The measured (steps, loss) of a candidate on a corpus, by steps."""
    return sorted((s, v) for c, _, n, s, v in MEASURED if c == corpus and n == candidate)


def predict(points: list[tuple[int, float]], steps: int) -> float | None:
    """The loss at `steps` from measured points: linear in log(steps) between them, the nearest
    one's outside them up to a factor REACH; None beyond it (or with no points)."""
    if not points or not points[0][0] / REACH <= steps <= points[-1][0] * REACH:
        return None
    if steps <= points[0][0]:
        return points[0][1]
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if steps <= s1:
            w = math.log(steps / s0) / math.log(s1 / s0)
            return v0 + w * (v1 - v0)
    return points[-1][1]


def choose(corpus: str, steps_of, allowed=lambda c: True) -> Choice | None:
    """The allowed candidate with the lowest predicted loss; steps_of(candidate) -> its steps in
    the run's budget (table steps). Where none was measured within REACH of its steps, the run's
    budget is beyond the table: the candidate measured best at the table's budget nearest to it
    (in log minutes on the table's machine). None when no allowed candidate was measured."""
    names = [n for n in dict.fromkeys(n for c, _, n, _, _ in MEASURED if c == corpus)
             if allowed(CANDIDATES[n])]
    steps = {n: steps_of(CANDIDATES[n]) for n in names}
    found = [Choice(n, steps[n], loss) for n in names
             if (loss := predict(curve(corpus, n), steps[n])) is not None]
    if found or not names:
        return min(found, key=lambda c: c.loss, default=None)
    # the run's budget in the table's minutes, from each candidate's steps (geometric mean)
    minutes = math.exp(sum(math.log(steps[n] * STEP_SECONDS[CANDIDATES[n].hidden_size] / 60)
                           for n in names) / len(names))
    budgets = {m for c, m, n, _, _ in MEASURED if c == corpus and n in names}
    nearest = min(budgets, key=lambda m: abs(math.log(m / minutes)))
    loss, name = min((v, n) for c, m, n, _, v in MEASURED
                     if c == corpus and m == nearest and n in names)
    return Choice(name, steps[name], loss, nearest)


def run_steps(train_cfg, seconds_per_step: float | None, batches_per_epoch: int) -> int:
    """The steps a run's first limit allows (max_minutes at seconds_per_step)."""
    limits = []
    if train_cfg.max_steps is not None:
        limits.append(train_cfg.max_steps)
    if train_cfg.max_epochs is not None:
        limits.append(train_cfg.max_epochs * batches_per_epoch)
    if train_cfg.max_minutes is not None:
        limits.append(int(train_cfg.max_minutes * 60 / seconds_per_step))
    return max(min(limits), 1)


def time_step(cfg: Config, vocab_size: int, hidden_size: int, ids: np.ndarray) -> float:
    """Seconds per training step of the lstm at a candidate's hidden size, here: one worker's
    share of the batch (train.threads, charrnn/engines/numpy_engine.py) on one BLAS thread, as
    each worker runs it on its own core (workers beyond the cores take turns); the median of
    TIMED passes after an untimed one. It assumes the cores are free."""
    from charrnn.engines.numpy_engine import worker_count
    from charrnn.fast import blas
    from charrnn.fast.parallel import available_cores
    from charrnn.nn.model import CharRNN
    from charrnn.train.report import median_seconds, timing_batch

    t = cfg.train
    workers = worker_count(t)
    rows = -(-t.batch_size // workers)
    spec = dataclasses.replace(cfg.model, layers=2, hidden_size=hidden_size, dropout=0.0)
    model = CharRNN(vocab_size, spec, dtype=np.dtype(t.dtype))
    inputs, targets = timing_batch(ids, rows, t.seq_len)
    with blas.limited(1):
        seconds = median_seconds(lambda: model.loss_and_grad(inputs, targets), TIMED)
    return seconds * max(1.0, workers / available_cores())      # workers beyond cores take turns


def refuse_unmeasured(cfg: Config, init_from: bool) -> None:
    """ConfigError where model.size auto has nothing to choose from."""
    t = cfg.train
    fix = "remove model.size"
    if init_from:
        why = "with --init-from the model is the checkpoint's"
    elif cfg.model.cell != "lstm":
        why = f"its table is measured for the lstm cell, not {cfg.model.cell}"
    elif t.engine != "numpy":
        why = "its table is measured on the numpy engine"
    elif t.max_steps is None and t.max_epochs is None and t.max_minutes is None:
        why = "it chooses by the run's budget, and this run has none"
        fix = "set train.max_minutes (or max_steps, max_epochs), or remove model.size"
    else:
        return
    raise ConfigError(f"model.size auto cannot choose here: {why}; {fix}")


def by_default(cfg: Config) -> bool:
    """Whether a new run's config gets model.size auto as its default (see above)."""
    sizes = {"model.size", *(f"model.{k}" for k in SIZE_KEYS)}
    return cfg.train.max_minutes is not None and not sizes & cfg.given


def wanted(cfg: Config, init_from: bool) -> bool:
    """Whether model.size auto chooses this run's sizes: asked for (ConfigError where it
    cannot choose), or the default (by_default) where it can."""
    if cfg.model.size == "auto":
        refuse_unmeasured(cfg, init_from)
        return True
    if not by_default(cfg):
        return False
    try:
        refuse_unmeasured(cfg, init_from)
    except ConfigError:
        return False
    return True


def resolve(cfg: Config, vocab_size: int, train_ids: np.ndarray,
            batches_per_epoch: int) -> tuple[Config, str]:
    """(cfg with model.size auto resolved into plain sizes, the line that says why). The
    candidates are those with the sizes the config gives (Config.given), if any."""
    corpus = corpus_class(len(train_ids))
    t, timed = cfg.train, {}
    kept = {k: getattr(cfg.model, k) for k in SIZE_KEYS if f"model.{k}" in cfg.given}

    def steps_of(c: Candidate) -> int:
        seconds = None
        if t.max_minutes is not None:
            if c.hidden_size not in timed:
                timed[c.hidden_size] = time_step(cfg, vocab_size, c.hidden_size, train_ids)
            seconds = timed[c.hidden_size]
        steps = run_steps(t, seconds, batches_per_epoch)
        return max(round(steps * t.batch_size * t.seq_len / TABLE_CHARS_PER_STEP), 1)

    choice = choose(corpus, steps_of, lambda c: all(getattr(c, k) == v for k, v in kept.items()))
    if choice is None:
        given = ", ".join(f"model.{k} {v:g}" for k, v in kept.items())
        return (dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, size=None)),
                f"model.size auto: no measured size has {given}; the others keep their defaults")
    sizes = dataclasses.asdict(CANDIDATES[choice.candidate])
    model = dataclasses.replace(cfg.model, size=None, **sizes)
    return dataclasses.replace(cfg, model=model), _reason(corpus, choice, len(train_ids), kept)


def _reason(corpus: str, choice: Choice, train_chars: int, kept: dict) -> str:
    """The report's line: the choice, the steps it gets here and the table's figure behind it."""
    best = CANDIDATES[choice.candidate]
    steps = f"{choice.steps:,} step{'s' if choice.steps != 1 else ''}"
    text = (f"{corpus} ({CORPORA[corpus]:,} training characters), the measured text nearest "
            f"this one ({train_chars:,})")
    if choice.minutes is None:
        why = (f"the lowest loss the measured table predicts for this budget, {steps} of "
               f"32 x 64 characters: {choice.loss:.3f} nats/char on {text}")
    else:
        why = (f"this budget ({steps} of 32 x 64 characters) is beyond the measured ones, so the "
               f"best at the table's nearest budget, {choice.minutes:g} min: {choice.loss:.3f} "
               f"nats/char on {text}")
    given = f"; {', '.join('model.' + k for k in kept)} as given" if kept else ""
    return f"model.size auto: {best.describe()}, {why}{given} (docs/model-size.md)"
