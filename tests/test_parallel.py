"""The data-parallel training step: the same loss, gradient and state as one full-batch call."""

import math

import numpy as np
import pytest

from charrnn.fast import blas, parallel
from charrnn.fast.parallel import DataParallel, auto_workers
from charrnn.optim import SGD
from tests.conftest import CELL_CASES, tiny_model


def make(cell, nonlinearity="tanh", dropout=0.0):
    """Two layers of 6, embedding 4, 9 symbols (the batches' ids are < 9), float64."""
    return tiny_model(cell, nonlinearity, 2, hidden=6, embed=4, vocab=9, dropout=dropout, seed=3)


def batch(B=5, T=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 9, (B, T)), rng.integers(0, 9, (B, T))


needs_fork = pytest.mark.skipif(not parallel.can_fork(), reason="shards run in threads here")
BACKENDS = [pytest.param(True, id="processes", marks=needs_fork), pytest.param(False, id="threads")]


@pytest.mark.parametrize("cell,nonlinearity", CELL_CASES)
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("processes", BACKENDS)
def test_sharded_step_equals_the_full_batch_step(cell, nonlinearity, workers, processes):
    model = make(cell, nonlinearity)
    x, y = batch()
    state = tuple(np.random.default_rng(1).standard_normal(s.shape) * 0.5
                  for s in model.initial_state(5))
    loss, new_state, _ = model.loss_and_grad(x, y, state)
    expected = model.grads.flat.copy()
    model.grads.flat[...] = 0
    dp = DataParallel(model, SGD(model.params, 0.1), workers, processes)
    try:
        got, got_state, _ = dp.loss_and_grad(x, y, state)
    finally:
        dp.close()
    assert got == pytest.approx(loss, abs=1e-12)
    np.testing.assert_allclose(model.grads.flat, expected, rtol=0, atol=1e-12)
    assert np.abs(expected).max() > 1e-3               # a real gradient, not zeros
    for a, b in zip(got_state, new_state):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_dropout_shards_draw_from_seeds_taken_in_order():
    """With dropout, shard k's masks come from the k-th seed drawn from the run's generator:
    the weighted mean of the shards computed one by one with those seeds is the result."""
    model = make("lstm", dropout=0.3)
    x, y = batch(B=6)
    dp = DataParallel(model, SGD(model.params, 0.1), 2)
    try:
        loss, _, _ = dp.loss_and_grad(x, y, None, True, np.random.default_rng(5))
        grad = model.grads.flat.copy()
        again, _, _ = dp.loss_and_grad(x, y, None, True, np.random.default_rng(5))
        assert again == loss and np.array_equal(model.grads.flat, grad)
        other, _, _ = dp.loss_and_grad(x, y, None, True, np.random.default_rng(6))
        assert other != loss
    finally:
        dp.close()
    seeds = np.random.default_rng(5).integers(0, 2**63, size=2)
    parts = []
    for k, rows in enumerate((slice(0, 3), slice(3, 6))):
        part_loss, _, _ = model.loss_and_grad(x[rows], y[rows], None, True,
                                              np.random.default_rng(seeds[k]))
        parts.append((part_loss, model.grads.flat.copy()))
    assert loss == pytest.approx(0.5 * parts[0][0] + 0.5 * parts[1][0], abs=1e-12)
    np.testing.assert_allclose(grad, 0.5 * parts[0][1] + 0.5 * parts[1][1], rtol=0, atol=1e-12)


def test_more_workers_than_streams_uses_one_shard_per_stream():
    model = make("gru")
    x, y = batch(B=2)
    loss, _, _ = model.loss_and_grad(x, y)
    expected = model.grads.flat.copy()
    dp = DataParallel(model, SGD(model.params, 0.1), 4)
    try:
        assert dp.loss_and_grad(x, y)[0] == pytest.approx(loss, abs=1e-12)
    finally:
        dp.close()
    np.testing.assert_allclose(model.grads.flat, expected, rtol=0, atol=1e-12)


