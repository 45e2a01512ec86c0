"""Certified robust accuracy of 1-Lipschitz (l2) classifiers, P&L Eq. (3).

For scores ``g(x)`` of a model whose *whole* map ``x -> g(x)`` is L-Lipschitz in l2 (L = 1 for
the models of ``deep.models`` with ``model.lipschitz``), the margin
``m(x) = g(x)_y - max_{j != y} g(x)_j`` can drop by at most ``sqrt(2) L ||delta||`` under a
perturbation ``delta`` (the difference of two coordinates of an L-Lipschitz map is
``sqrt(2) L``-Lipschitz). Hence the prediction at ``x`` is constant on the l2 ball of radius
``m(x) / (sqrt(2) L)``, and Eq. (3) counts a point as certified at ``eps`` when it is correctly
classified and ``m(x) > sqrt(2) L eps``, which gives ``RA >= CRA``.

ASSUMPTION: the certificate is only sound if the model's Lipschitz constant really is <= L (1 by
default) -- every layer, including normalisations and the input pre-processing, must be
1-Lipschitz, and CPL layers must be in eval mode (converged spectral norms). This module does not
and cannot check that; ``deep.lipschitz_check`` estimates the constant (exact Jacobian norms on
small shapes, power iteration, adversarial pairs) and ``tests/test_certify.py`` attacks certified
points with l2 PGD. A model with BatchNorm or ReLU+unconstrained weights (SimpleConvNet) gets
numbers from these functions that certify nothing.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn.utils import parametrize

from plumbing.validation import check_float, check_int


def _check_xy(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be torch tensors")
    if y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"y must have shape ({len(x)},), got {tuple(y.shape)}")
    if len(x) == 0:
        raise ValueError("x must hold at least one example")


def margins_from_scores(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``g_y - max_{j != y} g_j`` per row (positive iff correctly classified with no tie)."""
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must have shape (N, K) with K >= 2, got {tuple(scores.shape)}")
    y = y.to(scores.device).long()
    true = scores.gather(1, y[:, None])[:, 0]
    others = scores.scatter(1, y[:, None], float("-inf"))
    return true - others.max(dim=1).values


@torch.no_grad()
def predict_scores(model: torch.nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Model scores on ``x`` in eval mode, in batches on the model's device; returned on the CPU."""
    batch_size = check_int("batch_size", batch_size, min_value=1)
    was_training = model.training
    model.eval()
    try:
        params = list(model.parameters()) + list(model.buffers())
        device = params[0].device if params else x.device
        # AOL rescaled weights are computed once for all batches (they cannot change here)
        with parametrize.cached():
            out = [model(x[i:i + batch_size].to(device)).detach().float().cpu()
                   for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def margins(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Per-sample margin ``g(x)_y - max_{j != y} g(x)_j`` (CPU float tensor)."""
    _check_xy(x, y)
    return margins_from_scores(predict_scores(model, x, batch_size=batch_size), y.cpu())


def certified_radii(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    lipschitz: float = 1.0, batch_size: int = 1024) -> torch.Tensor:
    """Per-sample certified l2 radius ``max(margin, 0) / (sqrt(2) L)``; 0 for misclassified points.
    Valid only if the model is ``lipschitz``-Lipschitz (see module docstring)."""
    lipschitz = check_float("lipschitz", lipschitz, low=0.0, low_open=True)
    m = margins(model, x, y, batch_size=batch_size)
    return m.clamp_min(0.0) / (math.sqrt(2.0) * lipschitz)


def cra_from_margins(margin: torch.Tensor, eps: float, *, lipschitz: float = 1.0) -> float:
    """Fraction of points with margin > sqrt(2) L eps (P&L Eq. 3; eps = 0 gives the accuracy with
    ties counted as errors)."""
    eps = check_float("eps", eps, low=0.0)
    lipschitz = check_float("lipschitz", lipschitz, low=0.0, low_open=True)
    return float((margin > math.sqrt(2.0) * lipschitz * eps).double().mean())


def certified_robust_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                              lipschitz: float = 1.0, batch_size: int = 1024) -> float:
    """CRA of P&L Eq. (3): the fraction of ``(x, y)`` that are correctly classified with margin
    ``> sqrt(2) * lipschitz * eps``. Sound only for a ``lipschitz``-Lipschitz (l2) model."""
    eps = check_float("eps", eps, low=0.0)
    _check_xy(x, y)
    return cra_from_margins(margins(model, x, y, batch_size=batch_size), eps, lipschitz=lipschitz)


def cra_curve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps_values, *,
              lipschitz: float = 1.0, batch_size: int = 1024) -> dict:
    """CRA against each radius in ``eps_values`` from one forward pass.

    Returns ``{"eps": [...], "cra": [...], "accuracy": float, "median_radius": float}``."""
    lipschitz = check_float("lipschitz", lipschitz, low=0.0, low_open=True)
    eps_arr = np.asarray(eps_values, dtype=float).reshape(-1)
    if eps_arr.size == 0:
        raise ValueError("eps_values must hold at least one radius")
    for e in eps_arr:
        check_float("eps_values", float(e), low=0.0)
    _check_xy(x, y)
    m = margins(model, x, y, batch_size=batch_size)
    radii = m.clamp_min(0.0) / (math.sqrt(2.0) * lipschitz)
    return {"eps": [float(e) for e in eps_arr],
            "cra": [cra_from_margins(m, float(e), lipschitz=lipschitz) for e in eps_arr],
            "accuracy": float((m > 0).double().mean()),
            "median_radius": float(radii.median())}
