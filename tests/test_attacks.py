"""deep.attacks: PGD and the multi-targeted attack against closed forms (YRZSC Sec. 5, App. D.1).

Closed forms used (all inputs kept away from the [0, 1] box edges unless a test is about clipping):
* binary linear classifier, logits (0, s(x)), s = w.x + b, label 1: the optimal l-inf attack moves
  every coordinate by -eps*sign(w) and lowers s by eps*||w||_1; the optimal l2 attack moves by
  -eps*w/||w||_2 and lowers s by eps*||w||_2;
* multiclass linear model z = W x + b: the worst-case margin max_{||d|| <= eps} max_{t != y}
  (z_t - z_y)(x + d) equals max_{t != y} (z_t - z_y)(x) + eps*||w_t - w_y||_* (dual norm), which
  the multi-targeted attack must reach since each targeted problem is linear.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deep.attacks import (LOSSES, multi_targeted, perturbation_norms, pgd, random_start_points,
                          robust_accuracy)
from theory.constants import YANG_PGD_STEP_DIVISOR

torch.set_num_threads(1)


class Binary(torch.nn.Module):
    """Logits (0, w.x + b) of a binary linear classifier."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = x.reshape(x.shape[0], -1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


class _Standardise(torch.nn.Module):
    """(x - 0.5) * 10: the normalisation layer models carry so attacks work in [0, 1]."""

    def forward(self, x):
        return (x - 0.5) * 10.0


def _linear(W: torch.Tensor, b: torch.Tensor) -> torch.nn.Module:
    lin = torch.nn.Linear(W.shape[1], W.shape[0]).to(W.dtype)
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.bias.copy_(b)
    return torch.nn.Sequential(torch.nn.Flatten(), lin)


def _tiny_cnn(seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)  # test fixture construction only; the attacks never touch this RNG
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(16, 3)).to(dtype)


def _inner(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, d, generator=g, dtype=dtype)  # >= 0.3 from the box edges


# ------------------------------------------------------------------ closed forms: binary linear
@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), d=st.integers(1, 40), eps=st.floats(0.01, 0.25))
def test_linf_pgd_is_optimal_on_binary_linear(seed, d, eps):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    x, y = _inner(6, d, seed + 1), torch.ones(6, dtype=torch.long)
    adv = pgd(Binary(w, 0.1), x, y, eps, "inf", generator=g)
    # every coordinate moved by exactly eps*sign(w) (towards the other class)
    expected = -eps * w.sign()
    assert torch.allclose(adv - x, expected.expand_as(x), atol=1e-12)
    margin_drop = (x - adv) @ w
    assert torch.allclose(margin_drop, torch.full_like(margin_drop, eps * float(w.abs().sum())),
                          rtol=1e-10)


@functools.lru_cache(maxsize=None)
def _worst_l2_fraction(steps: int, frac: float) -> float:
    """Smallest a/eps reached by `steps` projected steps of size frac*eps along a fixed unit
    direction u from any start on the sphere (2-D recursion: component a along u, o across)."""
    worst = 1.0
    for th in np.linspace(0, math.pi, 721):
        a, o = math.cos(th), math.sin(th)
        for _ in range(steps):
            a += frac
            n = math.hypot(a, o)
            if n > 1:
                a, o = a / n, o / n
        worst = min(worst, a)
    return worst


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 40), eps=st.floats(0.01, 0.25))
def test_l2_pgd_reaches_optimal_margin_on_binary_linear(seed, d, eps):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    x, y = _inner(6, d, seed + 1), torch.ones(6, dtype=torch.long)
    model, opt = Binary(w, -0.2), eps * float(w.norm())
    # no random start: 5 steps of eps/5 land exactly on -eps*w/||w||
    adv = pgd(model, x, y, eps, "2", random_start=False)
    assert torch.allclose(adv - x, (-eps * w / w.norm()).expand_as(x), atol=1e-12)
    # random start: PGD-10 reaches at least the worst case of the 2-D recursion (about 0.91)
    adv = pgd(model, x, y, eps, "2", generator=g)
    bound = _worst_l2_fraction(10, 1 / YANG_PGD_STEP_DIVISOR)
    assert 0.85 < bound < 1.0
    drop = (x - adv) @ w
    assert bool((drop >= bound * opt - 1e-9).all()) and bool((drop <= opt * (1 + 1e-9)).all())
    # more steps converge to the optimum
    adv = pgd(model, x, y, eps, "2", steps=60, generator=g)
    assert torch.allclose((x - adv) @ w, torch.full((6,), opt, dtype=torch.float64), rtol=1e-6)


