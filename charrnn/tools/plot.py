"""Pictures: training curves from a run's metrics.jsonl, and gradient norms through time.

matplotlib is an optional extra (`pip install 'charrnn[plot]'`); it is imported only when a
picture is drawn, and only its non-interactive Agg canvas is used (no pyplot, no display, no
global backend switch), so plotting works on a headless machine and inside tests.

metrics.jsonl holds one JSON object per line. Every line has "step" (int), "chars" (characters
seen so far) and "time" (seconds since start); a line has some of "train_loss", "val_loss", "lr",
"chars_per_s", "grad_norm".
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from charrnn.errors import CharrnnError

INSTALL_HINT = "pip install 'charrnn[plot]'"
METRICS_FILE = "metrics.jsonl"


class PlotError(CharrnnError):
    """A picture that cannot be drawn; the message is one sentence for the user."""


FEW_POINTS = 30  # a line with this many points or fewer also gets markers (one point shows)


def _matplotlib():
    """(FigureCanvasAgg, Figure), or PlotError when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401  (first, so a missing package fails here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(f"plotting needs matplotlib, which is not installed; install it with: "
                        f"{INSTALL_HINT}") from None
    return FigureCanvasAgg, Figure


def output_path(path: str) -> tuple[str, str]:
    """(the path a picture is really written to, its format) for a requested path.

    The format is the suffix's; a path without one gets '.png' appended (as matplotlib does, so
    the path printed is the file written). An unsupported suffix is a PlotError, raised before
    any work is done.
    """
    canvas, _ = _matplotlib()
    supported = sorted(canvas.get_supported_filetypes())
    stem, suffix = os.path.splitext(path)
    name = os.path.basename(path)
    if not suffix and name[1:].lower() in supported:   # ".png": splitext sees no suffix there
        suffix = name
    fmt = suffix[1:].lower()
    if not fmt:
        return (stem if suffix else path) + ".png", "png"
    if fmt not in supported:
        raise PlotError(f"cannot draw a picture as {suffix!r} ({path}); use .png, .pdf or .svg "
                        f"(matplotlib writes {', '.join('.' + f for f in supported)})")
    return path, fmt


def _figure(width: float, height: float, height_ratios=(1,)):
    """(Figure, axes) on an Agg canvas, or PlotError when matplotlib is not installed."""
    FigureCanvasAgg, Figure = _matplotlib()
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(height_ratios), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": list(height_ratios)})[:, 0]
    return fig, axes


def _save(fig, path: str) -> str:
    """Write the figure; returns the path written (see output_path)."""
    path, fmt = output_path(path)
    try:
        fig.savefig(path, dpi=120, format=fmt)
    except OSError as e:
        raise PlotError(f"cannot write {path}: {e.strerror or e}") from None
    except (ValueError, RuntimeError) as e:      # a format whose writer is missing (pgf: LaTeX)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
        raise PlotError(f"cannot write {path} as {fmt} ({reason}); use .png, .pdf or .svg") from None
    return path


def _markers(n: int, size: float = 3) -> dict:
    """Marker keywords for a line of n points: markers when there are few, so one point shows."""
    return {"marker": "o", "ms": size} if n <= FEW_POINTS else {}


# -- training curves ---------------------------------------------------------------------------

def read_metrics(run_dir: str) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl merged into one dict per step, in step order.

    The trainer writes a training line and, at evaluation steps, a validation line for the same
    step: those are merged. A resumed run appends again from its checkpoint's step, so when the
    step goes backwards, what the interrupted attempt logged from that step on is dropped. An
    unreadable last line (a run still writing) is skipped; any other bad line is a PlotError.
    """
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isdir(run_dir):
        raise PlotError(f"{run_dir} is not a folder; give the out_dir of a training run")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise PlotError(f"{path} does not exist; is {run_dir} the out_dir of a training "
                        f"run that has logged at least one step?") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlotError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    by_step: dict[int, dict] = {}
    last_step = None
    for n, line in numbered:
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            if n == numbered[-1][0]:
                continue                       # a line still being written
            raise PlotError(f"{path} line {n} is not a JSON object with a 'step'") from None
        if last_step is not None and step < last_step:        # a resume rewound the run
            by_step = {s: r for s, r in by_step.items() if s < step}
        by_step.setdefault(step, {}).update(record)
        last_step = step
    if not by_step:
        raise PlotError(f"{path} has no records yet; train for a few steps first")
    return [by_step[s] for s in sorted(by_step)]


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that have a finite `key`."""
    pairs = [(r["step"], float(r[key])) for r in records
             if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*pairs)
    return np.asarray(steps, float), np.asarray(values, float)


def _linear_map(xs: np.ndarray, ys: np.ndarray):
    """Piecewise-linear x -> y through the points, extended linearly past both ends."""
    def f(x):
        x = np.asarray(x, dtype=float)
        y = np.interp(x, xs, ys)
        lo, hi = x < xs[0], x > xs[-1]
        y = np.where(lo, ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0]), y)
        return np.where(hi, ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), y)
    return f


