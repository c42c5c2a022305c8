"""`charrnn plot`: training curves from RUN_DIR/metrics.jsonl."""

import json
import math
import sys

import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.tools.plot import read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(run_dir, records, tail=""):
    run_dir.mkdir(exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (run_dir / "metrics.jsonl").write_text(text, encoding="utf-8")


def training_records(steps=400, every=10, eval_every=100, start=0):
    """What the trainer logs: a train line every `every` steps, a val line every `eval_every`."""
    out = []
    for step in range(start + every, steps + 1, every):
        chars = step * 32 * 64
        lr = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        out.append({"step": step, "epoch": step / 1000, "chars": chars, "time": step * 0.05,
                    "train_loss": 1.4 + 2.8 * math.exp(-step / 80) + 0.05 * math.sin(step),
                    "lr": lr, "chars_per_s": 40000, "grad_norm": 1.0})
        if step % eval_every == 0:
            out.append({"step": step, "chars": chars, "time": step * 0.05 + 1,
                        "val_loss": 1.6 + 2.5 * math.exp(-step / 90), "val_bpc": 0.0})
    return out


def test_plot_writes_a_png_next_to_the_metrics(tmp_path):
    pytest.importorskip("matplotlib")
    run_dir = tmp_path / "run"
    records = training_records()
    records[1]["train_loss"] = 8000.0                         # an early spike is cut off the axes
    write_metrics(run_dir, records)
    result = CliRunner().invoke(cli, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    out = run_dir / "loss.png"
    assert result.stdout.strip() == str(out)
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10000


def test_plot_output_option_and_losses_only(tmp_path):
    pytest.importorskip("matplotlib")
    run_dir = tmp_path / "run"
    records = [{"step": s, "chars": 100 * s, "time": s, "train_loss": 3.0 / s} for s in (1, 2, 3)]
    write_metrics(run_dir, records, tail='{"step": 4, "chars"')      # still being written
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(cli, ["plot", str(run_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_records_merge_by_step_and_a_resume_replaces_the_rewound_steps(tmp_path):
    first = training_records(steps=300)                       # crashed after step 300
    resumed = training_records(steps=400, start=200)          # resumed from the step-200 checkpoint
    for r in resumed:
        if "train_loss" in r:
            r["train_loss"] += 10                             # tell the attempts apart
    write_metrics(tmp_path, first + resumed)
    records = read_metrics(str(tmp_path))
    steps = [r["step"] for r in records]
    assert steps == list(range(10, 401, 10))
    by_step = {r["step"]: r for r in records}
    assert "train_loss" in by_step[100] and "val_loss" in by_step[100]   # merged
    assert by_step[200]["train_loss"] < 10 and by_step[210]["train_loss"] > 10
    assert "val_loss" in by_step[300] and "val_loss" in by_step[400]


@pytest.mark.parametrize("content,message", [
    (None, "metrics.jsonl does not exist"),
    ("", "has no records yet"),
    ('{"step": 1, "chars": 10, "time": 0.1, "lr": 0.1}\n', "has no train_loss or val_loss"),
    ('not json\n{"step": 2, "chars": 1, "time": 1, "train_loss": 2}\n', "line 1 is not a JSON"),
])
def test_bad_metrics_are_one_clear_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "metrics.jsonl").write_text(content, encoding="utf-8")
    result = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("charrnn: error: ") and message in result.stderr


def test_missing_run_dir(tmp_path):
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "is not a folder" in result.stderr


def test_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    write_metrics(tmp_path, training_records(steps=50))
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # `import matplotlib` now fails
    result = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert result.exit_code == 1
    assert "matplotlib" in result.stderr and "pip install 'charrnn[plot]'" in result.stderr
    assert not (tmp_path / "loss.png").exists()


def plot_run_to(tmp_path, out):
    """`charrnn plot TMP/run -o OUT`, the run's metrics written first if they are not there."""
    if not (tmp_path / "run" / "metrics.jsonl").exists():
        write_metrics(tmp_path / "run", training_records(steps=50))
    return CliRunner().invoke(cli, ["plot", str(tmp_path / "run"), "-o", str(out)])


@pytest.mark.parametrize("name", ["x.foo", "x.txt"])
def test_an_unsupported_suffix_is_one_line(tmp_path, name):
    pytest.importorskip("matplotlib")
    out = tmp_path / name
    result = plot_run_to(tmp_path, out)
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"charrnn: error: cannot draw a picture as '{out.suffix}'")
    assert "use .png, .pdf or .svg" in result.stderr
    assert not out.exists() and result.stdout == ""


def test_a_path_without_suffix_prints_the_png_it_writes(tmp_path):
    pytest.importorskip("matplotlib")
    result = plot_run_to(tmp_path, tmp_path / "noext")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "noext.png")
    assert (tmp_path / "noext.png").read_bytes()[:8] == PNG_MAGIC
    result = plot_run_to(tmp_path, tmp_path / "v.svg")
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "v.svg")
    assert b"<svg" in (tmp_path / "v.svg").read_bytes()[:500]


def test_a_name_that_is_only_a_suffix_is_written_as_given(tmp_path):
    pytest.importorskip("matplotlib")
    result = plot_run_to(tmp_path, tmp_path / ".png")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / ".png")
    assert (tmp_path / ".png").read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / ".png.png").exists()
    # a dot-name that is no picture format is still a name without a suffix
    result = plot_run_to(tmp_path, tmp_path / ".curves")
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / ".curves.png")


def test_a_single_training_point_is_drawn_with_a_marker(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import charrnn.tools.plot as plot_mod
    figures = []
    real_save = plot_mod._save
    monkeypatch.setattr(plot_mod, "_save", lambda fig, path: figures.append(fig) or real_save(fig, path))
    write_metrics(tmp_path, [{"step": 1, "chars": 32, "time": 0.1, "train_loss": 4.1, "lr": 0.002}])
    result = CliRunner().invoke(cli, ["plot", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (line,) = figures[0].axes[0].lines
    assert list(line.get_ydata()) == [4.1] and line.get_marker() == "o"
    write_metrics(tmp_path, training_records(steps=400))          # many points: a plain line
    assert CliRunner().invoke(cli, ["plot", str(tmp_path)]).exit_code == 0
    assert figures[1].axes[0].lines[0].get_marker() in ("None", None, "")