def test_linf_pgd_accounts_for_clipping():
    """Near the box edges the optimum is the clipped move: x_j - min(eps, x_j) where w_j > 0 and
    x_j + min(eps, 1 - x_j) where w_j < 0."""
    g = torch.Generator().manual_seed(3)
    d, eps = 30, 0.2
    w = torch.randn(d, generator=g, dtype=torch.float64)
    x = torch.rand(8, d, generator=g, dtype=torch.float64)
    x[:, :5], x[:, 5:10] = 0.05, 0.97
    adv = pgd(Binary(w, 0.0), x, torch.ones(8, dtype=torch.long), eps, "inf", generator=g)
    expected = torch.where(w > 0, (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0))
    assert torch.allclose(adv, expected, atol=1e-12)


# ------------------------------------------------------ closed form: multiclass linear, MT
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_multi_targeted_reaches_worst_case_margin_of_linear_model(norm):
    g = torch.Generator().manual_seed(11)
    C, d, n, eps = 5, 12, 16, 0.08
    W = torch.randn(C, d, generator=g, dtype=torch.float64)
    b = torch.randn(C, generator=g, dtype=torch.float64) * 0.1
    model = _linear(W, b)
    x = _inner(n, d, 12)
    y = torch.randint(0, C, (n,), generator=g)
    adv = multi_targeted(model, x, y, eps, norm, steps=10, random_start=False)
    z = x @ W.T + b
    dual = 1.0 if norm == "inf" else 2.0
    best = torch.full((n,), -math.inf, dtype=torch.float64)
    for t in range(C):
        gain = eps * torch.linalg.vector_norm(W[t] - W[y], ord=dual, dim=1)
        cand = z[:, t] - z.gather(1, y[:, None])[:, 0] + gain
        best = torch.where(y != t, torch.maximum(best, cand), best)
    za = adv @ W.T + b
    got = za.scatter(1, y[:, None], -math.inf).amax(1) - za.gather(1, y[:, None])[:, 0]
    assert torch.allclose(got, best, rtol=1e-9, atol=1e-9)
    # with random starts and 20 steps of eps/5 per target it is within 1% of the optimum gain
    adv = multi_targeted(model, x, y, eps, norm, step_size=eps / 5, generator=g)
    za = adv @ W.T + b
    got2 = za.scatter(1, y[:, None], -math.inf).amax(1) - za.gather(1, y[:, None])[:, 0]
    clean = z.scatter(1, y[:, None], -math.inf).amax(1) - z.gather(1, y[:, None])[:, 0]
    assert bool((got2 <= best + 1e-9).all())
    assert bool((got2 - clean >= 0.99 * (best - clean) - 1e-9).all())


# --------------------------------------------------------------------- ball and box invariants
@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.0, 0.5), norm=st.sampled_from(["inf", "2"]),
       attack=st.sampled_from(["pgd", "pgd-kl", "mt"]))
