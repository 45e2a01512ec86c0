"""White-box attacks for the experiments of YRZSC Section 5 and Appendix D.1.

* :func:`pgd` -- projected gradient descent (Madry et al., YRZSC ref. [32]) in the l-inf or l2
  ball, the paper's "PGD-10 with step size eps/5" by default (``theory.constants.YANG_PGD_STEPS``,
  ``YANG_PGD_STEP_DIVISOR``). Also the inner maximisation of AT / RST (loss ``"ce"``) and TRADES
  (loss ``"kl"``: KL from the clean prediction to the perturbed one, YRZSC Appendix A.0.2).
* :func:`multi_targeted` -- the multi-targeted attack (Gowal et al., YRZSC ref. [18]; Appendix
  D.1, "20 iterations for each target"): one targeted PGD per class on the margin
  ``z_t - z_y``, keeping per example the candidate with the largest untargeted margin
  ``max_{j != y} z_j - z_y``. Step size 2 eps / steps by default (the paper gives none for MT;
  the authors' code uses 2 eps / iterations, 0.01 for eps 0.1 and 20 iterations).
* :func:`robust_accuracy` -- clean and robust accuracy with the sanity figures AutoAttack prints
  on its last line (largest perturbation norm, NaN count, range of the adversarial inputs), so a
  reader sees at once that the attack stayed inside the ball and the box.

Conventions: inputs live in [0, 1] (models carry their normalisation as the first layer) and every
iterate is clipped to that box; ``norm`` is ``"inf"`` or ``"2"`` (also accepted: the numbers
``float("inf")``/``np.inf`` and 2, normalised by ``plumbing.validation.check_norm``); the attack
runs in ``x``'s dtype, and a model whose parameters have another dtype is refused (TypeError);
the model is put in eval mode for the attack and every submodule's previous mode is restored
afterwards; device and dtype come from ``x``; only the gradient with respect to the input is
computed (parameters' ``.grad`` are never touched).

Random start and reproducibility. A start is drawn uniformly from the l-inf ball, or uniformly from
the l2 ball (Gaussian direction, radius ``eps * U^(1/d)``). To make the result for one example the
same alone and inside any batch, the start of an example does not depend on its position: one base
seed is drawn from ``generator`` (or, without one, from torch's global RNG -- never reseeded), and
each example's noise is a counter-based hash of (base seed, salt, the example's bit pattern, its
label, the coordinate index), computed on ``x``'s device with exact integer arithmetic (no host
round trip, no per-example loop, the same numbers on CPU and GPU). Identical examples in one
batch therefore get identical starts; that is harmless. The remaining batch dependence is
floating-point only (a framework may pick different kernels for different batch sizes), which
cannot change an l-inf step unless a gradient coordinate is zero to rounding.
"""
from __future__ import annotations

import contextlib
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from theory.constants import YANG_MT_STEPS, YANG_PGD_STEP_DIVISOR, YANG_PGD_STEPS
from plumbing.progress import progress
from plumbing.validation import check_choice, check_float, check_int, check_norm

NORMS = ("inf", "2")
ATTACKS = ("pgd", "mt")

__all__ = ["NORMS", "ATTACKS", "LOSSES", "register_loss", "pgd", "multi_targeted",
           "robust_accuracy", "RobustReport", "perturbation_norms", "eval_mode",
           "random_start_points", "validate_batch"]


# --------------------------------------------------------------------------------------------
# Attack objectives: a small registry by name. Each maps (logits at x', labels, clean logits at
# x) to one value per example; the attack ascends it.
# --------------------------------------------------------------------------------------------
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _ce_loss(logits, y, clean_logits):
    """Cross-entropy of the true label (PGD of Madry et al.; AT and RST inner maximisation)."""
    return F.cross_entropy(logits, y, reduction="none")


def _kl_loss(logits, y, clean_logits):
    """KL(softmax(f(x)) || softmax(f(x'))) summed over classes (TRADES inner maximisation)."""
    return F.kl_div(F.log_softmax(logits, dim=1), F.softmax(clean_logits, dim=1),
                    reduction="none").sum(dim=1)


