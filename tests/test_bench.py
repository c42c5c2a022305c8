"""`charrnn bench`: correct keys and positive figures on tiny configs (correctness only, not timed)."""

import json

import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.tools.bench import bench_vocab, set_blas_threads, tokenize_measure
from tests.conftest import CELL_NAMES, run_cli

TINY = ["--layers=2", "--hidden=8", "--emb=4", "--vocab=11", "--batch=3", "--seq=5", "--steps=2",
        "--sample=20"]


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bench_json_has_positive_figures(cell):
    result = CliRunner().invoke(cli, ["bench", "--json", f"--cell={cell}", *TINY])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    for key in ("train_chars_per_s", "sample_chars_per_s", "peak_rss_mb"):
        assert isinstance(r[key], (int, float)) and r[key] > 0, (key, r[key])
    assert r["cell"] == cell and r["hidden"] == 8 and r["steps"] == 2 and r["sample"] == 20
    assert r["train_loss"] == r["train_loss"]  # finite, not NaN
    from charrnn.fast import blas
    assert r["blas_kernels"] == blas.corename() and r["step_blocks"] == blas.has_small_matrix_kernels()


def test_bench_human_summary_and_threads_flag():
    result = CliRunner().invoke(cli, ["bench", "--cell=gru", "--threads=1", *TINY])
    assert result.exit_code == 0, result.output
    assert "training:" in result.output and "chars/s" in result.output
    assert "sampling:" in result.output and "peak RSS" in result.output


def test_bench_rejects_unknown_cell():
    result = CliRunner().invoke(cli, ["bench", "--cell=transformer"])
    assert result.exit_code == 2


def test_blas_threads_can_be_set_and_restored():
    assert set_blas_threads(1) in (1, None)
    assert set_blas_threads(2) in (2, None)


def test_bench_vocab_has_the_requested_size():
    assert len(bench_vocab(65)) == 65


def test_tokenize_measure_reports_time_and_memory():
    r = tokenize_measure(0.2)
    assert r["tokenize_s"] > 0 and r["tokenize_peak_rss_mb"] > 0
    assert r["tokenize_chars"] == 200_000 and r["tokenize_vocab"] == 65


def test_bench_restores_the_blas_thread_count():
    from charrnn.tools.bench import get_blas_threads

    before = get_blas_threads()
    CliRunner().invoke(cli, ["bench", "--json", "--threads=1", *TINY])
    assert get_blas_threads() == before


TINY_SHAPES = {"one": dict(hidden=8, emb=4, batch=3, seq=5, steps=2),
               "two": dict(hidden=6, emb=5, batch=2, seq=4, steps=1)}


def test_bench_standard_measures_each_shape_in_order(monkeypatch):
    from charrnn.tools import bench
    assert list(bench.STANDARD) == ["reference", "demo", "shakespeare", "large"]
    assert bench.STANDARD["shakespeare"] == dict(hidden=256, emb=64, batch=32, seq=64, steps=20)
    monkeypatch.setattr(bench, "STANDARD", TINY_SHAPES)
    result = CliRunner().invoke(cli, ["bench", "--standard", "--json", "--sample=10"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["shape"] for r in rows] == ["one", "two"]
    for r, shape in zip(rows, TINY_SHAPES.values()):
        assert {k: r[k] for k in shape} == shape and r["layers"] == 2 and r["vocab"] == 65
        assert r["train_chars_per_s"] > 0 and r["sample_chars_per_s"] > 0
    table = CliRunner().invoke(cli, ["bench", "--standard", "--sample=0"]).output.splitlines()
    assert table[0].split()[:3] == ["shape", "hidden", "emb"]
    assert [line.split()[:2] for line in table[1:]] == [["one", "8"], ["two", "6"]]


@pytest.mark.parametrize("option", ["--hidden=64", "--steps=3", "--tokenize-mb=1"])
def test_bench_standard_refuses_a_shape_of_its_own(option):
    result = run_cli("bench", "--standard", option)
    assert result.exit_code == 2 and result.stdout == ""
    name = option.split("=")[0]
    assert f"drop {name}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
