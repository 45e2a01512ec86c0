"""Certified robust accuracy of 1-Lipschitz (l2) classifiers, P&L Eq. (3).

For scores ``g(x)`` of a model whose *whole* map ``x -> g(x)`` is L-Lipschitz in l2 (L = 1 for
the models of ``deep.models`` with ``model.lipschitz``), the margin
``m(x) = g(x)_y - max_{j != y} g(x)_j`` can drop by at most ``sqrt(2) L ||delta||`` under a
perturbation ``delta`` (the difference of two coordinates of an L-Lipschitz map is
``sqrt(2) L``-Lipschitz). Hence the prediction at ``x`` is constant on the l2 ball of radius
``m(x) / (sqrt(2) L)``, and Eq. (3) counts a point as certified at ``eps`` when it is correctly
classified and ``m(x) > sqrt(2) L eps``, which gives ``RA >= CRA``.

Soundness is checked, not assumed. With the default ``lipschitz=None`` the functions that
certify (:func:`certified_radii`, :func:`certified_robust_accuracy`, :func:`cra_curve`) call
:func:`check_certifiable` and refuse (ValueError naming the module) a model that is not 1-Lipschitz
by construction: one that declares ``lipschitz = False`` (SimpleConvNet), or whose module tree
holds anything but the 1-Lipschitz layers of ``deep.layers`` (AOL, CPL in eval mode, MaxMin,
...), ``Flatten``/``Identity``/``ZeroPad2d`` and ``Sequential`` containers of the
``deep.models`` networks -- a BatchNorm, an unconstrained ``Linear`` or a custom module is
refused. Scores are always computed in eval mode (CPL layers then use their certified upper bound
of ``||W||``; ``deep.layers.CPLConv2d``), and the caller's modes are restored. Passing an explicit
``lipschitz=L`` means the caller vouches for the constant ``L``; no structural check is made.

Radii are in input units (images in [0, 1]). ``eps`` is refused when negative, not finite, or
larger than the l2 diameter of the input box (every input would lie in the ball); the message
suggests dividing by 255 (36/255 = 0.1412 is the common MNIST/CIFAR-10 radius). Scores keep the
model's dtype (a float64 model is not rounded to float32); margins are differences taken in
float64 (exact for float32 scores) and compared with the threshold in float64.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn.utils import parametrize

from plumbing.validation import check_float, check_int


def _check_xy(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch tensor, got {type(x).__name__}")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch tensor of class indices, got {type(y).__name__}")
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (N, ...) of inputs, got shape {tuple(x.shape)}")
    if y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"y must have shape ({len(x)},) (one label per row of x), got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices, got dtype {y.dtype}")
    if len(x) == 0:
        raise ValueError("x must hold at least one example")


def input_diameter(x: torch.Tensor) -> float:
    """l2 diameter of the box ``[lo, hi]^d`` holding the inputs, with ``[lo, hi]`` the range of
    ``x`` widened to at least [0, 1] (d = features per example): no certified radius beyond it
    means anything, since the ball then holds every input."""
    lo, hi = min(0.0, float(x.min())), max(1.0, float(x.max()))
    return (hi - lo) * math.sqrt(x[0].numel())


def check_eps(name: str, eps, x: torch.Tensor) -> float:
    """``eps`` as a float in [0, input diameter]; the message suggests /255 for pixel levels."""
    eps = check_float(name, eps, low=0.0)
    diam = input_diameter(x)
    if eps > diam:
        raise ValueError(f"{name}={eps:g} exceeds {diam:.4g}, the l2 diameter of the input box "
                         f"(d = {x[0].numel()} features): radii are in input units (images in "
                         f"[0, 1]); for a radius in pixel levels divide by 255, e.g. 36/255 = "
                         f"{36 / 255:.4f}")
    return eps


def _known_lipschitz_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    from torch import nn

    from deep import layers, models
    leaves = layers.lipschitz_layer_types() + (nn.Flatten, nn.Identity, nn.ZeroPad2d)
    # data-parallel wrappers only forward to their ``module``
    containers = (nn.Sequential, models.LipschitzConvNet, models.AOLMLP, nn.DataParallel,
                  nn.parallel.DistributedDataParallel)
    return leaves, containers


def check_certifiable(model: torch.nn.Module) -> None:
    """Refuse (ValueError naming the module) a model whose 1-Lipschitz property the certificate
    cannot rely on: ``model.lipschitz`` False, or any module outside the known 1-Lipschitz layers
    and containers (module docstring), or a layer that is not certified in eval mode (the mode
    the certificate evaluates it in; the caller's modes are restored)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if getattr(model, "lipschitz", None) is False:
        raise ValueError(f"{type(model).__name__} declares lipschitz = False: its margins certify "
                         "nothing (pass lipschitz=L only for a constant L you have proved)")
    leaves, containers = _known_lipschitz_types()

    def walk(mod: torch.nn.Module, name: str) -> None:
        if isinstance(mod, leaves):
            certified = getattr(mod, "certified", True)
            if not certified:
                raise ValueError(f"{name or 'model'} ({type(mod).__name__}) is not in a "
                                 "certified state in eval mode")
            return
        if not isinstance(mod, containers):
            raise ValueError(f"{name or 'model'} ({type(mod).__name__}) is not a known "
                             "1-Lipschitz layer, so the certificate would be unsound; pass "
                             "lipschitz=L only for a constant L you have proved")
        for child_name, child in mod.named_children():
            walk(child, f"{name}.{child_name}" if name else child_name)

    modes = [(m, m.training) for m in model.modules()]
    model.eval()                    # certificates evaluate the model in eval mode
    try:
        walk(model, "")
    finally:
        for m, mode in modes:
            m.training = mode


def _lipschitz_or_check(model, lipschitz) -> float:
    if lipschitz is None:
        check_certifiable(model)
        return 1.0
    return check_float("lipschitz", lipschitz, low=0.0, low_open=True)


def margins_from_scores(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``g_y - max_{j != y} g_j`` per row (positive iff correctly classified with no tie),
    computed in float64 from the scores in their own dtype (the difference of two float32 or
    float16 scores is exact in float64, so no margin is rounded across the threshold)."""
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must have shape (N, K) with K >= 2, got {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise TypeError(f"scores must be floating point, got {scores.dtype}")
    scores = scores.double()
    y = y.to(scores.device).long()
    true = scores.gather(1, y[:, None])[:, 0]
    others = scores.scatter(1, y[:, None], float("-inf"))
    return true - others.max(dim=1).values


@torch.no_grad()
def predict_scores(model: torch.nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Model scores on ``x`` in eval mode, in batches on the model's device; returned on the CPU
    in the model's output dtype (no rounding to float32)."""
    batch_size = check_int("batch_size", batch_size, min_value=1)
    was_training = model.training
    model.eval()
    try:
        params = list(model.parameters()) + list(model.buffers())
        device = params[0].device if params else x.device
        # AOL rescaled weights are computed once for all batches (they cannot change here)
        with parametrize.cached():
            out = [model(x[i:i + batch_size].to(device)).detach().cpu()
                   for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def margins(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Per-sample margin ``g(x)_y - max_{j != y} g(x)_j`` (CPU float64 tensor, from the scores in
    the model's dtype)."""
    _check_xy(x, y)
    return margins_from_scores(predict_scores(model, x, batch_size=batch_size), y.cpu())


def certified_radii(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    lipschitz: float | None = None, batch_size: int = 1024) -> torch.Tensor:
    """Per-sample certified l2 radius ``max(margin, 0) / (sqrt(2) L)``; 0 for misclassified points.
    ``lipschitz=None``: the model must pass :func:`check_certifiable` (L = 1)."""
    _check_xy(x, y)
    lipschitz = _lipschitz_or_check(model, lipschitz)
    m = margins(model, x, y, batch_size=batch_size)
    return m.clamp_min(0.0) / (math.sqrt(2.0) * lipschitz)


def cra_from_margins(margin: torch.Tensor, eps: float, *, lipschitz: float = 1.0) -> float:
    """Fraction of points with margin > sqrt(2) L eps (P&L Eq. 3; eps = 0 gives the accuracy with
    ties counted as errors). The comparison is made in float64."""
    eps = check_float("eps", eps, low=0.0)
    lipschitz = check_float("lipschitz", lipschitz, low=0.0, low_open=True)
    if not isinstance(margin, torch.Tensor) or margin.ndim != 1 or len(margin) == 0:
        raise ValueError("margin must be a non-empty 1-D tensor of per-example margins")
    return float((margin.double() > math.sqrt(2.0) * lipschitz * eps).double().mean())


def certified_robust_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                              lipschitz: float | None = None, batch_size: int = 1024) -> float:
    """CRA of P&L Eq. (3): the fraction of ``(x, y)`` that are correctly classified with margin
    ``> sqrt(2) * lipschitz * eps``. ``lipschitz=None``: the model must pass
    :func:`check_certifiable` (L = 1); ``eps`` must be one radius in input units."""
    _check_xy(x, y)
    if isinstance(eps, (list, tuple, np.ndarray, torch.Tensor)):
        raise TypeError("eps must be one radius (a number); for several radii use cra_curve")
    eps = check_eps("eps", eps, x)
    lipschitz = _lipschitz_or_check(model, lipschitz)
    return cra_from_margins(margins(model, x, y, batch_size=batch_size), eps, lipschitz=lipschitz)


def cra_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values, *,
              lipschitz: float | None = None, batch_size: int = 1024) -> dict:
    """CRA against each radius in ``eps_values`` from one forward pass.

    Returns ``{"eps": [...], "cra": [...], "accuracy": float, "median_radius": float}``."""
    _check_xy(x, y)
    lipschitz = _lipschitz_or_check(model, lipschitz)
    eps_arr = np.asarray(eps_values, dtype=float).reshape(-1)
    if eps_arr.size == 0:
        raise ValueError("eps_values must hold at least one radius")
    eps_list = [check_eps("eps_values", float(e), x) for e in eps_arr]
    m = margins(model, x, y, batch_size=batch_size)
    radii = m.double().clamp_min(0.0) / (math.sqrt(2.0) * lipschitz)
    return {"eps": eps_list,
            "cra": [cra_from_margins(m, e, lipschitz=lipschitz) for e in eps_list],
            "accuracy": float((m > 0).double().mean()),
            "median_radius": float(radii.median())}
