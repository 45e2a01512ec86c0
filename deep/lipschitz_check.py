"""Numerical checks of the Lipschitz constant that the certificate of P&L Eq. (3) assumes.

The certificate (``deep.certify``) is sound only if the whole model is 1-Lipschitz in l2. These
functions measure that instead of trusting the construction:

* :func:`jacobian_matrix` / :func:`exact_operator_norm` -- the full Jacobian of a layer or model at
  a point (``torch.autograd.functional.jacobian``, float64) and its largest singular value. For a
  linear layer (AOL, padding, PixelUnshuffle, ...) this is the exact operator norm; for a
  piecewise-smooth layer (CPL, MaxMin) the Lipschitz constant is the supremum of the Jacobian
  norm over points, and :func:`max_jacobian_norm` takes the maximum over several points.
* :func:`power_iteration_lipschitz` -- the local Jacobian norm of a model at each input by power
  iteration on ``J^T J`` with JVP/VJP products (autograd, double-backward JVP): a lower bound of
  the global constant that scales to full-size models.
* :func:`adversarial_lipschitz` -- pairs ``(x1, x2)`` optimised with Adam to maximise
  ``||f(x1) - f(x2)|| / ||x1 - x2||``: another lower bound, which also catches non-local growth.

Every estimate here is a lower bound of the true constant (exact for linear maps). A value above
1 (beyond numerical tolerance) disproves 1-Lipschitzness; values <= 1 are evidence, not proof.
Models are evaluated in eval mode (BatchNorm batch statistics would couple samples).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Callable

import torch

from plumbing.validation import check_float, check_int


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def _as_float64(module: torch.nn.Module | Callable) -> Callable:
    if isinstance(module, torch.nn.Module):
        m = copy.deepcopy(module).double()
        m.eval()
        return m
    return module


def jacobian_matrix(fn: torch.nn.Module | Callable, input_shape, *, point: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Full Jacobian (out_numel, in_numel) in float64 of ``fn`` applied to one input of shape
    ``input_shape`` (without the batch dimension), at ``point`` (default: a standard normal draw
    from ``generator``). A ``nn.Module`` is deep-copied, cast to float64 and put in eval mode."""
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive sizes, got {input_shape!r}")
    f = _as_float64(fn)
    if point is None:
        point = torch.randn(shape, generator=generator, dtype=torch.float64)
    point = point.detach().to(torch.float64).reshape(shape)
    dev = next((p.device for p in f.parameters()), point.device) if isinstance(f, torch.nn.Module) else point.device
    point = point.to(dev)
    jac = torch.autograd.functional.jacobian(lambda z: f(z[None])[0], point)
    return jac.reshape(-1, point.numel())


