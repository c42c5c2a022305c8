"""`charrnn gradcheck`: passes on the real backward, fails (exit 1) on a corrupted one."""


import pytest
from click.testing import CliRunner

from charrnn.cli import cli
from charrnn.nn import cells
from charrnn.tools.diagnose import format_gradcheck


@pytest.mark.parametrize("args", [[], ["--cell", "rnn", "--nonlinearity", "relu", "--layers", "1"],
                                  ["--cell", "gru", "--dropout", "0.3"]])
def test_gradcheck_passes_on_the_real_backward(args):
    result = CliRunner().invoke(cli, ["gradcheck", *args])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["parameter", "entries", "max", "rel", "error", "result"]
    assert any(line.startswith("rnn.weight_hh_l0 ") and line.endswith("pass") for line in lines)
    assert "FAIL" not in result.stdout
    assert lines[-1].startswith("ok: all ")


def test_gradcheck_fails_on_a_corrupted_gradient(monkeypatch):
    real = cells.lstm.backward

    def corrupted(dout, dstate, cache, grads=None, dh_trace=None):
        dx, d0, g = real(dout, dstate, cache, grads, dh_trace)
        g["weight_hh"][0, 0] *= 1.001
        return dx, d0, g

    monkeypatch.setattr(cells.lstm, "backward", corrupted)
    result = CliRunner().invoke(cli, ["gradcheck", "--cell", "lstm", "--layers", "1"])
    assert result.exit_code == 1
    failing = [line.split()[0] for line in result.stdout.splitlines() if line.endswith("FAIL")]
    assert failing == ["rnn.weight_hh_l0"]
    assert result.stdout.splitlines()[-1].startswith("FAIL: 1 of 9 gradients")


def test_tolerance_decides_pass_or_fail():
    results = [{"name": "a", "entries": 3, "max_rel_error": 1e-8},
               {"name": "b", "entries": 4, "max_rel_error": 2e-6}]
    text, ok = format_gradcheck(results, 1e-6)
    assert not ok and "FAIL: 1 of 2" in text
    text, ok = format_gradcheck(results, 1e-5)
    assert ok and "worst 2.00e-06, b" in text


def test_bad_option_is_a_usage_error():
    result = CliRunner().invoke(cli, ["gradcheck", "--cell", "transformer"])
    assert result.exit_code == 2