def _margin_loss(logits, y, clean_logits):
    """Untargeted margin max_{j != y} z_j - z_y (> 0 iff misclassified; Carlini-Wagner)."""
    return _untargeted_margin(logits, y)


@dataclass(frozen=True)
class _LossSpec:
    fn: LossFn
    needs_clean: bool


LOSSES: dict[str, _LossSpec] = {
    "ce": _LossSpec(_ce_loss, needs_clean=False),
    "kl": _LossSpec(_kl_loss, needs_clean=True),
    "margin": _LossSpec(_margin_loss, needs_clean=False),
}


def register_loss(name: str, fn: LossFn, *, needs_clean: bool = False) -> None:
    """Add an attack objective ``fn(logits, y, clean_logits) -> (B,)`` under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in LOSSES:
        raise ValueError(f"name {name!r} is already registered; choose another")
    LOSSES[name] = _LossSpec(fn, bool(needs_clean))


def _untargeted_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return other - true


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
@contextmanager
def eval_mode(model: torch.nn.Module):
    """Put ``model`` in eval mode and restore each submodule's previous ``training`` flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def perturbation_norms(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example ||x_adv - x||_p, p = inf or 2, as a (B,) tensor."""
    norm = check_norm("norm", norm)
    d = (x_adv - x).reshape(x.shape[0], -1)
    return d.abs().amax(dim=1) if norm == "inf" else d.norm(dim=1)


def _check_inputs(x, y, eps, norm):
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if torch.is_tensor(x) else ""))
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must have shape (batch, ...) with batch >= 1, got {tuple(x.shape)}")
    if not torch.is_tensor(y) or y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
        raise ValueError("y must be a 1-D integer tensor of class indices, got "
                         + (f"{y.dtype} of shape {tuple(y.shape)}" if torch.is_tensor(y)
                            else type(y).__name__))
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have one label per example of x: batch sizes differ "
                         f"(x has {x.shape[0]}, y has {y.shape[0]})")
    eps = check_float("eps", eps, low=0.0)
    norm = check_norm("norm", norm)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"x must lie in [0, 1] (models carry their normalisation), "
                         f"got values in [{lo:.4g}, {hi:.4g}]")
    return eps, norm


def _check_model_dtype(model, x) -> None:
    """The attack runs in x's dtype; a model whose floating parameters have another dtype is
    refused up front (instead of a matmul traceback)."""
    for p in model.parameters():
        if p.is_floating_point():
            if p.dtype != x.dtype:
                raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {p.dtype}; "
                                f"the attack runs in x's dtype: convert one of them "
                                f"(x.to({p.dtype}) or model.to({x.dtype}))")
            return


def _forward_checked(model, x, y) -> torch.Tensor:
    """Logits of ``model`` at ``x``; validates them against the labels ``y``."""
    return _check_logits(model(x), x, y)


def _check_logits(logits, x, y) -> torch.Tensor:
    """Validate the model output (batch, classes) against the labels ``y``; returns it."""
    if not torch.is_tensor(logits) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"model must return logits of shape (batch, classes), got "
                         f"{tuple(logits.shape) if torch.is_tensor(logits) else type(logits)}")
    n_classes = logits.shape[1]
    ymin, ymax = int(y.min()), int(y.max())
    if ymin < 0 or ymax >= n_classes:
        raise ValueError(f"y must be class indices in [0, {n_classes - 1}] (the model has "
                         f"{n_classes} outputs), got labels in [{ymin}, {ymax}]")
    return logits


def _base_seed(generator: torch.Generator | None) -> int:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