def exact_operator_norm(fn: torch.nn.Module | Callable, input_shape, *, point: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> float:
    """Largest singular value of the Jacobian of ``fn`` at ``point`` (see :func:`jacobian_matrix`):
    the exact l2 operator norm of a linear layer on inputs of ``input_shape``."""
    return float(torch.linalg.matrix_norm(jacobian_matrix(fn, input_shape, point=point,
                                                          generator=generator), ord=2))


def max_jacobian_norm(fn: torch.nn.Module | Callable, input_shape, *, points: int = 8,
                      scale: float = 1.0, generator: torch.Generator | None = None) -> float:
    """Maximum of :func:`exact_operator_norm` over ``points`` random inputs ``scale * N(0, I)``
    (for piecewise-smooth layers such as CPL or MaxMin, whose Jacobian depends on the point)."""
    points = check_int("points", points, min_value=1)
    scale = check_float("scale", scale, low=0.0, low_open=True)
    shape = tuple(int(s) for s in input_shape)
    f = _as_float64(fn)
    best = 0.0
    for _ in range(points):
        p = scale * torch.randn(shape, generator=generator, dtype=torch.float64)
        best = max(best, exact_operator_norm(f, shape, point=p))
    return best


def power_iteration_lipschitz(model: torch.nn.Module, x: torch.Tensor, *, iterations: int = 50,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample local Lipschitz estimate ``||J_f(x_i)||_2`` by power iteration on ``J^T J``
    (model in eval mode, so samples are independent). ``J^T w`` is a VJP (backward pass) and
    ``J v`` a JVP obtained by the double-backward trick (differentiating the VJP, which is linear
    in ``w``, with respect to ``w``); one forward graph serves all iterations.
    Returns a CPU tensor of shape (N,); each entry is a lower bound of the global constant."""
    iterations = check_int("iterations", iterations, min_value=1)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")

    def normalise(t):
        n = t.flatten(1).norm(dim=1).clamp_min(1e-30)
        return t / n.view((-1,) + (1,) * (t.ndim - 1))

    with _eval_mode(model), torch.enable_grad():
        dev = next((p.device for p in model.parameters()), x.device)
        x = x.detach().to(dev).requires_grad_(True)
        y = model(x)
        w = torch.zeros_like(y, requires_grad=True)
        (jt_w,) = torch.autograd.grad(y, x, w, create_graph=True)   # J^T w, linear in w
        v = normalise(torch.randn(x.shape, generator=generator, dtype=x.dtype).to(dev))
        sigma = torch.zeros(len(x), dtype=x.dtype, device=dev)
        for _ in range(iterations):
            (jv,) = torch.autograd.grad(jt_w, w, v, retain_graph=True)          # J v
            sigma = torch.maximum(sigma, jv.flatten(1).norm(dim=1))
            (jtjv,) = torch.autograd.grad(y, x, jv, retain_graph=True)           # J^T J v
            if float(jtjv.flatten(1).norm(dim=1).min()) == 0.0:
                break
            v = normalise(jtjv)
        (jv,) = torch.autograd.grad(jt_w, w, v, retain_graph=False)
        sigma = torch.maximum(sigma, jv.flatten(1).norm(dim=1))
    return sigma.detach().cpu()


def lipschitz_ratio(model: Callable, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """``||f(x1) - f(x2)|| / ||x1 - x2||`` per sample."""
    num = (model(x1) - model(x2)).flatten(1).norm(dim=1)
    den = (x1 - x2).flatten(1).norm(dim=1).clamp_min(1e-30)
    return num / den


def adversarial_lipschitz(model: torch.nn.Module, x: torch.Tensor, *, steps: int = 100, lr: float = 1e-2,
                          init_distance: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample lower bound of the Lipschitz constant from adversarial pairs: starting at
    ``x1 = x``, ``x2 = x + init_distance * u`` (``u`` a random unit direction), both points are
    moved by Adam (``steps``, ``lr``) to maximise ``||f(x1) - f(x2)|| / ||x1 - x2||``. Returns the
    best ratio seen per sample (CPU tensor (N,)). Model in eval mode; its parameters are not
    changed."""
    steps = check_int("steps", steps, min_value=1)
    lr = check_float("lr", lr, low=0.0, low_open=True)
    init_distance = check_float("init_distance", init_distance, low=0.0, low_open=True)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    with _eval_mode(model):
        dev = next((p.device for p in model.parameters()), x.device)
        x = x.detach().to(dev)
        u = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(dev)
        u = u / u.flatten(1).norm(dim=1).view((-1,) + (1,) * (x.ndim - 1))
        a = x.clone().requires_grad_(True)
        b = (x + init_distance * u).requires_grad_(True)
        req = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            opt = torch.optim.Adam([a, b], lr=lr)
            best = torch.zeros(len(x), dtype=x.dtype, device=dev)
            for _ in range(steps):
                ratio = lipschitz_ratio(model, a, b)
                best = torch.maximum(best, ratio.detach())
                opt.zero_grad(set_to_none=True)
                (-ratio.sum()).backward()
                opt.step()
            with torch.no_grad():
                best = torch.maximum(best, lipschitz_ratio(model, a, b))
        finally:
            for p, r in zip(model.parameters(), req):
                p.requires_grad_(r)
    return best.detach().cpu()


def layer_report(model: torch.nn.Module, input_shape, *, points: int = 4,
                 generator: torch.Generator | None = None) -> list[dict]:
    """Exact Jacobian norm (max over ``points`` inputs) of every direct child of
    ``model.net`` (or of ``model``) on the shapes the model feeds it, for inputs ``input_shape``.
    Returns ``[{"index", "layer", "input_shape", "norm"}]``."""
    seq = getattr(model, "net", model)
    children = list(seq.children())
    f = _as_float64(model)
    seq64 = getattr(f, "net", f)
    x = torch.randn((1,) + tuple(input_shape), generator=generator, dtype=torch.float64)
    rows = []
    with torch.no_grad():
        h = x
        feats = []
        for layer in seq64.children():
            feats.append(h)
            h = layer(h)
    for i, (layer, h_in) in enumerate(zip(seq64.children(), feats)):
        shape = tuple(h_in.shape[1:])
        best = 0.0
        for j in range(points):
            p = h_in[0] if j == 0 else h_in[0] + torch.randn(shape, generator=generator, dtype=torch.float64)
            best = max(best, exact_operator_norm(layer, shape, point=p))
        rows.append({"index": i, "layer": type(children[i]).__name__, "input_shape": list(shape),
                     "norm": best})
    return rows