def test_perturbation_in_ball_and_box(seed, eps, norm, attack):
    model = _tiny_cnn(seed % 3)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 1, 8, 8, generator=g)
    x[:, :, :2] = 0.0
    x[:, :, -2:] = 1.0                                     # exercise the box edges
    y = torch.randint(0, 3, (5,), generator=g)
    if norm == "2":
        eps = eps * 4
    if attack == "mt":
        adv = multi_targeted(model, x, y, eps, norm, steps=3, generator=g)
    else:
        adv = pgd(model, x, y, eps, norm, steps=5, generator=g,
                  loss="kl" if attack == "pgd-kl" else "ce")
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float(perturbation_norms(adv, x, norm).max()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert not bool(torch.isnan(adv).any())


def test_random_start_uniform_in_ball():
    """Monte Carlo: l-inf starts are U[-eps, eps] per coordinate (mean 0, var eps^2/3); l2 starts
    have ||d|| = eps * U^(1/d) (so E||d|| = eps * d / (d + 1)). Tolerances: 5 standard errors."""
    eps, n, d = 0.1, 4000, 16
    x = torch.full((n, d), 0.5, dtype=torch.float64) + torch.arange(n, dtype=torch.float64)[:, None] * 1e-6
    g = torch.Generator().manual_seed(5)
    delta = random_start_points(x, eps, "inf", generator=g) - x
    assert abs(float(delta.mean())) < 5 * eps / math.sqrt(3 * n * d)
    assert abs(float(delta.var()) - eps**2 / 3) < 0.02 * eps**2
    r = (random_start_points(x, eps, "2", generator=g) - x).norm(dim=1)
    assert float(r.max()) <= eps + 1e-12
    se = float(r.std()) / math.sqrt(n)
    assert abs(float(r.mean()) - eps * d / (d + 1)) < 5 * se


def test_keyed_noise_hash_matches_integer_reference():
    """The on-device hash must give the exact 32-bit results of a pure-Python reference (this
    fails on a platform whose int64 multiplication does not wrap)."""
    from deep.attacks import _mix32

    def ref(v):
        v ^= v >> 16
        v = (v * 0x7FEB352D) & 0xFFFFFFFF
        v ^= v >> 15
        v = (v * 0x846CA68B) & 0xFFFFFFFF
        return v ^ (v >> 16)

    rng = np.random.default_rng(0)
    vals = [0, 1, 0xFFFFFFFF, 0x80000000] + [int(v) for v in rng.integers(0, 2**32, 2000)]
    got = _mix32(torch.tensor(vals, dtype=torch.int64)).tolist()
    assert got == [ref(v) for v in vals]


def test_random_starts_independent_across_examples_and_salts():
    """Distinct examples (and one example under distinct salts) get uncorrelated starts:
    |corr| < 5/sqrt(d) for d = 4096 coordinates (5 standard errors)."""
    d = 4096
    x = torch.full((2, d), 0.5, dtype=torch.float64)
    x[1, 0] = 0.5 + 1e-9                               # a one-ulp-scale difference suffices
    g = torch.Generator().manual_seed(1)
    a = random_start_points(x, 0.1, "inf", generator=torch.Generator().manual_seed(0)) - x
    b = random_start_points(x, 0.1, "inf", generator=torch.Generator().manual_seed(0), salt=1) - x
    for u, v in ((a[0], a[1]), (a[0], b[0])):
        assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < 5 / math.sqrt(d)
    assert not torch.equal(a, random_start_points(x, 0.1, "inf", generator=g) - x)


# ----------------------------------------------------------------------------- tiny models
def test_undefended_tiny_model_loses_accuracy_under_attack():
    """Natural training on two nearby Gaussian blobs: the clean accuracy is high, PGD and MT at
    eps = 0.1 bring it down; the report shows the attack stayed in the ball and the box."""
    g = torch.Generator().manual_seed(0)
    n, d = 400, 20
    y = torch.randint(0, 2, (n,), generator=g)
    mu = torch.full((d,), 0.04)
    x = (0.5 + (2 * y[:, None] - 1) * mu + 0.03 * torch.randn(n, d, generator=g)).clamp(0, 1)
    torch.manual_seed(0)  # model initialisation of the fixture
    model = torch.nn.Sequential(_Standardise(), torch.nn.Linear(d, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 2))
    params = list(model.parameters())
    for _ in range(100):  # plain full-batch gradient descent (no torch.optim: its import is slow)
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), params)
        with torch.no_grad():
            for p, gr in zip(params, grads):
                p -= 0.1 * gr
    for attack in ("pgd", "mt"):
        rep = robust_accuracy(model, x, y, 0.1, "inf", attack=attack, generator=g, batch_size=128)
        assert rep.clean_accuracy > 0.95
        assert rep.robust_accuracy < rep.clean_accuracy - 0.5
        assert rep.max_perturbation <= 0.1 + 1e-6 and rep.nan_count == 0
        assert 0.0 <= rep.adv_min and rep.adv_max <= 1.0
        assert "robust accuracy" in str(rep) and "nan in tensor: 0" in str(rep)