def _base_seed_tensor(generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """The base seed as a 0-dim int64 tensor on ``device``, drawn without a host round trip
    (from torch's global RNG on ``device`` without ``generator``): usable inside a captured
    training step. Same distribution as :func:`_base_seed`."""
    if generator is None:
        return torch.randint(0, 2**62, (), device=device, dtype=torch.int64)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return torch.randint(0, 2**62, (), generator=generator, device=generator.device,
                         dtype=torch.int64).to(device)


def _seeded(base: int) -> torch.Generator:
    """A fresh CPU generator whose first base-seed draw is the same for every batch of a call."""
    return torch.Generator().manual_seed(base)


# Counter-based keyed noise, computed on x's device with exact integer arithmetic: 32-bit values
# held in int64 tensors (a product may wrap past 2^63; masking keeps the exact low 32 bits).
_M32 = 0xFFFFFFFF


def _mix32(v: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply, "lowbias32" constants) on int64 tensors
    holding values in [0, 2^32)."""
    v = v ^ (v >> 16)
    v = (v * 0x7FEB352D) & _M32
    v = v ^ (v >> 15)
    v = (v * 0x846CA68B) & _M32
    return v ^ (v >> 16)


def _float_bits(x: torch.Tensor) -> torch.Tensor:
    """(B, d) int64 in [0, 2^32): the bit patterns of x's entries (float64 folded to 32 bits)."""
    flat = x.detach().reshape(x.shape[0], -1).contiguous()
    if flat.dtype == torch.float64:
        b = flat.view(torch.int64)
        return (b & _M32) ^ _mix32((b >> 32) & _M32)
    if flat.dtype == torch.float32:
        return flat.view(torch.int32).to(torch.int64) & _M32
    if flat.dtype in (torch.float16, torch.bfloat16):
        return flat.view(torch.int16).to(torch.int64) & 0xFFFF
    return _float_bits(flat.double())


def _example_seeds(x: torch.Tensor, y: torch.Tensor | None, base: int, salt: int) -> torch.Tensor:
    """(B, 2) int64 keys on x's device from (base, salt, the example's bits, its label).

    Each entry's bits are hashed with its position and the hashes summed: an exact integer sum
    (no overflow for d < 2^31), so the key of an example does not depend on the batch it is in,
    on its position there, or on the device."""
    bits = _float_bits(x)
    d = bits.shape[1]
    pos = _mix32((torch.arange(d, device=x.device, dtype=torch.int64) * 0x9E3779B1 + 0x632BE5AB) & _M32)
    h = _mix32(bits ^ pos)
    k1 = h.sum(dim=1) & _M32
    k2 = _mix32(h ^ 0x5BD1E995).sum(dim=1) & _M32
    lab = (torch.full_like(k1, -1) if y is None else y.to(device=x.device, dtype=torch.int64)) & _M32
    b_lo, b_hi = base & _M32, (base >> 32) & _M32
    s = int(salt) & _M32
    k1 = _mix32(_mix32(k1 ^ b_lo) ^ _mix32((lab + 0x27D4EB2F) & _M32))
    k2 = _mix32(_mix32(k2 ^ b_hi) ^ _mix32((s * 0x165667B1 + 0x1B873593) & _M32))
    return torch.stack([k1, k2], dim=1)


def _keyed_uniform(keys: torch.Tensor, d: int, stream: int) -> torch.Tensor:
    """(B, d) float64 uniforms in (0, 1): entry (i, j) hashes (key_i, j, stream); 32 bits each."""
    j = torch.arange(d, device=keys.device, dtype=torch.int64)
    c = _mix32((j * 0x85EBCA77 + (stream * 0x2545F491 + 0x61C88647)) & _M32)
    v = _mix32(_mix32(keys[:, :1] ^ c) ^ keys[:, 1:2])
    return (v.double() + 0.5) * 2.0**-32


def _random_start(x: torch.Tensor, eps: float, norm: str, keys: torch.Tensor) -> torch.Tensor:
    """A point drawn uniformly from the ``norm`` ball of radius ``eps`` around each example from
    its keyed noise (``keys`` from :func:`_example_seeds`), clipped to [0, 1]; computed on x's
    device in float64, returned in x's dtype. l-inf: U[-eps, eps] per coordinate; l2: a
    Box-Muller Gaussian direction scaled to radius eps * U^(1/d)."""
    d = x[0].numel()
    if norm == "inf":
        delta = (2.0 * _keyed_uniform(keys, d, 0) - 1.0) * eps
    else:
        u1, u2 = _keyed_uniform(keys, d, 1), _keyed_uniform(keys, d, 2)
        z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
        r = _keyed_uniform(keys, 1, 3) ** (1.0 / d)
        delta = z * (eps * r / z.norm(dim=1, keepdim=True).clamp_min(1e-300))
    delta = delta.reshape(x.shape).to(dtype=x.dtype)
    return _project(x, x + delta, eps, norm)


def _normal_start(x: torch.Tensor, eps: float, std: float, keys: torch.Tensor) -> torch.Tensor:
    """TRADES' start x + std * N(0, 1) (Box-Muller of the keyed uniforms, so batch-position
    independent like the uniform start), clamped to the l-inf ball but *not* to [0, 1]: the TRADES
    code evaluates its first gradient at the unclipped start (every later iterate is clipped)."""
    d = x[0].numel()
    u1, u2 = _keyed_uniform(keys, d, 4), _keyed_uniform(keys, d, 5)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    delta = (std * z).clamp(-eps, eps).reshape(x.shape).to(dtype=x.dtype)
    return x + delta


def random_start_points(x: torch.Tensor, eps: float, norm: str = "inf",
                        generator: torch.Generator | None = None, y: torch.Tensor | None = None,
                        salt: int = 0) -> torch.Tensor:
    """Uniform random points of the ``norm`` ball of radius ``eps`` around each row of ``x``,
    clipped to [0, 1]; reproducible with ``generator`` and independent of batch position (the
    draw of an example depends only on the base seed, ``salt``, its bytes and its label)."""
    eps = check_float("eps", eps, low=0.0)
    norm = check_norm("norm", norm)
    salt = check_int("salt", salt)
    x = x.detach()
    return _random_start(x, eps, norm, _example_seeds(x, y, _base_seed(generator), salt))


def _project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto the ball of radius ``eps`` around ``x``, then clip to [0, 1].

    Clipping after the projection keeps the point in the ball: every coordinate moves toward
    ``x`` (x itself is in [0, 1]), so no coordinate of the perturbation grows in magnitude."""
    delta = x_adv - x
    if norm == "inf":
        delta = delta.clamp(-eps, eps)
    else:
        n = delta.reshape(x.shape[0], -1).norm(dim=1).clamp_min(1e-30)
        scale = (eps / n).clamp(max=1.0).reshape((-1,) + (1,) * (x.ndim - 1))
        delta = delta * scale
    return (x + delta).clamp(0.0, 1.0)


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit ``norm``: sign(g) for l-inf, g/||g||_2 for l2."""
    if norm == "inf":
        return grad.sign()
    n = grad.reshape(grad.shape[0], -1).norm(dim=1).clamp_min(1e-30)
    return grad / n.reshape((-1,) + (1,) * (grad.ndim - 1))


def _iterate(model, x, y, x_adv, eps, norm, steps, alpha, objective, keep_best):
    """``steps`` projected steepest-ascent steps on ``objective(logits, y) -> (B,)``.

    Returns (final or best iterate, objective value at it, or None without ``keep_best``)."""
    best_x, best_val = x_adv.detach().clone(), None

    def total(z):
        v = objective(model(z), y)
        return v.sum(), v.detach()

    # torch.func.grad rather than requires_grad_ + autograd.grad: the same gradient, and it keeps
    # the loop traceable by torch.compile (no leaf tensor created inside the captured region).
    # Called under no_grad: the transform still differentiates w.r.t. its input, but records no
    # graph towards the parameters (the iterate is a constant of the training loss).
    grad_and_val = torch.func.grad(total, has_aux=True)
    for _ in range(steps):
        x_adv = x_adv.detach()
        with torch.no_grad():
            grad, val = grad_and_val(x_adv)
        if keep_best:
            if best_val is None:
                best_val = val.clone()
            else:
                better = val > best_val
                best_val = torch.where(better, val, best_val)
                best_x = torch.where(_rows(better, x), x_adv.detach(), best_x)
        x_adv = _project(x, x_adv.detach() + alpha * _ascent_direction(grad, norm), eps, norm)
    if not keep_best:
        return x_adv.detach(), None          # no extra forward pass (as in Madry et al.)
    with torch.no_grad():
        val = objective(model(x_adv), y)
    if best_val is None:
        return x_adv.detach(), val
    better = val > best_val
    return torch.where(_rows(better, x), x_adv, best_x), torch.where(better, val, best_val)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) mask broadcast over the trailing dimensions of ``like`` (for ``torch.where``: no
    data-dependent indexing, so no host synchronisation)."""
    return mask.reshape((-1,) + (1,) * (like.ndim - 1))


def _resolve_step(eps, steps, step_size):
    steps = check_int("steps", steps, min_value=0)
    if step_size is None:
        step_size = eps / YANG_PGD_STEP_DIVISOR
    else:
        step_size = check_float("step_size", step_size, low=0.0, low_open=True)
    return steps, step_size


# --------------------------------------------------------------------------------------------
# Public attacks
# --------------------------------------------------------------------------------------------
def pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "inf",
        steps: int = YANG_PGD_STEPS, step_size: float | None = None, random_start: bool = True,
        generator: torch.Generator | None = None, loss: str = "ce",
        keep_best: bool = False, *, start_std: float | None = None, eval_model: bool = True,
        validate: bool = True) -> torch.Tensor:
    """Projected gradient ascent on ``loss`` in the ``norm`` ball of radius ``eps`` (YRZSC Sec. 5:
    PGD-10, step size eps/5 by default). Returns adversarial inputs (detached, same shape, device
    and dtype as ``x``), each within ``eps`` of ``x`` and inside [0, 1].

    ``loss`` names an objective in :data:`LOSSES`: ``"ce"`` (AT/RST, evaluation), ``"kl"``
    (TRADES: KL from the clean prediction), ``"margin"`` (Carlini-Wagner margin). The last iterate
    is returned (as the YRZSC authors' PGD); with ``keep_best`` the iterate with the largest
    objective per example instead (one extra forward pass). The random start is uniform in the
    ball, or with ``start_std`` the TRADES start x + start_std * N(0, 1) (TRADES' code: 0.001;
    clamped to the ball, not to the box); it is reproducible with ``generator`` and independent of
    the example's position in the batch (module docstring). With ``"kl"`` keep a random start: the
    KL objective has zero gradient at x' = x.

    ``eval_model`` (default) runs the attack in eval mode; ``eval_model=False`` leaves the model's
    mode alone, so a model in train mode attacks with dropout on, a fresh mask per step (the YRZSC
    authors' AT and RST inner maximisation). ``validate=False`` skips the data checks (finite
    values in [0, 1], labels in range) that need the host to read device values: a training loop
    validates its data once up front (:func:`validate_batch`) and calls the attack with
    ``validate=False``, so a whole training step has no host synchronisation and can be captured
    (``torch.compile(fullgraph=True)``, CUDA graphs).
    """
    if validate:
        eps, norm = _check_inputs(x, y, eps, norm)
    else:
        eps = check_float("eps", eps, low=0.0)
        norm = check_norm("norm", norm)
    _check_model_dtype(model, x)
    steps, alpha = _resolve_step(eps, steps, step_size)
    spec = LOSSES[check_choice("loss", loss, tuple(LOSSES))]
    random_start = bool(random_start)
    if start_std is not None:
        start_std = check_float("start_std", start_std, low=0.0, low_open=True)
    y = y.to(x.device)
    x = x.detach()
    mode = eval_mode(model) if eval_model else contextlib.nullcontext(model)
    with mode:
        # A clean forward pass only when the objective needs it (or nothing else would check the
        # labels); otherwise the labels are checked on the first iterate's logits.
        checked = not validate or spec.needs_clean or steps == 0 or eps == 0
        clean_logits = None
        if spec.needs_clean or (validate and checked):
            with torch.no_grad():
                clean_logits = _forward_checked(model, x, y) if validate else model(x)
        if eps == 0:
            return x.clone()
        if random_start:
            keys = _example_seeds(x, y, _base_seed_tensor(generator, x.device), 0)
            x0 = (_normal_start(x, eps, start_std, keys) if start_std is not None
                  else _random_start(x, eps, norm, keys))
        else:
            x0 = x.clone()

        def objective(logits, labels):
            nonlocal checked
            if not checked:
                _check_logits(logits, x, labels)
                checked = True
            return spec.fn(logits, labels, clean_logits)

        x_adv, _ = _iterate(model, x, y, x0, eps, norm, steps, alpha, objective, keep_best)
    return x_adv


def validate_batch(x: torch.Tensor, y: torch.Tensor, n_classes: int | None = None) -> None:
    """The data checks of :func:`pgd` done once for a whole data set (floating point, finite,
    in [0, 1], integer labels, one per example, in [0, n_classes - 1] when given); raises
    ValueError / TypeError naming the parameter. Training loops call this once before their
    first step and then attack with ``validate=False``."""
    _check_inputs(x, y, 0.0, "inf")
    if n_classes is not None and len(y):
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"y must be class indices in [0, {n_classes - 1}], got labels in "
                             f"[{lo}, {hi}]")


def multi_targeted(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                   norm: str = "inf", steps: int = YANG_MT_STEPS, step_size: float | None = None,
                   random_start: bool = True, generator: torch.Generator | None = None,
                   targets: list[int] | None = None) -> torch.Tensor:
    """Multi-targeted attack (Gowal et al.; YRZSC Appendix D.1, ``steps`` = 20 per target, step
    size 2 eps / steps by default as in the YRZSC authors' code: 0.01 for eps 0.1, 20 steps).

    For every class t (or every t in ``targets``) run ``steps`` of projected ascent on the
    targeted margin ``z_t - z_y`` from its own random start, keeping that run's iterate with the
    largest targeted margin; then keep per example, over the targets, the candidate with the
    largest untargeted margin ``max_{j != y} z_j - z_y`` (the clean input counts as a candidate, so
    the result is never weaker than no attack). Examples whose label is t skip target t.
    """
    eps, norm = _check_inputs(x, y, eps, norm)
    _check_model_dtype(model, x)
    steps = check_int("steps", steps, min_value=0)
    if step_size is None:       # the YRZSC authors' MT step: 2 eps / iterations (0.01 for 20 of 0.1)
        step_size = min(eps, 2.0 * eps / max(steps, 1)) if eps > 0 else 1.0
    steps, alpha = _resolve_step(eps, steps, step_size)
    y = y.to(x.device)
    x = x.detach()
    with eval_mode(model):
        with torch.no_grad():
            clean = _forward_checked(model, x, y)
        n_classes = clean.shape[1]
        if targets is None:
            targets = list(range(n_classes))
        targets = [check_int("targets", t, min_value=0, max_value=n_classes - 1) for t in targets]
        best_x = x.clone()
        with torch.no_grad():
            best_m = _untargeted_margin(clean, y)
        if eps == 0:
            return best_x
        base = _base_seed(generator) if random_start else 0
        for t in targets:
            tgt = torch.full_like(y, t)
            active = y != t
            if not bool(active.any()):
                continue

            def targeted(logits, labels, _t=tgt):
                return logits.gather(1, _t[:, None])[:, 0] - logits.gather(1, labels[:, None])[:, 0]

            if random_start:
                x0 = _random_start(x, eps, norm, _example_seeds(x, y, base, 1 + t))
            else:
                x0 = x.clone()
            cand, _ = _iterate(model, x, y, x0, eps, norm, steps, alpha, targeted, keep_best=True)
            with torch.no_grad():
                m = _untargeted_margin(model(cand), y)
            better = (m > best_m) & active
            best_m = torch.where(better, m, best_m)
            best_x[better] = cand[better]
    return best_x


# --------------------------------------------------------------------------------------------
# Robust accuracy report
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustReport:
    """Clean and robust accuracy with AutoAttack-style sanity figures."""
    n: int
    eps: float
    norm: str
    attack: str
    steps: int
    clean_accuracy: float
    robust_accuracy: float
    max_perturbation: float   # largest ||x_adv - x||_norm over all examples
    nan_count: int            # NaN entries in the adversarial inputs
    adv_min: float            # smallest entry of the adversarial inputs
    adv_max: float            # largest entry of the adversarial inputs

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.attack} ({self.norm}, eps={self.eps:.5g}, steps={self.steps}, n={self.n}): "
                f"clean accuracy: {100 * self.clean_accuracy:.2f}%, "
                f"robust accuracy: {100 * self.robust_accuracy:.2f}%, "
                f"max L{self.norm} perturbation: {self.max_perturbation:.5f}, "
                f"nan in tensor: {self.nan_count}, max: {self.adv_max:.5f}, min: {self.adv_min:.5f}")


def robust_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                    norm: str = "inf", attack: str = "pgd", steps: int | None = None,
                    step_size: float | None = None, generator: torch.Generator | None = None,
                    batch_size: int = 256, random_start: bool = True,
                    keep_best: bool = False) -> RobustReport:
    """Clean and robust accuracy of ``model`` on (x, y) under ``attack`` (``"pgd"``: PGD, default
    10 steps, the last iterate as the YRZSC authors' evaluation, or with ``keep_best`` the
    per-example best iterate; ``"mt"``: multi-targeted, default 20 steps per target), evaluated in
    batches of ``batch_size``. An example is robust when it is classified
    correctly both clean and at its adversarial input. Also reports the largest perturbation
    norm, the NaN count and the range of the adversarial inputs (as AutoAttack's last line)."""
    attack = check_choice("attack", attack, ATTACKS)
    eps, norm = _check_inputs(x, y, eps, norm)
    _check_model_dtype(model, x)
    batch_size = check_int("batch_size", batch_size, min_value=1)
    if steps is None:
        steps = YANG_PGD_STEPS if attack == "pgd" else YANG_MT_STEPS
    steps = check_int("steps", steps, min_value=0)
    n = x.shape[0]
    # one base seed for the whole call, so the result does not depend on batch_size
    base = _base_seed(generator)
    clean_ok = rob_ok = nans = 0
    max_pert, lo, hi = 0.0, math.inf, -math.inf
    starts = range(0, n, batch_size)
    for s in progress(starts, total=len(starts), desc=f"{attack} eps={eps:g}"):
        xb, yb = x[s:s + batch_size], y[s:s + batch_size].to(x.device)
        if attack == "pgd":
            adv = pgd(model, xb, yb, eps, norm, steps=steps, step_size=step_size,
                      random_start=random_start, generator=_seeded(base),
                      keep_best=bool(keep_best))
        else:
            adv = multi_targeted(model, xb, yb, eps, norm, steps=steps, step_size=step_size,
                                 random_start=random_start, generator=_seeded(base))
        with eval_mode(model), torch.no_grad():
            pc = model(xb).argmax(dim=1) == yb
            pa = model(adv).argmax(dim=1) == yb
        clean_ok += int(pc.sum())
        rob_ok += int((pc & pa).sum())
        nans += int(torch.isnan(adv).sum())
        max_pert = max(max_pert, float(perturbation_norms(adv, xb, norm).max()))
        lo, hi = min(lo, float(adv.min())), max(hi, float(adv.max()))
    return RobustReport(n=n, eps=eps, norm=norm, attack=attack, steps=steps,
                        clean_accuracy=clean_ok / n, robust_accuracy=rob_ok / n,
                        max_perturbation=max_pert, nan_count=nans, adv_min=lo, adv_max=hi)