def _chars_axis(ax, records: list[dict]) -> None:
    """A top x axis with the characters seen, when chars grows strictly with step."""
    from matplotlib.ticker import EngFormatter

    steps, chars = _series(records, "chars")
    if len(steps) and steps[0] > 0 and chars[0] > 0:
        steps, chars = np.r_[0.0, steps], np.r_[0.0, chars]      # step 0 has seen nothing
    if len(steps) < 2 or np.any(np.diff(chars) <= 0) or np.any(np.diff(steps) <= 0):
        return
    top = ax.secondary_xaxis("top", functions=(_linear_map(steps, chars),
                                               _linear_map(chars, steps)))
    top.xaxis.set_major_formatter(EngFormatter(sep=""))
    top.set_xlabel("characters seen")


def _clip_spikes(ax, losses: np.ndarray) -> None:
    """Cut the y range at a robust top when a few early spikes would flatten everything else.

    The top is 1.5x the 95th percentile of the losses (the start of a sane run is about
    ln(vocabulary size), well inside it); the cut-off is noted on the axes.
    """
    top = 1.5 * float(np.percentile(losses, 95))
    if losses.max() <= top:
        return
    bottom = float(losses.min())
    ax.set_ylim(bottom - 0.05 * (top - bottom), top)
    ax.text(0.5, 0.98, f"off scale: losses up to {losses.max():.4g}", transform=ax.transAxes,
            ha="center", va="top", fontsize=8, color="tab:red")


def plot_metrics(run_dir: str, out: str | None = None) -> str:
    """Draw train / validation loss against step (characters seen on top); returns the path."""
    output_path(out or "loss.png")                  # a bad suffix fails before any work
    records = read_metrics(run_dir)
    train = _series(records, "train_loss")
    val = _series(records, "val_loss")
    if not len(train[0]) and not len(val[0]):
        raise PlotError(f"{os.path.join(run_dir, METRICS_FILE)} has no train_loss or val_loss "
                        f"yet; train for a few more steps")
    out = out or os.path.join(run_dir, "loss.png")
    lr = _series(records, "lr")
    has_lr = len(np.unique(lr[1])) > 1              # a constant rate needs no panel
    fig, axes = _figure(8, 6.4 if has_lr else 4.8, (3, 1) if has_lr else (1,))
    ax = axes[0]
    if len(train[0]):
        ax.plot(*train, color="tab:blue", lw=1.2, label="train", **_markers(len(train[0]), 2.5))
    if len(val[0]):
        ax.plot(*val, color="tab:orange", lw=1.6, marker="o", ms=3, label="validation")
        best = int(np.argmin(val[1]))
        ax.annotate(f"best {val[1][best]:.3f}", (val[0][best], val[1][best]),
                    textcoords="offset points", xytext=(0, 10), ha="center", fontsize=8)
    _clip_spikes(ax, np.r_[train[1], val[1]])
    ax.set_xlabel("" if has_lr else "step")
    ax.set_ylabel("loss (nats / char)")
    ax.grid(alpha=0.3)
    ax.legend(title=os.path.basename(os.path.normpath(os.path.abspath(run_dir))))
    _chars_axis(ax, records)
    if has_lr:
        lr_ax = axes[1]
        lr_ax.plot(*lr, color="tab:green", lw=1.2, **_markers(len(lr[0]), 2.5))
        lr_ax.set_xlabel("step")
        lr_ax.set_ylabel("learning rate")
        lr_ax.grid(alpha=0.3)
    return _save(fig, out)


# -- gradient norms through time ---------------------------------------------------------------

def plot_decay(result: dict, path: str, title: str | None = None) -> str:
    """Log-scale ||dL/dh|| against distance, one line per layer (diagnose's result)."""
    fig, axes = _figure(7, 4.5)
    ax = axes[0]
    for layer in result["layers"]:
        norms = np.asarray(layer["norms"])
        distance = np.arange(len(norms))
        positive = norms > 0                      # a log axis cannot show exact zeros
        decay = layer["decay_per_step"]
        label = f"layer {layer['layer']}" + ("" if decay is None else f" ({decay:.3f}/step)")
        (line,) = ax.semilogy(distance[positive], norms[positive], lw=1.5, label=label,
                              **_markers(int(positive.sum())))
        if norms[0] > 0:                          # where this layer's steps_to_threshold is read
            ax.axhline(norms[0] * result["threshold"], color=line.get_color(), lw=0.8, ls=":")
    ax.plot([], [], color="grey", lw=0.8, ls=":", label=f"{result['threshold']:g} x norm at 0")
    ax.set_xlabel("distance (steps back from the last character)")
    ax.set_ylabel("||dL/dh_t||")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or f"gradient through time: {result.get('cell', '')}, "
                 f"window {result['window']}", fontsize=10)
    return _save(fig, path)