@pytest.mark.parametrize("attack", ["pgd", "mt"])
def test_robust_accuracy_equals_closed_form_on_linear_model(attack):
    """Binary linear logits (0, w.x + b), label 1: the point is robust at l-inf radius eps iff
    s(x) > eps ||w||_1 (inputs kept away from the box edges), so the robust accuracy is a
    count that both attacks must reproduce exactly."""
    g = torch.Generator().manual_seed(4)
    d, n, eps = 10, 200, 0.02
    w = torch.randn(d, generator=g, dtype=torch.float64)
    x = _inner(n, d, 5)
    y = torch.ones(n, dtype=torch.long)
    b = -float((x @ w).median())                # about half the points are correct
    s = x @ w + b
    clean = float((s > 0).double().mean())
    expected = float((s > eps * float(w.abs().sum())).double().mean())
    assert 0.1 < expected < clean - 0.1           # the attack has work to do
    rep = robust_accuracy(Binary(w, b), x, y, eps, "inf", attack=attack, generator=g)
    assert rep.clean_accuracy == pytest.approx(clean)
    assert rep.robust_accuracy == pytest.approx(expected)


def test_keep_best_never_weaker_than_last():
    model = _tiny_cnn(1)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    ce = torch.nn.functional.cross_entropy
    model.eval()
    with torch.no_grad():
        last = ce(model(pgd(model, x, y, 0.3, generator=torch.Generator().manual_seed(4),
                            step_size=0.2)), y, reduction="none")
        best = ce(model(pgd(model, x, y, 0.3, generator=torch.Generator().manual_seed(4),
                            step_size=0.2, keep_best=True)), y, reduction="none")
    assert bool((best >= last - 1e-6).all())


def test_kl_loss_ascends_from_the_clean_prediction():
    """TRADES inner maximisation: KL(p(x) || p(x')) after PGD exceeds its value at the start."""
    model = _tiny_cnn(2)
    g = torch.Generator().manual_seed(6)
    x, y = torch.rand(12, 1, 8, 8, generator=g), torch.randint(0, 3, (12,), generator=g)
    model.eval()
    kl = LOSSES["kl"].fn
    with torch.no_grad():
        clean = model(x)
        start = pgd(model, x, y, 0.2, steps=0, generator=torch.Generator().manual_seed(1), loss="kl")
        end = pgd(model, x, y, 0.2, steps=10, generator=torch.Generator().manual_seed(1), loss="kl")
        k0, k1 = kl(model(start), y, clean), kl(model(end), y, clean)
    assert bool((k1 > k0).all())


# --------------------------------------------------------------- reproducibility and batching
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_one_example_alone_equals_inside_batch(norm, dtype):
    model = _tiny_cnn(0, dtype)
    g = torch.Generator().manual_seed(9)
    x = torch.rand(7, 1, 8, 8, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (7,), generator=g)
    eps = 0.1 if norm == "inf" else 0.5
    batch = pgd(model, x, y, eps, norm, generator=torch.Generator().manual_seed(42))
    perm = torch.tensor([4, 0, 6, 2, 1, 5, 3])
    shuffled = pgd(model, x[perm], y[perm], eps, norm, generator=torch.Generator().manual_seed(42))
    mt_batch = multi_targeted(model, x, y, eps, norm, steps=4,
                              generator=torch.Generator().manual_seed(42))
    for i in (0, 3, 6):
        alone = pgd(model, x[i:i + 1], y[i:i + 1], eps, norm,
                    generator=torch.Generator().manual_seed(42))
        assert torch.allclose(alone[0], batch[i], atol=1e-6, rtol=0)
        mt_alone = multi_targeted(model, x[i:i + 1], y[i:i + 1], eps, norm, steps=4,
                                  generator=torch.Generator().manual_seed(42))
        assert torch.allclose(mt_alone[0], mt_batch[i], atol=1e-6, rtol=0)
    assert torch.allclose(shuffled, batch[perm], atol=1e-6, rtol=0)