def test_auto_workers(monkeypatch):
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    monkeypatch.setattr(blas, "get_threads", lambda: 2)
    assert auto_workers(32) == 2
    assert auto_workers(12) == 1                 # fewer than 8 streams per worker
    monkeypatch.setattr(parallel, "available_cores", lambda: 64)
    assert auto_workers(1000) == parallel.MAX_AUTO_WORKERS
    monkeypatch.setattr(blas, "get_threads", lambda: None)
    assert auto_workers(1000) == 1               # a BLAS whose threads cannot be limited


def test_blas_limited_restores_the_thread_count():
    before = blas.get_threads()
    if before is None:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS whose threads can be set")
    blas.set_threads(2)
    with blas.limited(1):
        assert blas.get_threads() == 1
    assert blas.get_threads() == 2
    blas.set_threads(before)


def test_the_trainer_uses_the_threads_it_is_given():
    from charrnn.tools.bench import make_run
    from charrnn.train.loop import train_step
    runs = [make_run(cell="lstm", hidden=8, emb=4, vocab=7, batch=6, seq=5, steps=3, warmup=0,
                     threads=n) for n in (1, 2)]
    assert runs[0].engine.workers == 1 and runs[1].engine.workers == 2
    for _ in range(3):
        one, two = (train_step(run)[0] for run in runs)
        assert two == pytest.approx(one, rel=1e-5)
    np.testing.assert_allclose(runs[1].engine.model.params.flat, runs[0].engine.model.params.flat,
                               atol=1e-5)
    runs[1].engine.close()


@needs_fork
def test_processes_and_threads_give_the_same_bits_and_see_parameter_updates():
    """Worker processes read the parameters from shared memory: after the caller changes them
    in place (as the optimizer does), the next step uses the new values in every shard."""
    x, y = batch(B=6)
    results = []
    for processes in (True, False):
        model = make("lstm", dropout=0.2)
        dp = DataParallel(model, SGD(model.params, 0.1), 3, processes)
        try:
            rng = np.random.default_rng(4)
            dp.loss_and_grad(x, y, None, True, rng)
            model.params.flat -= 0.5 * model.grads.flat          # an SGD step, in place
            loss, state, _ = dp.loss_and_grad(x, y, None, False)  # no dropout: comparable
            results.append((loss, model.grads.flat.copy(), state))
        finally:
            dp.close()
        expected, _, _ = model.loss_and_grad(x, y, None, False)  # one process, new parameters
        assert loss == pytest.approx(expected, abs=1e-12)
    (la, ga, sa), (lb, gb, sb) = results
    assert la == lb and np.array_equal(ga, gb)
    assert all(np.array_equal(u, v) for u, v in zip(sa, sb))


@needs_fork
def test_a_dead_worker_process_is_a_clear_error():
    model = make("gru")
    x, y = batch(B=4)
    dp = DataParallel(model, SGD(model.params, 0.1), 2, processes=True)
    dp.procs[0].kill()
    dp.procs[0].join()
    with pytest.raises(parallel.WorkerError, match="worker process ended"):
        dp.loss_and_grad(x, y)
    dp.close()                                   # closing twice is harmless


@pytest.mark.parametrize("processes", BACKENDS)
def test_an_error_in_a_shard_is_raised_and_leaves_no_stale_reply(processes):
    """A shard that fails (here: ids outside the vocabulary in shard 1 only) raises its error in
    the caller; the next step still gets its own replies, not the failed step's."""
    model = make("lstm")
    x, y = batch(B=4)
    bad = x.copy()
    bad[2:] = 99                                 # rows 2..3 are shard 1's
    dp = DataParallel(model, SGD(model.params, 0.1), 2, processes)
    try:
        with pytest.raises(IndexError):
            dp.loss_and_grad(bad, y)
        loss, _, _ = dp.loss_and_grad(x, y)
    finally:
        dp.close()
    expected, _, _ = model.loss_and_grad(x, y)
    assert loss == pytest.approx(expected, abs=1e-12)


