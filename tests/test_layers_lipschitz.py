"""Exact operator norms of the 1-Lipschitz layers (P&L Sec. 4.1; AOL, CPL, MaxMin, ...).

Every check builds the full Jacobian (float64) and takes its largest singular value; the bound
asserted is ``<= 1 + 1e-4`` (TOL), on random weights and after optimiser steps that try to
increase ``||f(x) - f(y)|| / ||x - y||``. Seeds are fixed per case.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from deep.layers import (AOLConv2d, AOLLinear, CPLConv2d, FirstChannels, LipschitzHead, MaxMin,
                         MeanSubtract, PixelUnshuffle, ZeroChannelConcat, aol_scale_conv,
                         aol_scale_linear, top_eigenpair)
from deep.lipschitz_check import (exact_operator_norm, jacobian_matrix, lipschitz_ratio,
                                  max_jacobian_norm)

TOL = 1e-4


def _randomise(layer: torch.nn.Module, seed: int, scale: float = 1.0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


def _adversarial_steps(layer: torch.nn.Module, shape: tuple, seed: int, steps: int = 15) -> float:
    """Adam on the layer's parameters *and* on input pairs to maximise the Lipschitz ratio.
    Returns the last ratio seen (a sanity value; the caller checks the exact norm)."""
    g = torch.Generator().manual_seed(seed)
    layer.train()
    a = torch.randn((8,) + shape, generator=g, dtype=torch.float64).requires_grad_(True)
    b = (a.detach() + 0.05 * torch.randn((8,) + shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    opt = torch.optim.Adam(list(layer.parameters()) + [a, b], lr=0.05)
    ratio = torch.zeros(())
    for _ in range(steps):
        ratio = lipschitz_ratio(layer, a, b)
        opt.zero_grad()
        (-ratio.mean()).backward()
        opt.step()
    layer.eval()
    return float(ratio.detach().max())


# ----------------------------------------------------------------------------------------------
# AOL dense
# ----------------------------------------------------------------------------------------------
LINEAR_SHAPES = [(1, 1), (3, 5), (6, 4), (8, 8), (12, 3)]


@pytest.mark.parametrize("in_f,out_f", LINEAR_SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_aol_linear_exact_norm_random_and_after_ascent(in_f, out_f, seed):
    layer = _randomise(AOLLinear(in_f, out_f).double(), seed, scale=3.0)
    assert exact_operator_norm(layer, (in_f,)) <= 1 + TOL
    _adversarial_steps(layer, (in_f,), seed)
    assert exact_operator_norm(layer, (in_f,)) <= 1 + TOL


@pytest.mark.parametrize("n", [1, 4, 9])
def test_aol_linear_keeps_orthogonal_matrices(n):
    """W^T W = I gives D = I, so AOL is exactly orthogonal (norm 1, all singular values 1)."""
    layer = AOLLinear(n, n, init="orthogonal").double()
    sv = torch.linalg.svdvals(jacobian_matrix(layer, (n,)))
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-6)


def test_aol_scale_linear_closed_form():
    w = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    # W^T W = [[1, 2], [2, 5]] -> row sums of |.|: 3, 7
    assert torch.allclose(aol_scale_linear(w), torch.tensor([3.0, 7.0], dtype=torch.float64).rsqrt())


@settings(max_examples=25)
@given(st.integers(1, 7), st.integers(1, 7), st.floats(1e-3, 1e3), st.integers(0, 2 ** 31 - 1))
def test_aol_linear_bound_property(n_in, n_out, scale, seed):
    """AOL Theorem 1: ||W diag(D)||_2 <= 1 for every W (hypothesis over shapes and scales)."""
    g = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
    norm = torch.linalg.matrix_norm(w * aol_scale_linear(w)[None, :], ord=2)
    assert float(norm) <= 1 + 1e-9


# ----------------------------------------------------------------------------------------------
# AOL convolution
# ----------------------------------------------------------------------------------------------
CONV_CASES = [(1, 2, 1, 4), (2, 3, 3, 5), (3, 2, 3, 6), (4, 4, 5, 6), (2, 2, 3, 3), (3, 5, 5, 4)]


@pytest.mark.parametrize("cin,cout,k,size", CONV_CASES)
def test_aol_conv_exact_norm_random_and_after_ascent(cin, cout, k, size):
    layer = _randomise(AOLConv2d(cin, cout, k).double(), seed=cin * 100 + k, scale=2.0)
    shape = (cin, size, size)
    assert exact_operator_norm(layer, shape) <= 1 + TOL
    _adversarial_steps(layer, shape, seed=k)
    assert exact_operator_norm(layer, shape) <= 1 + TOL


@pytest.mark.parametrize("cin,cout,k", [(2, 3, 3), (3, 2, 5), (1, 1, 3)])
def test_aol_conv_scale_matches_explicit_gram_matrix(cin, cout, k):
    """Closed form: the per-channel AOL row sum from the kernel self-correlation equals the row
    sum of |M^T M| of the explicit (zero-padded) convolution matrix M at a pixel far enough from
    the border that the Gram row is complete."""
    layer = _randomise(AOLConv2d(cin, cout, k, bias=False).double(), seed=7)
    kernel = layer.parametrizations.weight.original.detach()
    size = 4 * k - 1
    m = jacobian_matrix(lambda z: F.conv2d(z, kernel, padding=k // 2), (cin, size, size))
    rows = (m.T @ m).abs().sum(dim=1).view(cin, size, size)
    centre = rows[:, size // 2, size // 2]
    assert torch.allclose(aol_scale_conv(kernel), centre.rsqrt(), rtol=1e-10)
    # and no pixel (border pixels have fewer neighbours) exceeds the interior value
    assert bool((rows <= centre[:, None, None] * (1 + 1e-12)).all())


def test_aol_conv_1x1_equals_aol_linear():
    conv = _randomise(AOLConv2d(3, 4, 1, bias=False).double(), seed=3)
    kernel = conv.parametrizations.weight.original.detach()
    assert torch.allclose(aol_scale_conv(kernel), aol_scale_linear(kernel[:, :, 0, 0]), rtol=1e-12)


@pytest.mark.parametrize("cin,cout", [(2, 2), (2, 4), (4, 2)])
def test_aol_conv_identity_init_is_identity_map(cin, cout):
    layer = AOLConv2d(cin, cout, 3, init="identity").double()
    x = torch.randn(2, cin, 5, 5, dtype=torch.float64)
    out = layer(x)
    n = min(cin, cout)
    assert torch.allclose(out[:, :n], x[:, :n])
    assert torch.all(out[:, n:] == 0)


@pytest.mark.parametrize("cin,cout", [(3, 3), (2, 5)])
def test_delta_orthogonal_init_gives_orthogonal_conv(cin, cout):
    """Delta-orthogonal kernels with cout >= cin: the AOL scale is exactly 1 and the convolution
    is an isometry (all singular values 1)."""
    torch.manual_seed(0)
    layer = AOLConv2d(cin, cout, 3, init="delta_orthogonal", bias=False).double()
    kernel = layer.parametrizations.weight.original.detach()
    assert torch.allclose(aol_scale_conv(kernel), torch.ones(cin, dtype=torch.float64), atol=1e-9)
    sv = torch.linalg.svdvals(jacobian_matrix(layer, (cin, 4, 4)))
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-9)


@settings(max_examples=12)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 3]), st.integers(2, 5),
       st.floats(1e-2, 1e2), st.integers(0, 2 ** 31 - 1))
def test_aol_conv_bound_property(cin, cout, k, size, scale, seed):
    """AOL Theorem 2 for convolutions, exact norm of the zero-padded operator (hypothesis)."""
    layer = _randomise(AOLConv2d(cin, cout, k, bias=False).double(), seed, scale=scale)
    assert exact_operator_norm(layer, (cin, size, size)) <= 1 + 1e-9


# ----------------------------------------------------------------------------------------------
# CPL
# ----------------------------------------------------------------------------------------------
CPL_CASES = [(2, 3, 3, 4), (3, 2, 1, 5), (2, 2, 5, 5), (4, 6, 3, 4), (1, 1, 3, 3)]


def _conv_matrix_norm(layer: CPLConv2d, shape) -> float:
    """Exact ||W||_2 of the zero-padded convolution on inputs ``shape``: the matrix is built by
    convolving the standard basis (one batch), then its top singular value."""
    w = layer.weight.detach().double()
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape((n,) + tuple(shape))
    m = F.conv2d(basis, w, padding=layer.kernel_size // 2).reshape(n, -1)
    return float(torch.linalg.matrix_norm(m, ord=2))


@pytest.mark.parametrize("c,inner,k,size", CPL_CASES)
def test_cpl_exact_norm_random_and_after_ascent(c, inner, k, size):
    torch.manual_seed(c * 10 + k)
    layer = CPLConv2d(c, inner, k, init="kaiming").double()
    _randomise(layer, seed=c + inner + k)
    shape = (c, size, size)
    layer.eval()
    assert max_jacobian_norm(layer, shape, points=6, generator=torch.Generator().manual_seed(0)) <= 1 + TOL
    _adversarial_steps(layer, shape, seed=k)
    # eval mode: converged spectral norm; the exact Jacobian norm at many points stays <= 1
    g = torch.Generator().manual_seed(1)
    assert max_jacobian_norm(layer, shape, points=6, scale=0.3, generator=g) <= 1 + TOL
    assert max_jacobian_norm(layer, shape, points=6, scale=3.0, generator=g) <= 1 + TOL
    # worst activation pattern (all units active): the norm is max(1, |1 - h sigma^2|), which is
    # 1 exactly when h = 2/sigma^2 -- a step 1% too large would show as 1.02
    with torch.no_grad():
        layer.bias.fill_(1e3)
    norm_all_active = exact_operator_norm(layer, shape, point=torch.zeros(shape, dtype=torch.float64))
    assert 1 - 1e-6 <= norm_all_active <= 1 + TOL


@pytest.mark.parametrize("c,inner,k,size", CPL_CASES)
def test_cpl_eval_spectral_norm_matches_svd(c, inner, k, size):
    """The eval-mode power iteration (Lanczos-accelerated) equals the exact top singular value
    of the convolution matrix, so the step 2/sigma^2 is within 1e-6 of the 1-Lipschitz limit."""
    layer = _randomise(CPLConv2d(c, inner, k).double(), seed=11)
    layer.eval()
    x = torch.zeros(1, c, size, size, dtype=torch.float64)
    sigma = float(layer.spectral_norm(x))
    exact = _conv_matrix_norm(layer, (c, size, size))
    assert sigma <= exact * (1 + 1e-9)
    assert sigma >= exact * (1 - 1e-6)


@settings(max_examples=10)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 3]), st.integers(2, 4),
       st.floats(1e-2, 1e2), st.integers(0, 2 ** 31 - 1))
def test_cpl_bound_property(c, inner, k, size, scale, seed):
    """CPL (Meunier et al. 2022, Prop. 3): with h = 2/||W||^2 the layer is 1-Lipschitz; exact
    Jacobian norm at random points of several scales, eval mode (hypothesis)."""
    layer = _randomise(CPLConv2d(c, inner, k).double(), seed, scale=scale)
    layer.eval()
    g = torch.Generator().manual_seed(seed)
    assert max_jacobian_norm(layer, (c, size, size), points=3, scale=scale, generator=g) <= 1 + TOL


def test_cpl_worst_case_jacobian_bound():
    """Closed form: the CPL Jacobian is I - h W^T L W with L a 0/1 diagonal; with all units active
    (L = I, large positive bias) its norm is max(1, |1 - h sigma^2|) = 1 exactly at h = 2/sigma^2."""
    layer = _randomise(CPLConv2d(2, 3, 3).double(), seed=5)
    with torch.no_grad():
        layer.bias.fill_(1e3)
    layer.eval()
    shape = (2, 4, 4)
    norm = exact_operator_norm(layer, shape, point=torch.zeros(shape, dtype=torch.float64))
    assert abs(norm - 1.0) <= 1e-6


def test_cpl_train_mode_power_iteration_uses_persistent_vector():
    layer = _randomise(CPLConv2d(2, 2, 3).double(), seed=2)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    layer.train()
    estimates = []
    for _ in range(400):
        estimates.append(float(layer.spectral_norm(x).detach()))
    exact = _conv_matrix_norm(layer, (2, 4, 4))
    assert estimates[-1] <= exact * (1 + 1e-9)
    assert abs(estimates[-1] - exact) < 0.25 * abs(estimates[39] - exact)
    assert abs(estimates[-1] - exact) <= 1e-3 * exact   # converges (slowly: clustered spectrum)
    assert all(b >= a - 1e-12 for a, b in zip(estimates, estimates[1:]))  # monotone from below
    assert tuple(layer.u.shape) == (1, 2, 4, 4)


def test_cpl_eval_cache_tracks_weight_updates_and_state_dict_roundtrip():
    layer = _randomise(CPLConv2d(2, 3, 3).double(), seed=4)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    layer.eval()
    s1 = float(layer.spectral_norm(x))
    with torch.no_grad():
        layer.weight.mul_(2.0)          # in-place update bumps the version counter
    s2 = float(layer.spectral_norm(x))
    assert s2 == pytest.approx(2 * s1, rel=1e-6)
    fresh = CPLConv2d(2, 3, 3).double()
    fresh.load_state_dict(layer.state_dict())   # lazily shaped buffer u is resized on load
    fresh.eval()
    assert torch.allclose(fresh(x), layer(x), atol=1e-10)


# ----------------------------------------------------------------------------------------------
# Isometries / projections / activation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer,shape", [
    (MaxMin(), (4, 3, 3)),
    (MaxMin(), (6,)),
    (ZeroChannelConcat(5), (2, 3, 3)),
    (FirstChannels(2), (4, 3, 3)),
    (PixelUnshuffle(2), (2, 4, 4)),
    (MeanSubtract(3), (3, 2, 2)),
])
def test_structural_layers_have_norm_one(layer, shape):
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        assert abs(exact_operator_norm(layer, shape, generator=g) - 1.0) <= 1e-9


def test_maxmin_values_and_gradient_norm_preservation():
    x = torch.tensor([[3.0, 1.0, -2.0, 5.0]])
    assert torch.equal(MaxMin()(x), torch.tensor([[3.0, 1.0, 5.0, -2.0]]))
    j = jacobian_matrix(MaxMin(), (6,))
    sv = torch.linalg.svdvals(j)
    assert torch.allclose(sv, torch.ones_like(sv))   # a permutation: all singular values 1


def test_mean_subtract_and_head():
    ms = MeanSubtract(2)
    ms.set_mean([0.5, 0.25])
    x = torch.ones(1, 2, 2, 2)
    assert torch.allclose(ms(x)[0, :, 0, 0], torch.tensor([0.5, 0.75]))
    head = _randomise(LipschitzHead(12, 3).double(), seed=0, scale=4.0)
    assert exact_operator_norm(head, (3, 2, 2)) <= 1 + TOL


# ----------------------------------------------------------------------------------------------
# Lanczos helper and bad input
# ----------------------------------------------------------------------------------------------
def test_top_eigenpair_matches_eigvalsh():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 30, generator=g, dtype=torch.float64)
    a = a.T @ a
    lam, q = top_eigenpair(lambda v: a @ v, torch.randn(30, generator=g, dtype=torch.float64))
    assert float(lam) == pytest.approx(float(torch.linalg.eigvalsh(a)[-1]), rel=1e-10)
    assert float((a @ q - lam * q).norm()) <= 1e-6 * float(lam)


@pytest.mark.parametrize("make,exc", [
    (lambda: AOLConv2d(2, 2, 2), ValueError),
    (lambda: AOLConv2d(0, 2, 3), ValueError),
    (lambda: AOLLinear(2.5, 3), TypeError),
    (lambda: AOLLinear(2, 3, init="random"), ValueError),
    (lambda: CPLConv2d(2, 2, 4), ValueError),
    (lambda: CPLConv2d(2, 2, 3, eval_tol=0.0), ValueError),
    (lambda: MaxMin()(torch.zeros(1, 3)), ValueError),
    (lambda: ZeroChannelConcat(2)(torch.zeros(1, 3, 2, 2)), ValueError),
    (lambda: FirstChannels(4)(torch.zeros(1, 3, 2, 2)), ValueError),
    (lambda: MeanSubtract(3).set_mean([1.0, 2.0]), ValueError),
    (lambda: CPLConv2d(2, 2, 3)(torch.zeros(1, 3, 4, 4)), ValueError),
])
def test_bad_input_raises(make, exc):
    with pytest.raises(exc):
        make()


def test_aol_layers_follow_input_dtype_and_device():
    layer = AOLConv2d(2, 2, 3).double()
    out = layer(torch.zeros(1, 2, 3, 3, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.device.type == "cpu"
    assert not math.isnan(float(out.detach().sum()))


def test_layer_report_of_a_tiny_convnet():
    from deep.lipschitz_check import layer_report
    from deep.models import build_model
    torch.manual_seed(0)
    model = build_model("aol_convnet", {"in_channels": 1, "input_size": 8, "num_classes": 4, "base_width": 4,
                                        "blocks": 2, "convs_per_block": 1, "init": "kaiming"})
    rows = layer_report(model, (1, 8, 8), points=2, generator=torch.Generator().manual_seed(0))
    assert len(rows) == len(list(model.net.children()))
    assert all(r["norm"] <= 1 + TOL for r in rows)
    iso = [r for r in rows if r["layer"] in ("MeanSubtract", "ZeroChannelConcat", "PixelUnshuffle", "MaxMin")]
    assert iso and all(abs(r["norm"] - 1) <= 1e-9 for r in iso)


def test_lipschitz_head_is_square_aol_without_zero_columns():
    """Identity-initialised head: no all-zero AOL columns (whose scale eps^-1/2 would amplify
    their gradient ~1e6-fold), and at init it returns the first num_classes features."""
    head = LipschitzHead(12, 3)
    w = head.linear.parametrizations.weight.original
    assert w.shape == (12, 12) and bool((w.abs().sum(dim=0) > 0).all())
    x = torch.randn(4, 3, 2, 2)
    assert torch.allclose(head(x), x.flatten(1)[:, :3])
    with pytest.raises(ValueError):
        LipschitzHead(2, 3)


# ----------------------------------------------------------------------------------------------
# Soundness in the state the layers are used (fresh init, in-place writes, modes)
# ----------------------------------------------------------------------------------------------
def _eval_jacobian_norm_in_place(layer: torch.nn.Module, shape, point) -> float:
    """Exact Jacobian norm of ``layer`` itself (no copy, so its cached state is what is measured)
    at ``point``; float64 layers only."""
    n_out = layer(point[None]).numel()
    batch = point.expand((n_out,) + tuple(point.shape)).clone().requires_grad_(True)
    out = layer(batch).reshape(n_out, n_out)           # one copy of the input per output row
    (rows,) = torch.autograd.grad(out, batch, torch.eye(n_out, dtype=out.dtype))
    return float(torch.linalg.matrix_norm(rows.reshape(n_out, -1), ord=2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpl_fresh_init_eval_state_is_one_lipschitz_strictly(seed):
    """After a fresh init the eval-mode layer (the state every certificate uses) must be
    1-Lipschitz without tolerance: at the all-active point the Jacobian is I - h W^T W, whose
    norm is max(1, 2 ||W||^2 / sigma^2 - 1), > 1 as soon as sigma under-estimates ||W||."""
    torch.manual_seed(seed)
    layer = CPLConv2d(3, 4, 3, seed=seed).double().eval()
    with torch.no_grad():
        layer.bias.fill_(1e3)
    shape = (3, 4, 5)
    sigma = float(layer.spectral_norm(torch.zeros((1,) + shape, dtype=torch.float64)))
    exact = _conv_matrix_norm(layer, shape)
    assert exact <= sigma <= exact * (1 + 1e-6)
    norm = _eval_jacobian_norm_in_place(layer, shape, torch.zeros(shape, dtype=torch.float64))
    assert 1 - 1e-5 <= norm <= 1 + 1e-12


def _write_weight(layer: CPLConv2d, how: str, new: torch.Tensor) -> None:
    if how == "data_copy":
        layer.weight.data.copy_(new)
    elif how == "data_setitem":
        layer.weight.data[...] = new
    elif how == "no_grad_add":
        with torch.no_grad():
            layer.weight.add_(new - layer.weight)
    else:
        sd = {k: v.clone() for k, v in layer.state_dict().items()}
        sd["weight"] = new.clone()
        layer.load_state_dict(sd)


@pytest.mark.parametrize("how", ["data_copy", "data_setitem", "no_grad_add", "load_state_dict"])
def test_cpl_eval_cache_follows_in_place_weight_writes(how):
    """The eval-mode spectral norm is cached; a write to the weight's values by any route must
    invalidate it (the version counter alone misses ``.data`` writes: Jacobian norm 17 before)."""
    layer = _randomise(CPLConv2d(2, 3, 3).double(), seed=4).eval()
    shape = (2, 5, 5)
    x = torch.randn((1,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    layer(x)                                                 # fills the cache
    new = 6.0 * torch.randn(layer.weight.shape, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(1))
    _write_weight(layer, how, new)
    with torch.no_grad():
        layer.bias.fill_(1e3)                                # all units active: worst case
    norm = _eval_jacobian_norm_in_place(layer, shape, torch.zeros(shape, dtype=torch.float64))
    assert norm <= 1 + 1e-12, norm
    assert float(layer.spectral_norm(x)) >= _conv_matrix_norm(layer, shape)


def test_cpl_train_mode_is_not_certified_and_certificates_use_eval_state():
    """Train mode uses the cheap power-iteration estimate (Meunier et al.): not 1-Lipschitz at a
    fresh init (measured 1.9-2.4), so the layer says so, and the certificate evaluates the
    model in eval mode (certified state) whatever mode the caller left it in."""
    from deep.certify import certified_radii
    from deep.models import build_model, input_config

    layer = CPLConv2d(2, 3, 3, init="kaiming").double()
    with torch.no_grad():
        layer.bias.fill_(1e3)                                 # all units active
    shape = (2, 5, 5)
    assert layer.training and not layer.certified
    train_norm = _eval_jacobian_norm_in_place(layer, shape, torch.zeros(shape, dtype=torch.float64))
    assert train_norm > 1.05, train_norm                      # why training mode claims nothing
    assert layer.eval().certified
    assert _eval_jacobian_norm_in_place(layer, shape, torch.zeros(shape, dtype=torch.float64)) <= 1 + 1e-12
    torch.manual_seed(0)
    model = build_model("cpl_convnet", {**input_config("mnist"), "base_width": 4, "blocks": 2,
                                        "convs_per_block": 1, "input_size": 8, "in_channels": 1})
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    model.train()
    r_train_left = certified_radii(model, x, y)
    assert model.training                                     # the caller's mode is restored
    model.eval()
    torch.testing.assert_close(certified_radii(model, x, y), r_train_left)


@pytest.mark.parametrize("how", ["data_copy", "data_setitem", "no_grad_add", "load_state_dict"])
def test_aol_layers_stay_one_lipschitz_after_in_place_writes(how):
    """AOL rescales from the current weight at every forward (no cache), so any write keeps the
    exact operator norm <= 1 (materialised Jacobian SVD), dense and convolutional."""
    for layer, shape in ((AOLLinear(5, 4, init="orthogonal").double(), (5,)),
                         (AOLConv2d(2, 3, 3, init="orthogonal").double(), (2, 4, 4))):
        layer.eval()
        x = torch.zeros(shape, dtype=torch.float64)
        assert _eval_jacobian_norm_in_place(layer, shape, x) <= 1 + 1e-12
        orig = layer.parametrizations.weight.original
        new = 5.0 * torch.randn(orig.shape, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(3))
        if how == "data_copy":
            orig.data.copy_(new)
        elif how == "data_setitem":
            orig.data[...] = new
        elif how == "no_grad_add":
            with torch.no_grad():
                orig.add_(new)
        else:
            sd = layer.state_dict()
            sd["parametrizations.weight.original"] = new
            layer.load_state_dict(sd)
        norm = _eval_jacobian_norm_in_place(layer, shape, x)
        assert 0.3 < norm <= 1 + 1e-12, (how, norm)