def test_generator_reproducible_and_global_rng_untouched():
    model = _tiny_cnn(0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(4, 1, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)
    state = torch.get_rng_state()
    a = pgd(model, x, y, 0.1, generator=torch.Generator().manual_seed(7), steps=0)
    b = pgd(model, x, y, 0.1, generator=torch.Generator().manual_seed(7), steps=0)
    c = pgd(model, x, y, 0.1, generator=torch.Generator().manual_seed(8), steps=0)
    assert torch.equal(torch.get_rng_state(), state)        # generator given: global RNG unused
    assert torch.equal(a, b) and not torch.equal(a, c)
    # without a generator the global RNG is consumed (one draw), never reseeded
    torch.manual_seed(123)
    d1 = pgd(model, x, y, 0.1, steps=0)
    d2 = pgd(model, x, y, 0.1, steps=0)
    assert not torch.equal(d1, d2)
    torch.manual_seed(123)
    assert torch.equal(pgd(model, x, y, 0.1, steps=0), d1)


def test_mode_restored_and_parameter_grads_untouched():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    model = torch.nn.Sequential(Spy(), _tiny_cnn(0))
    model.train()
    model[1][5].eval()                     # a submodule in a different mode must keep it
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 1, 8, 8, generator=g), torch.tensor([0, 1, 2])
    pgd(model, x, y, 0.1, generator=g)
    multi_targeted(model, x, y, 0.1, steps=2, generator=g)
    robust_accuracy(model, x, y, 0.1, generator=g)
    assert seen and not any(seen)          # every forward of the attack ran in eval mode
    assert model.training and model[0].training and not model[1][5].training
    assert all(p.grad is None for p in model.parameters())