OPTIMIZERS = [("sgd", dict(momentum=0.9, weight_decay=0.01)), ("adagrad", {}),
              ("rmsprop", dict(weight_decay=0.01)), ("adam", dict(weight_decay=0.01)),
              ("adamw", {})]


@needs_fork
@pytest.mark.parametrize("name,kw", OPTIMIZERS)
@pytest.mark.parametrize("max_norm", [math.inf, 0.05])
def test_the_update_split_over_processes_equals_the_update_in_one(name, kw, max_norm):
    """Three steps of merge, clip and update, each process doing its part of the flat buffers,
    against the same done here on the whole: the same parameters and optimizer state, bit for
    bit without clipping (with it, the norm's two partial sums may round differently)."""
    from charrnn.optim import OPTIMIZERS as KINDS
    from charrnn.optim import clip_coefficient
    x, y = batch(B=6)
    ends = []
    for processes in (True, False):
        model = make("gru")
        optimizer = KINDS[name](model.params, 0.05, **kw)
        dp = DataParallel(model, optimizer, 3, processes)
        try:
            for _ in range(3):
                dp.loss_and_grad(x, y, None, False)
                norm = dp.grad_norm()
                assert norm == pytest.approx(np.linalg.norm(model.grads.flat), rel=1e-12)
                dp.update(0.05, clip_coefficient(norm, max_norm))
        finally:
            dp.close()
        ends.append((model.params.flat.copy(), optimizer.state_dict()))
    (pa, sa), (pb, sb) = ends
    assert sa["step"] == sb["step"] == 3
    compare = np.testing.assert_array_equal if max_norm == math.inf else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15))
    compare(pa, pb)
    for slot in sa["slots"]:
        for param in sa["slots"][slot]:
            compare(sa["slots"][slot][param], sb["slots"][slot][param])
    assert not np.array_equal(pa, make("gru").params.flat)      # it did move


@needs_fork
def test_an_error_in_a_worker_update_is_raised():
    model = make("lstm")
    from charrnn.optim import Adam
    optimizer = Adam(model.params, 0.01)
    dp = DataParallel(model, optimizer, 2, processes=True)
    try:
        x, y = batch(B=4)
        dp.loss_and_grad(x, y, None, False)
        with pytest.raises(ValueError, match="could not convert"):
            dp.update("not a number")         # fails in both processes
        dp.loss_and_grad(x, y, None, False)                      # and the next step still works
        dp.update(0.01)
    finally:
        dp.close()


class WholeBufferSGD(SGD):
    """SGD with the step scaled to a fixed length over the whole buffer: not element-wise (as
    LAMB's or Muon's per-tensor rules), so a part of the buffer would get another update."""

    name = "wholesgd"
    elementwise = False

    def _update(self, g, lr):
        np.subtract(self.params.flat, lr * g / (np.linalg.norm(g) + 1e-12), out=self.params.flat)


def test_an_optimizer_that_is_not_element_wise_is_refused_by_the_workers(tmp_path, corpus,
                                                                         monkeypatch):
    from charrnn.config import CHOICES
    from charrnn.optim import OPTIMIZERS as KINDS
    from tests.conftest import run_cli
    from tests.test_train import SMALL, write_config
    monkeypatch.setitem(KINDS, "wholesgd", WholeBufferSGD)
    monkeypatch.setitem(CHOICES, "train.optimizer", tuple(KINDS))
    args = [*SMALL, "--set", "train.optimizer=wholesgd", "--set", "train.max_steps=2"]
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *args, "--set", "train.threads=2")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "train.optimizer wholesgd updates whole tensors" in r.stderr
    assert "set train.threads=1" in r.stderr and not (tmp_path / "run").exists()
    r = run_cli("train", write_config(tmp_path, corpus), "-q", *args, "--set", "train.threads=1")
    assert r.exit_code == 0, r.output                       # in one process it trains
    with pytest.raises(ValueError, match="not element-wise"):
        WholeBufferSGD(make("gru").params, 0.1).part(slice(0, 3))
