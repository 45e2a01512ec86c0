"""Training objectives compared in YRZSC Section 5.1 (formulas: Appendix A.0.2, "Details on the
baseline algorithms"). Each is a ``loss_fn(model, xb, yb) -> scalar`` for :func:`deep.trainer.fit`.

=========  ====================================================================================
natural    E[L(f(X), Y)]                                                       (cross-entropy L)
gr         E[L + beta * ((L(f(X + h d), Y) - L(f(X), Y)) / h)^2],  d = grad_X L / ||grad_X L||_2
           Finlay & Oberman's finite-difference input-gradient regulariser: the squared quotient
           approximates ||grad_X L||_2^2 without double back-propagation (d is held fixed).
           Settings of the YRZSC authors' code: h = 1 and penalty lambda * sum (dl)^2 / 2 with
           lambda = 1 on the summed loss, i.e. beta = 1/2 in this formula (the default).
llr        E[L + lambda * g(delta) + mu * |delta^T grad_X L|],
           g(delta) = |L(X + delta) - L(X) - delta^T grad_X L|, delta = argmax_{B_inf(eps)} g
           (Qin et al.). grad_X L is the true per-example input gradient, kept in the graph
           (the authors' public code zeroes it in place, so their term is always 0).
at         E[max_{X' in B(X, eps)} L(f(X'), Y)]                        (Madry et al., Eq. (4))
rst        E[L(f(X), Y) + lambda * max_{X'} L(f(X'), Y)]     (robust self-training, labelled only)
trades     E[L(f(X), Y) + beta * max_{X'} KL(f(X) || f(X'))]                           (TRADES)
=========  ====================================================================================

Inner maximisations use ``deep.attacks.pgd`` (l_inf, 10 steps of eps/5 by default, last iterate).
As in the YRZSC authors' code: AT and RST attack from a uniform start in the ball with the model
in train mode (dropout on, a fresh mask per step); TRADES attacks in eval mode from
x + 0.001 * N(0, 1) (TRADES' start). The method is picked by exact name from
:data:`METHODS`; its parameter is ``MethodConfig.weight`` (TRADES beta, RST lambda, GR beta,
LLR lambda). On the command line ``"trades:6"`` means ``MethodConfig("trades", weight=6.0)``.

Dropout: forward passes whose outputs are compared share one dropout mask, so a difference
measures the input change and not the mask change, as the formulas above (one f) say: GR's
direction d, L(x) and L(x + h d) come from one mask and LLR's L(x), grad_x L and L(x + delta) from
one mask (torch's RNG state is captured once and replayed); TRADES' f(x) and f(x') in the KL term
come from one mask (:func:`paired_forward`: one ``vmap(randomness="same")`` call over the pair, no
RNG replay, so a TRADES step can be captured by ``torch.compile``; models with batch norm use the
RNG replay). The YRZSC authors' code draws independent masks instead (GR: two passes; TRADES:
three passes, f(x) for the cross-entropy and again for the KL target); the campaign lists this
among its deviations. AT and RST sum losses of separate passes and compare nothing, so their
passes draw independent masks. LLR's delta search runs in eval mode.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from plumbing.validation import check_choice, check_float, check_int

METHODS = ("natural", "gr", "llr", "at", "rst", "trades")
#: default parameter per method (None: the method takes none). TRADES beta = 6 is the TRADES
#: paper's MNIST choice; RST lambda = 2 is the row YRZSC Table 4 keeps; LLR lambda = 4, mu = 3
#: follow the YRZSC authors' settings (Appendix A.0.2 names no values); GR beta = 1/2 is the
#: authors' lambda = 1 on their penalty sum (dl)^2 / 2 written in Appendix A.0.2's formula.
DEFAULT_WEIGHT = {"natural": None, "gr": 0.5, "llr": 4.0, "at": None, "rst": 2.0, "trades": 6.0}
#: GR finite-difference step h of the YRZSC authors' code (Finlay & Oberman's default 1)
GR_STEP = 1.0
#: standard deviation of TRADES' attack start x + 0.001 * N(0, 1) (TRADES' and the authors' code)
TRADES_START_STD = 0.001
LABELS = {"natural": "Natural", "gr": "GR", "llr": "LLR", "at": "AT", "rst": "RST",
          "trades": "TRADES"}
_SYMBOL = {"gr": "β", "llr": "λ", "rst": "λ", "trades": "β"}


@dataclass(frozen=True)
class MethodConfig:
    """One training method with its parameters (validated).

    name: one of :data:`METHODS` (exact). weight: the method's parameter (TRADES beta, RST lambda,
    GR beta, LLR lambda), None for the default; natural and at take none. eps: l_inf radius of the
    inner maximisation (YRZSC Table 5: 0.1 MNIST, 0.031 CIFAR-10/SVHN). steps, step_size: PGD
    steps and step (default eps/5, Table 5: 0.02 for eps 0.1). gr_h: GR finite-difference step
    (default 1, the authors' code).
    llr_mu: LLR's mu; llr_steps, llr_step_size: LLR inner ascent (default 2 steps of eps/2).
    """
    name: str
    weight: float | None = None
    eps: float = 0.1
    steps: int = 10
    step_size: float | None = None
    gr_h: float = GR_STEP
    llr_mu: float = 3.0
    llr_steps: int = 2
    llr_step_size: float | None = None

    def __post_init__(self):
        check_choice("method", self.name, METHODS)
        if self.weight is None:
            object.__setattr__(self, "weight", DEFAULT_WEIGHT[self.name])
        elif DEFAULT_WEIGHT[self.name] is None:
            raise ValueError(f"method {self.name!r} takes no parameter; got weight={self.weight!r} "
                             f"(parameters belong to {', '.join(k for k, v in DEFAULT_WEIGHT.items() if v is not None)})")
        else:
            object.__setattr__(self, "weight", check_float("weight", self.weight, low=0.0))
        check_float("eps", self.eps, low=0.0, low_open=True)
        check_int("steps", self.steps, min_value=1)
        if self.step_size is None:
            object.__setattr__(self, "step_size", self.eps / 5)
        check_float("step_size", self.step_size, low=0.0, low_open=True)
        check_float("gr_h", self.gr_h, low=0.0, low_open=True)
        check_float("llr_mu", self.llr_mu, low=0.0)
        check_int("llr_steps", self.llr_steps, min_value=1)
        if self.llr_step_size is None:
            object.__setattr__(self, "llr_step_size", self.eps / 2)
        check_float("llr_step_size", self.llr_step_size, low=0.0, low_open=True)

    @property
    def spec(self) -> str:
        """Canonical command-line form: ``"at"``, ``"trades:6"``, ``"rst:2"``."""
        return self.name if self.weight is None else f"{self.name}:{self.weight:g}"

    @property
    def label(self) -> str:
        """Row label as in YRZSC Tables 2-4: ``"TRADES(β=6)"``."""
        if self.weight is None:
            return LABELS[self.name]
        return f"{LABELS[self.name]}({_SYMBOL[self.name]}={self.weight:g})"


def parse_method_spec(text: str, **params) -> MethodConfig:
    """``"name"`` or ``"name:number"`` -> MethodConfig (split once on ':'; exact name match)."""
    if not isinstance(text, str):
        raise TypeError(f"method spec must be a string like 'trades:6', got {type(text).__name__}")
    name, sep, num = text.strip().partition(":")
    name = name.strip().lower()
    if name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} (optionally name:number, "
                         f"e.g. trades:6); got {text!r}")
    weight = None
    if sep:
        try:
            weight = float(num)
        except ValueError:
            raise ValueError(f"method parameter after ':' must be a number, e.g. trades:6; "
                             f"got {text!r}") from None
        if not math.isfinite(weight):
            raise ValueError(f"method parameter must be finite; got {text!r}")
    return MethodConfig(name=name, weight=weight, **params)


# ---- building blocks ------------------------------------------------------------------------

def per_example_loss(model, x, y) -> torch.Tensor:
    """Cross-entropy of each example (shape (B,))."""
    return F.cross_entropy(model(x), y, reduction="none")


def input_gradient(model, x, y, *, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example losses L_i, per-example input gradients grad_{x_i} L_i) in one pass.

    Gradients of the *sum* of per-example losses, so each row is its own example's gradient (the
    networks here have no cross-example coupling in train mode except batch norm). With
    ``create_graph`` the gradient stays differentiable w.r.t. the parameters (LLR needs this).
    """
    xg = x.detach().clone().requires_grad_(True)
    losses = per_example_loss(model, xg, y)
    (g,) = torch.autograd.grad(losses.sum(), xg, create_graph=create_graph)
    return losses, g


@contextlib.contextmanager
def _eval_mode(model):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


class _SameRandomness:
    """Replays torch's RNG state so two forward passes draw the same dropout masks."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def replay(self):
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def _flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.flatten(1) * b.flatten(1)).sum(1)


def gr_penalty(model, x, y, h: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example losses, per-example finite-difference penalty ((L(x+hd) - L(x))/h)^2).

    d = grad_x L / ||grad_x L||_2 is computed without a graph and held fixed (Finlay & Oberman);
    examples with a zero gradient get d = 0 and penalty 0. The direction d and the loss L(x) come
    from ONE forward pass, and the pass at x + h d replays its random state, so all three share
    one dropout mask (the one drawn from torch's RNG state at the call): the penalty approximates
    ||grad_x L||_2^2 of the returned loss, not (grad L_B . d_A)^2 of two different masks.
    """
    rng = _SameRandomness(x.device)
    xg = x.detach().clone().requires_grad_(True)
    loss_x = per_example_loss(model, xg, y)
    (g,) = torch.autograd.grad(loss_x.sum(), xg, retain_graph=True)
    norm = g.flatten(1).norm(dim=1).clamp_min(torch.finfo(g.dtype).tiny)
    d = (g / norm.view(-1, *([1] * (g.dim() - 1)))).detach()
    rng.replay()
    loss_f = per_example_loss(model, x.detach() + h * d, y)
    return loss_x, ((loss_f - loss_x) / h) ** 2


def llr_delta(model, x, y, grad: torch.Tensor, eps: float, steps: int, step_size: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """delta in B_inf(eps) (with x + delta in [0, 1]) maximising g(delta) = |L(x+delta) - L(x) -
    delta^T grad| by projected sign-gradient ascent from a small random start (model in eval)."""
    grad = grad.detach()
    with _eval_mode(model):
        with torch.no_grad():
            base = per_example_loss(model, x, y)
            noise = torch.empty_like(x).uniform_(-1, 1, generator=generator) if generator is not None \
                else torch.empty_like(x).uniform_(-1, 1)
            delta = (0.001 * eps * noise)
            delta = (x + delta).clamp(0, 1) - x
        for _ in range(steps):
            delta.requires_grad_(True)
            gval = (per_example_loss(model, x + delta, y) - base - _flat_dot(delta, grad)).abs()
            (gd,) = torch.autograd.grad(gval.sum(), delta)
            with torch.no_grad():
                delta = (delta + step_size * gd.sign()).clamp(-eps, eps)
                delta = (x + delta).clamp(0, 1) - x
    return delta.detach()


def llr_terms(model, x, y, cfg: MethodConfig) -> dict[str, torch.Tensor]:
    """Per-example LLR terms at the maximising delta: ``loss`` L(x), ``gamma`` g(delta) and
    ``grad_dot`` |delta^T grad_x L|, all differentiable w.r.t. the parameters."""
    with _eval_mode(model):
        _, g0 = input_gradient(model, x, y)
    delta = llr_delta(model, x, y, g0, cfg.eps, cfg.llr_steps, cfg.llr_step_size)
    rng = _SameRandomness(x.device)
    loss_x, grad = input_gradient(model, x, y, create_graph=True)
    rng.replay()
    loss_d = per_example_loss(model, x + delta, y)
    dot = _flat_dot(delta, grad)
    return {"loss": loss_x, "gamma": (loss_d - loss_x - dot).abs(), "grad_dot": dot.abs()}


def inner_attack(model, x, y, cfg: MethodConfig, loss: str = "ce", *,
                 validate: bool = True) -> torch.Tensor:
    """The inner maximisation of AT / RST (``loss="ce"``: uniform start, model left in its mode,
    i.e. train mode with dropout during training, as the YRZSC authors' code) or TRADES
    (``loss="kl"``: eval mode, start x + 0.001 N(0, 1), as TRADES' code). ``validate=False`` when
    the caller has validated the data once (:func:`deep.attacks.validate_batch`)."""
    from deep.attacks import pgd  # deferred: attacks live in their own module

    trades = loss == "kl"
    return pgd(model, x, y, cfg.eps, norm="inf", steps=cfg.steps, step_size=cfg.step_size,
               random_start=True, loss=loss, eval_model=trades,
               start_std=TRADES_START_STD if trades else None, validate=validate).detach()


def _has_batch_norm(model) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def paired_forward(model, x: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), f(x2)) under ONE dropout mask: a single ``torch.func.vmap(randomness="same")`` call
    over the pair, so the masks are shared without touching torch's RNG state (capturable by
    ``torch.compile``). Models with batch norm (whose train-mode statistics cannot run under
    vmap) get the equivalent RNG replay instead."""
    if _has_batch_norm(model):
        rng = _SameRandomness(x.device)
        a = model(x)
        rng.replay()
        return a, model(x2)
    out = torch.func.vmap(model, randomness="same")(torch.stack([x, x2]))
    return out[0], out[1]


# ---- the objectives -------------------------------------------------------------------------

def _natural(cfg: MethodConfig, validate: bool = True):
    def loss_fn(model, xb, yb):
        return F.cross_entropy(model(xb), yb)
    return loss_fn


def _gr(cfg: MethodConfig, validate: bool = True):
    def loss_fn(model, xb, yb):
        loss_x, pen = gr_penalty(model, xb, yb, cfg.gr_h)
        return loss_x.mean() + cfg.weight * pen.mean()
    return loss_fn


def _llr(cfg: MethodConfig, validate: bool = True):
    def loss_fn(model, xb, yb):
        t = llr_terms(model, xb, yb, cfg)
        return t["loss"].mean() + cfg.weight * t["gamma"].mean() + cfg.llr_mu * t["grad_dot"].mean()
    return loss_fn


def _at(cfg: MethodConfig, validate: bool = True):
    def loss_fn(model, xb, yb):
        xa = inner_attack(model, xb, yb, cfg, validate=validate)
        return F.cross_entropy(model(xa), yb)
    return loss_fn


def _rst(cfg: MethodConfig, validate: bool = True):
    def loss_fn(model, xb, yb):
        xa = inner_attack(model, xb, yb, cfg, validate=validate)
        return F.cross_entropy(model(xb), yb) + cfg.weight * F.cross_entropy(model(xa), yb)
    return loss_fn


def _trades(cfg: MethodConfig, validate: bool = True):
    def loss_fn(model, xb, yb):
        xa = inner_attack(model, xb, yb, cfg, loss="kl", validate=validate)
        logits, logits_adv = paired_forward(model, xb, xa)   # one mask: KL measures x -> x' only
        kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1),
                      reduction="batchmean")
        return F.cross_entropy(logits, yb) + cfg.weight * kl
    return loss_fn


REGISTRY: dict[str, Callable[[MethodConfig], Callable]] = {
    "natural": _natural, "gr": _gr, "llr": _llr, "at": _at, "rst": _rst, "trades": _trades,
}


def make_loss(cfg: MethodConfig | str, *, validate: bool = True) -> Callable:
    """``loss_fn(model, xb, yb)`` for a MethodConfig (or a spec string such as ``"trades:6"``).
    ``validate=False``: the inner attacks skip their per-batch data checks (host
    synchronisations); for training loops that validated the data once up front."""
    if isinstance(cfg, str):
        cfg = parse_method_spec(cfg)
    if not isinstance(cfg, MethodConfig):
        raise TypeError(f"cfg must be a MethodConfig or a spec string, got {type(cfg).__name__}")
    if cfg.name not in REGISTRY:
        raise ValueError(f"method must be one of {', '.join(REGISTRY)}; got {cfg.name!r}")
    return REGISTRY[cfg.name](cfg, validate=bool(validate))