def test_works_under_no_grad_and_returns_detached():
    model = _tiny_cnn(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 1, 8, 8, generator=g), torch.tensor([0, 1, 2])
    x0 = pgd(model, x, y, 0.1, steps=0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        adv = pgd(model, x, y, 0.1, generator=torch.Generator().manual_seed(0))
    assert not adv.requires_grad and not torch.equal(adv, x0)


# ---------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs,name", [
    (dict(eps=-0.1), "eps"),
    (dict(eps=float("nan")), "eps"),
    (dict(norm="1"), "norm"),
    (dict(norm="linf"), "norm"),
    (dict(steps=-1), "steps"),
    (dict(step_size=0.0), "step_size"),
    (dict(loss="ce_kl"), "loss"),
    (dict(y=torch.tensor([0, 1, 3])), "y"),            # 3 classes: label 3 out of range
    (dict(y=torch.tensor([0, -1, 2])), "y"),
    (dict(y=torch.tensor([0, 1])), "y"),               # batch sizes differ
    (dict(y=torch.tensor([0.0, 1.0, 2.0])), "y"),
    (dict(x=torch.full((3, 1, 8, 8), 1.5)), "x"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    model = _tiny_cnn(0)
    args = dict(x=torch.rand(3, 1, 8, 8), y=torch.tensor([0, 1, 2]), eps=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        pgd(model, **args)
    if "loss" not in kwargs:
        with pytest.raises(ValueError, match=name):
            multi_targeted(model, **args)
        with pytest.raises(ValueError, match=name):
            robust_accuracy(model, **args)


def test_bad_attack_name_and_types():
    model = _tiny_cnn(0)
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="attack"):
        robust_accuracy(model, x, y, 0.1, attack="autoattack")
    with pytest.raises(ValueError, match="batch_size"):
        robust_accuracy(model, x, y, 0.1, batch_size=0)
    with pytest.raises(ValueError, match="targets"):
        multi_targeted(model, x, y, 0.1, targets=[0, 5])
    with pytest.raises(TypeError, match="x"):
        pgd(model, x.numpy(), y, 0.1)
    with pytest.raises(TypeError, match="generator"):
        pgd(model, x, y, 0.1, generator=np.random.default_rng(0))


@pytest.mark.parametrize("attack", ["pgd", "mt"])
def test_robust_accuracy_does_not_depend_on_batch_size(attack):
    model = _tiny_cnn(3)
    g = torch.Generator().manual_seed(8)
    x, y = torch.rand(10, 1, 8, 8, generator=g), torch.randint(0, 3, (10,), generator=g)
    reps = [robust_accuracy(model, x, y, 0.15, attack=attack, steps=3, batch_size=bs,
                            generator=torch.Generator().manual_seed(1)) for bs in (1, 4, 10)]
    assert reps[0].as_dict() == reps[1].as_dict() == reps[2].as_dict()


def test_bench_cli_bad_input_is_one_line():
    import subprocess
    import sys
    bad = subprocess.run([sys.executable, "-m", "bench.bench_attacks", "--batch", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert len([ln for ln in bad.stderr.splitlines() if ln.strip()]) == 1 and "--batch" in bad.stderr


def _reference_pgd(model, x, y, eps, steps, alpha):
    """Textbook l-inf PGD without random start (Madry et al.), written independently."""
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(adv), y)
        (g,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * g.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv


def test_bench_agreement_check_accepts_an_equal_peer_and_rejects_a_wrong_one():
    """The bench's comparison is tolerance based and can fail: our PGD agrees with an
    independent textbook PGD, and a peer with a wrong step size (eps/4) is flagged."""
    from bench.bench_attacks import agreement

    model = _tiny_cnn(0).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g)
    eps = 0.1
    ours = pgd(model, x, y, eps, "inf", steps=10, step_size=eps / 5, random_start=False)
    good = agreement(ours, _reference_pgd(model, x, y, eps, 10, eps / 5))
    assert good["ok"] and good["max_abs_diff"] <= 1e-6, good
    bad = agreement(ours, _reference_pgd(model, x, y, eps, 10, eps / 4))
    assert not bad["ok"] and bad["differing"] > 0.01, bad
    assert not agreement(ours, ours[:3])["ok"]


def test_bench_agrees_with_torchattacks():
    """Runs only where torchattacks is installed (an optional peer): the bench's agreement check
    without random start passes (exit 0) and the timing line is printed."""
    pytest.importorskip("torchattacks", reason="torchattacks (optional peer) is not installed")
    import subprocess
    import sys
    ok = subprocess.run([sys.executable, "-m", "bench.bench_attacks", "--batch", "2", "--repeats", "1",
                         "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "(agree)" in ok.stdout and "ratio ours/torchattacks" in ok.stdout


# ------------------------------------------------------------------- norm spellings, dtypes
@pytest.mark.parametrize("spelling,canonical", [("2", "2"), (2, "2"), (2.0, "2"), (np.int64(2), "2"),
                                                ("inf", "inf"), (float("inf"), "inf"),
                                                (np.inf, "inf")])
def test_norm_accepts_numbers_and_strings_normalised(spelling, canonical):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, generator=g, dtype=torch.float64)
    x, y = _inner(3, 6, 1), torch.ones(3, dtype=torch.long)
    adv = pgd(Binary(w, 0.1), x, y, 0.05, spelling, random_start=False)
    ref = pgd(Binary(w, 0.1), x, y, 0.05, canonical, random_start=False)
    assert torch.equal(adv, ref)
    rep = robust_accuracy(Binary(w, 0.1), x, y, 0.05, norm=spelling, generator=g)
    assert rep.norm == canonical
    assert torch.equal(perturbation_norms(adv, x, spelling), perturbation_norms(adv, x, canonical))


@pytest.mark.parametrize("bad,exc", [("1", ValueError), (1, ValueError), ("linf", ValueError),
                                     (True, TypeError), (None, TypeError), ([2], TypeError)])
def test_norm_rejects_other_values_naming_the_parameter(bad, exc):
    x, y = _inner(2, 4, 0), torch.ones(2, dtype=torch.long)
    with pytest.raises(exc, match="norm"):
        pgd(Binary(torch.ones(4, dtype=torch.float64), 0.0), x, y, 0.1, bad)


def test_pgd_dtype_follows_x_and_a_model_dtype_mismatch_is_named():
    """float64 x with a float64 model: the attack runs and returns float64 (and reaches the
    closed-form optimum to float64 precision); float64 x with a float32 model: TypeError naming
    x and the model's dtype instead of a matmul traceback."""
    g = torch.Generator().manual_seed(2)
    W, b = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    x, y = _inner(4, 5, 3), torch.tensor([0, 1, 2, 0])
    adv = pgd(_linear(W, b), x, y, 0.1, "inf", random_start=False)
    assert adv.dtype == torch.float64
    model32 = _linear(W.float(), b.float())
    with pytest.raises(TypeError, match=r"x .*float64.*float32"):
        pgd(model32, x, y, 0.1)
    with pytest.raises(TypeError, match=r"x .*float64.*float32"):
        robust_accuracy(model32, x, y, 0.1)
    assert pgd(model32, x.float(), y, 0.1, generator=g).dtype == torch.float32


# ------------------------------------------------ protocol of the YRZSC authors' code
def test_multi_targeted_default_step_is_two_eps_over_steps():
    """MT step size: the authors' 2 eps / iterations (0.01 for eps 0.1 and 20 iterations), not
    PGD's eps/5 (the old default)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.Tanh(),
                                torch.nn.Linear(16, 4)).double()
    x = torch.rand(6, 12, dtype=torch.float64) * 0.8 + 0.1
    y = torch.arange(6) % 4

    def run(**kw):
        return multi_targeted(model, x, y, 0.1, steps=3, generator=torch.Generator().manual_seed(1), **kw)

    assert torch.equal(run(), run(step_size=2 * 0.1 / 3))
    assert not torch.equal(run(), run(step_size=0.02))


def test_robust_accuracy_pgd_uses_the_last_iterate_by_default():
    """The authors' evaluation takes PGD's last iterate; ``keep_best=True`` (the old default)
    keeps the per-example best. On a periodic model, where steps overshoot, the two differ and
    the default equals an explicit last-iterate PGD with the same seeds."""
    from deep.attacks import _base_seed, _seeded

    class Sine(torch.nn.Module):
        def forward(self, z):
            c = torch.cos(10.0 * z.sum(1))
            return torch.stack([c, torch.zeros_like(c)], 1)

    model = Sine()
    x = torch.rand(64, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 0.6 + 0.2
    y = torch.zeros(64, dtype=torch.long)
    kw = dict(steps=3, step_size=0.1, batch_size=64)
    last = robust_accuracy(model, x, y, 0.2, generator=torch.Generator().manual_seed(9), **kw)
    best = robust_accuracy(model, x, y, 0.2, generator=torch.Generator().manual_seed(9),
                           keep_best=True, **kw)
    assert best.robust_accuracy < last.robust_accuracy      # the best iterate is stronger here
    base = _base_seed(torch.Generator().manual_seed(9))
    adv = pgd(model, x, y, 0.2, steps=3, step_size=0.1, generator=_seeded(base))
    ok = (model(x).argmax(1) == y) & (model(adv).argmax(1) == y)
    assert last.robust_accuracy == float(ok.double().mean())


def test_pgd_eval_model_false_attacks_in_train_mode_with_dropout():
    """``eval_model=False`` (AT / RST inner maximisation, as the authors' code): a model in train
    mode attacks with dropout on, so the result depends on torch's RNG and differs from the eval
    mode attack; the model stays in train mode."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                torch.nn.Linear(64, 3)).double().train()
    x = torch.rand(16, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(16) % 3

    def attack(seed, **kw):
        torch.manual_seed(seed)
        return pgd(model, x, y, 0.1, generator=torch.Generator().manual_seed(2), **kw)

    ev = attack(0)
    assert torch.equal(ev, attack(1))                           # eval mode: no randomness left
    tr0, tr1 = attack(0, eval_model=False), attack(1, eval_model=False)
    assert not torch.equal(tr0, ev) and not torch.equal(tr0, tr1)
    assert torch.equal(tr0, attack(0, eval_model=False))        # reproducible under one seed
    assert model.training


def test_pgd_start_std_is_the_trades_start():
    """``start_std``: the first iterate is x + std N(0, 1) (TRADES' start), not uniform in the
    ball; the steps that follow are as usual."""
    seen = []

    class Rec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(20, 3).double()

        def forward(self, z):
            seen.append(z.detach().clone())
            return self.lin(z)

    model = Rec()
    x = torch.rand(50, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.8 + 0.1
    y = torch.arange(50) % 3
    pgd(model, x, y, 0.1, steps=2, loss="kl", start_std=0.001,
        generator=torch.Generator().manual_seed(2))
    start = seen[1] - x                                       # seen[0]: the clean pass
    assert float(start.abs().max()) < 0.006 and 0.0009 < float(start.std()) < 0.0011
    seen.clear()
    pgd(model, x, y, 0.1, steps=2, loss="kl", generator=torch.Generator().manual_seed(2))
    assert float((seen[1] - x).abs().max()) > 0.09             # uniform start: the whole ball


def test_pgd_without_validation_matches_and_skips_host_checks():
    """``validate=False`` (training steps; the data were checked once by ``validate_batch``)
    returns the same points as the validated call."""
    from deep.attacks import validate_batch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x = torch.rand(10, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(10) % 3
    a = pgd(model, x, y, 0.1, generator=torch.Generator().manual_seed(2))
    b = pgd(model, x, y, 0.1, generator=torch.Generator().manual_seed(2), validate=False)
    assert torch.equal(a, b)
    validate_batch(x, y, 3)
    with pytest.raises(ValueError, match="y"):
        validate_batch(x, y, 2)
    with pytest.raises(ValueError, match="x"):
        validate_batch(x * 2, y, 3)
