"""Tests for charrnn.optim: each fused flat-buffer optimizer against a slow per-parameter
reference written from torch.optim's equations, state round-trips, clipping and schedules."""

import math
import timeit
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from charrnn.nn.params import FlatParams
from charrnn.optim import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    RMSprop,
    clip_grad_norm,
    clip_grad_value,
    flatten_state,
    make_optimizer,
    unflatten_state,
)
from charrnn.train.lr import lr_at

SHAPES = {"embedding.weight": (5, 3), "rnn.weight_hh_l0": (4, 2), "rnn.bias_ih_l0": (4,),
          "decoder.bias": (1,)}


def make_params(dtype=np.float64, seed=0):
    params = FlatParams(SHAPES, dtype)
    params.flat[...] = np.random.default_rng(seed).standard_normal(params.flat.size)
    return params


def grad_sequence(n, dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        g = FlatParams(SHAPES, dtype)
        g.flat[...] = rng.standard_normal(g.flat.size) * rng.choice([1e-3, 1.0, 10.0])
        out.append(g)
    return out


# ---- slow references: one parameter at a time, textbook / torch.optim form ----------------

def ref_sgd(p, g, st, t, lr, momentum, wd):
    if wd:
        g = g + wd * p
    if momentum:
        st["buf"] = g.copy() if t == 1 else momentum * st["buf"] + g
        g = st["buf"]
    return p - lr * g


def ref_adagrad(p, g, st, t, lr, eps, wd):
    if wd:
        g = g + wd * p
    st["sum"] = st.get("sum", 0.0) + g * g
    return p - lr * g / (np.sqrt(st["sum"]) + eps)


def ref_rmsprop(p, g, st, t, lr, alpha, eps, wd):
    if wd:
        g = g + wd * p
    st["v"] = alpha * st.get("v", 0.0) + (1 - alpha) * g * g
    return p - lr * g / (np.sqrt(st["v"]) + eps)


def ref_adam(p, g, st, t, lr, b1, b2, eps, wd, decoupled=False):
    if wd and decoupled:
        p = p * (1 - lr * wd)
    elif wd:
        g = g + wd * p
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    denom = np.sqrt(st["v"]) / math.sqrt(bc2) + eps
    return p - (lr / bc1) * st["m"] / denom


CASES = {  # name: (fused constructor, reference update)
    "sgd": (lambda p, wd: SGD(p, 0.1, weight_decay=wd),
            lambda p, g, st, t, lr, wd: ref_sgd(p, g, st, t, lr, 0.0, wd)),
    "sgd-momentum": (lambda p, wd: SGD(p, 0.1, momentum=0.9, weight_decay=wd),
                     lambda p, g, st, t, lr, wd: ref_sgd(p, g, st, t, lr, 0.9, wd)),
    "adagrad": (lambda p, wd: Adagrad(p, 0.1, eps=1e-10, weight_decay=wd),
                lambda p, g, st, t, lr, wd: ref_adagrad(p, g, st, t, lr, 1e-10, wd)),
    "rmsprop": (lambda p, wd: RMSprop(p, 0.01, alpha=0.9, eps=1e-8, weight_decay=wd),
                lambda p, g, st, t, lr, wd: ref_rmsprop(p, g, st, t, lr, 0.9, 1e-8, wd)),
    "adam": (lambda p, wd: Adam(p, 0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=wd),
             lambda p, g, st, t, lr, wd: ref_adam(p, g, st, t, lr, 0.8, 0.99, 1e-8, wd)),
    "adamw": (lambda p, wd: AdamW(p, 0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=wd),
              lambda p, g, st, t, lr, wd: ref_adam(p, g, st, t, lr, 0.8, 0.99, 1e-8, wd, True)),
}


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_update_matches_per_parameter_reference(case, wd):
    make, ref = CASES[case]
    params = make_params()
    flat_before = params.flat
    opt = make(params, wd)
    expect = params.to_dict()
    states = {name: {} for name in SHAPES}
    for t, grads in enumerate(grad_sequence(6), start=1):
        lr = None if t % 2 else opt.lr * 0.5  # the per-step lr override must be honoured
        saved = grads.flat.copy()
        opt.step(grads, lr=lr)
        assert np.array_equal(grads.flat, saved), "step() must not write to the gradients"
        for name in SHAPES:
            expect[name] = ref(expect[name], grads[name], states[name], t,
                               opt.lr if lr is None else lr, wd)
        for name in SHAPES:
            np.testing.assert_allclose(params[name], expect[name], rtol=1e-12, atol=1e-12,
                                       err_msg=f"{case} step {t} {name}")
    assert params.flat is flat_before and np.shares_memory(params["rnn.bias_ih_l0"], params.flat)
    assert opt.step_count == 6 and opt.lr == CASES[case][0](make_params(), wd).lr


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_round_trip_is_bit_exact(case):
    make = CASES[case][0]
    grads = grad_sequence(6, dtype=np.float32)
    params = make_params(np.float32)
    opt = make(params, 0.01)
    for g in grads[:3]:
        opt.step(g)
    state, at3 = opt.state_dict(), params.to_dict()
    for g in grads[3:]:
        opt.step(g)
    state_copy_independent = all(
        not np.shares_memory(a, s.flat) for slot, s in opt.slots.items()
        for a in state["slots"][slot].values())
    assert state_copy_independent

    tensors, scalars = flatten_state(state)
    for via in (state, unflatten_state(tensors, scalars)):
        fresh = FlatParams(SHAPES, np.float32)
        fresh.copy_from(at3)
        resumed = make(fresh, 0.01)
        resumed.load_state_dict(via)
        assert resumed.step_count == 3
        for g in grads[3:]:
            resumed.step(g)
        assert np.array_equal(fresh.flat, params.flat)


def test_flatten_names_and_unflatten_ignores_model_tensors():
    opt = Adam(make_params(), 0.01)
    opt.step(grad_sequence(1)[0])
    tensors, scalars = flatten_state(opt.state_dict())
    assert scalars == {"step": 1}
    assert set(tensors) == {f"optim.{slot}.{name}" for slot in ("exp_avg", "exp_avg_sq")
                            for name in SHAPES}
    np.testing.assert_array_equal(tensors["optim.exp_avg.rnn.weight_hh_l0"],
                                  opt.slots["exp_avg"]["rnn.weight_hh_l0"])
    back = unflatten_state({**tensors, "decoder.bias": np.zeros(1)}, scalars)
    assert back["step"] == 1 and set(back["slots"]) == {"exp_avg", "exp_avg_sq"}
    assert set(back["slots"]["exp_avg_sq"]) == set(SHAPES)
    assert flatten_state(SGD(make_params(), 0.1).state_dict()) == ({}, {"step": 0})
    with pytest.raises(ValueError, match="step"):
        unflatten_state(tensors, {})


def test_load_state_dict_mismatches_raise_and_change_nothing():
    adam = Adam(make_params(), 0.01)
    adam.step(grad_sequence(1)[0])
    good = adam.state_dict()
    with pytest.raises(ValueError, match="slots"):
        RMSprop(make_params(), 0.01).load_state_dict(good)
    bad = adam.state_dict()
    del bad["slots"]["exp_avg"]["decoder.bias"]
    with pytest.raises(ValueError, match=r"missing \['decoder.bias'\]"):
        adam.load_state_dict(bad)
    bad = adam.state_dict()
    bad["slots"]["exp_avg_sq"]["rnn.weight_hh_l0"] = np.zeros((2, 4))
    bad["step"] = 7
    before = adam.slots["exp_avg"].flat.copy()
    with pytest.raises(ValueError, match="shape"):
        adam.load_state_dict(bad)
    assert adam.step_count == 1 and np.array_equal(adam.slots["exp_avg"].flat, before)
    with pytest.raises(ValueError, match="non-negative integer"):
        adam.load_state_dict({"step": -1, "slots": good["slots"]})


def test_step_rejects_gradients_of_another_layout():
    opt = SGD(make_params(), 0.1)
    with pytest.raises(ValueError, match="does not match"):
        opt.step(FlatParams({"x": (3,)}, np.float64))
    with pytest.raises(ValueError, match="does not match"):
        opt.step(FlatParams(SHAPES, np.float32))


@pytest.mark.parametrize("case", list(CASES))
def test_step_allocates_no_buffer_sized_memory(case):
    shapes = {"a": (300, 200), "b": (40_000,)}  # 100k float32 = 400 kB
    params, grads = FlatParams(shapes, np.float32), FlatParams(shapes, np.float32)
    grads.flat[...] = 0.5
    opt = CASES[case][0](params, 0.01)
    opt.step(grads)  # first step may allocate the weight-decay scratch
    tracemalloc.start()
    try:
        opt.step(grads, lr=0.002)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000, f"{case} allocated {peak} bytes in one step"


def test_clip_grad_norm():
    g = make_params(seed=3)
    original = g.flat.copy()
    norm0 = float(np.sqrt(np.sum(original ** 2)))
    returned = clip_grad_norm(g, norm0 / 4)
    assert returned == pytest.approx(norm0, rel=1e-12)
    assert np.linalg.norm(g.flat) == pytest.approx(norm0 / 4, rel=1e-6)
    np.testing.assert_allclose(g.flat, original * (norm0 / 4) / (norm0 + 1e-6), rtol=1e-12)

    g32 = make_params(np.float32, seed=4)
    n32 = clip_grad_norm(g32, 1.0)
    assert n32 > 1.0 and np.linalg.norm(g32.flat.astype(np.float64)) == pytest.approx(1.0, rel=1e-6)

    near = make_params(seed=8)  # just over the limit still scales, by torch's coefficient
    n_near = float(np.linalg.norm(near.flat))
    before = near.flat.copy()
    clip_grad_norm(near, 0.99 * n_near)
    np.testing.assert_allclose(near.flat, before * (0.99 * n_near) / (n_near + 1e-6), rtol=1e-12)

    under = make_params(seed=5)
    before = under.flat.copy()
    assert clip_grad_norm(under, 1e6) == pytest.approx(np.linalg.norm(before), rel=1e-12)
    assert np.array_equal(under.flat, before)


def test_clip_grad_value():
    g = make_params(seed=6)
    g.flat *= 3
    expect = np.clip(g.flat, -1.5, 1.5)
    flat = g.flat
    assert clip_grad_value(g, 1.5) is None
    assert g.flat is flat and np.array_equal(g.flat, expect) and np.abs(g.flat).max() == 1.5


def sched(**kw):
    base = dict(lr=1.0, lr_schedule="constant", warmup_steps=0, min_lr=0.1, decay_rate=0.5,
                decay_every=2, max_steps=None)
    return SimpleNamespace(**{**base, **kw})


def test_constant_and_step_schedules():
    assert lr_at(sched(), 0, 0.0) == lr_at(sched(), 12345, 99.0) == 1.0
    cfg = sched(lr_schedule="step")
    expect = {0.0: 1.0, 1.99: 1.0, 2.0: 0.5, 3.5: 0.5, 4.0: 0.25, 6.0: 0.125}
    for epoch, lr in expect.items():
        assert lr_at(cfg, 1000, epoch) == lr, epoch


def test_cosine_schedule_with_warmup():
    cfg = sched(lr_schedule="cosine", warmup_steps=9, max_steps=109, min_lr=0.1)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.1)  # lr / (warmup + 1): small but not 0
    assert lr_at(cfg, 4, 0.0) == pytest.approx(0.5)  # warmup midpoint
    assert lr_at(cfg, 8, 0.0) == pytest.approx(0.9)
    assert lr_at(cfg, 9, 0.0) == pytest.approx(1.0)  # end of warmup: the peak
    assert lr_at(cfg, 59, 0.0) == pytest.approx(0.55)  # halfway down: (lr + min_lr) / 2
    assert lr_at(cfg, 34, 0.0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(cfg, 109, 0.0) == pytest.approx(0.1)  # end of cosine == min_lr
    assert lr_at(cfg, 500, 0.0) == pytest.approx(0.1)
    lrs = [lr_at(cfg, s, 0.0) for s in range(9, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_schedule_errors_and_warmup_on_constant():
    # a decaying schedule whose horizon is not fixed yet holds the peak rate
    assert lr_at(sched(lr_schedule="cosine"), 50, 0.0) == lr_at(sched(lr_schedule="linear"), 50, 0.0) == 1.0
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        lr_at(sched(lr_schedule="exponential"), 0, 0.0)
    assert lr_at(sched(warmup_steps=3), 1, 0.0) == pytest.approx(0.5)
    assert lr_at(sched(warmup_steps=3), 3, 0.0) == 1.0


def test_a_decaying_schedule_caps_its_warmup_at_a_tenth_of_the_horizon():
    cfg = sched(lr_schedule="cosine", warmup_steps=100, min_lr=0.0)
    assert lr_at(cfg, 0, 0.0, horizon=50) == pytest.approx(1 / 6)     # W = 50 // 10 = 5
    assert lr_at(cfg, 5, 0.0, horizon=50) == pytest.approx(1.0)       # the peak at step W
    assert lr_at(cfg, 50, 0.0, horizon=50) == pytest.approx(0.0)      # and the floor at the end
    assert lr_at(cfg, 0, 0.0, horizon=5000) == pytest.approx(1 / 101)  # a long run: all 100
    # a constant rate keeps its full warmup whatever the limit, so a resume with a later limit
    # repeats the uninterrupted run
    for limit in (50, 5000, None):
        assert lr_at(sched(warmup_steps=100, max_steps=limit), 49, 0.0) == pytest.approx(50 / 101)


def train_cfg(name, **kw):
    base = dict(optimizer=name, lr=0.05, momentum=0.9, beta1=0.8, beta2=0.95, eps=1e-7,
                alpha=0.9, weight_decay=0.0)
    return SimpleNamespace(**{**base, **kw})


def test_make_optimizer():
    p = make_params()
    sgd = make_optimizer("sgd", p, train_cfg("sgd"))
    assert type(sgd) is SGD and sgd.momentum == 0.9 and set(sgd.slots) == {"momentum_buffer"}
    assert set(make_optimizer("sgd", p, train_cfg("sgd", momentum=0.0)).slots) == set()
    ada = make_optimizer(None, p, train_cfg("adagrad"))
    assert type(ada) is Adagrad and ada.eps == 1e-7 and ada.lr == 0.05
    rms = make_optimizer("rmsprop", p, train_cfg("rmsprop"))
    assert type(rms) is RMSprop and rms.alpha == 0.9
    adam = make_optimizer("adam", p, train_cfg("adam", weight_decay=0.1))
    assert type(adam) is Adam and adam.betas == (0.8, 0.95) and adam.weight_decay == 0.1
    adamw = make_optimizer("adamw", p, SimpleNamespace(optimizer="adamw", lr=0.01))
    assert type(adamw) is AdamW and adamw.weight_decay == 0.01 and adamw.eps == 1e-8
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; choose one of sgd"):
        make_optimizer("lion", p, train_cfg("lion"))
    with pytest.raises(ValueError, match="beta1"):
        make_optimizer("adam", p, train_cfg("adam", beta1=1.0))


CONVERGE = {"sgd": (SGD, dict(lr=0.1)), "sgd-momentum": (SGD, dict(lr=0.05, momentum=0.9)),
            "adagrad": (Adagrad, dict(lr=0.5)), "rmsprop": (RMSprop, dict(lr=0.01)),
            "adam": (Adam, dict(lr=0.05)), "adamw": (AdamW, dict(lr=0.05, weight_decay=0.0))}


@pytest.mark.parametrize("case", list(CONVERGE))
def test_converges_on_a_quadratic(case):
    cls, kw = CONVERGE[case]
    rng = np.random.default_rng(7)
    shapes = {"w": (4, 3), "b": (3,)}
    params, grads = FlatParams(shapes), FlatParams(shapes)
    curvature = rng.uniform(0.5, 4.0, params.flat.size)
    target = rng.standard_normal(params.flat.size)
    opt = cls(params, **kw)
    cfg = sched(lr=kw["lr"], lr_schedule="cosine", max_steps=800, min_lr=0.0)

    def loss():
        return 0.5 * float(np.sum(curvature * (params.flat - target) ** 2))

    start = loss()
    for t in range(800):
        np.multiply(curvature, params.flat - target, out=grads.flat)
        opt.step(grads, lr=lr_at(cfg, t, 0.0))
    assert loss() < 1e-6 * start, f"{case}: {start} -> {loss()}"


@pytest.mark.benchmark
def test_benchmark_adam_1m_float32(capsys):
    n = 1_000_000
    rng = np.random.default_rng(0)
    params, grads = FlatParams({"w": (n,)}), FlatParams({"w": (n,)})
    params.flat[...] = rng.standard_normal(n)
    grads.flat[...] = rng.standard_normal(n)
    opt = Adam(params, 1e-3)
    m, v, p, g = (np.zeros(n, np.float32), np.zeros(n, np.float32), params.flat.copy(), grads.flat)
    t = [0]

    def naive():
        nonlocal m, v, p
        t[0] += 1
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - 1e-3 * (m / (1 - 0.9 ** t[0])) / (np.sqrt(v / (1 - 0.999 ** t[0])) + 1e-8)

    fused_ms = min(timeit.repeat(lambda: opt.step(grads), number=20, repeat=3)) / 20 * 1e3
    naive_ms = min(timeit.repeat(naive, number=20, repeat=3)) / 20 * 1e3
    with capsys.disabled():
        print(f"\nAdam step, 1M float32: fused {fused_ms:.2f} ms, naive {naive_ms:.2f} ms")
    assert fused_ms < naive_ms


def test_the_registry_declares_what_config_and_resume_read():
    from charrnn.config import CHOICES, RANGES
    from charrnn.optim import OPTIMIZERS, hyperparameter_ranges
    from charrnn.train.resume import CHANGES, rule
    assert CHOICES["train.optimizer"] == tuple(OPTIMIZERS)
    assert all(cls.name == name and cls.elementwise for name, cls in OPTIMIZERS.items())
    for key, interval in hyperparameter_ranges().items():
        assert RANGES[f"train.{key}"] == interval and rule(f"train.{key}") == CHANGES
    assert set(hyperparameter_ranges()) == {"lr", "weight_decay", "momentum", "eps", "alpha",
                                            "beta1", "beta2"}
    with pytest.raises(ValueError, match="beta1 must be in \\[0, 1\\), got 1.0"):
        Adam.check("beta1", 1.0)


def test_two_intervals_for_one_key_are_refused(monkeypatch):
    from charrnn.optim import OPTIMIZERS, Range, hyperparameter_ranges

    class Loose(SGD):
        name = "loose"
        hyperparameters = {**SGD.hyperparameters, "momentum": Range(0, 2)}

    monkeypatch.setitem(OPTIMIZERS, "loose", Loose)
    with pytest.raises(ValueError, match="train.momentum has two intervals"):
        hyperparameter_ranges()


def test_a_resume_may_turn_sgd_momentum_on_or_off():
    """SGD's momentum buffer exists only for momentum > 0: a state without it loads into SGD
    with momentum (the buffer from zeros, so the next step is torch's first momentum step), and
    a state with it into plain SGD (dropped)."""
    plain = SGD(make_params(), 0.1)
    plain.step(grad_sequence(1)[0])
    heavy = SGD(make_params(), 0.1, momentum=0.9)
    heavy.slots["momentum_buffer"].flat[...] = 1.0
    heavy.load_state_dict(plain.state_dict())
    assert heavy.step_count == 1 and not heavy.slots["momentum_buffer"].flat.any()
    heavy.step(grad_sequence(2)[1])
    plain.load_state_dict(heavy.state_dict())
    assert plain.step_count == 2 and set(plain.slots) == set()
