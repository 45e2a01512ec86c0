"""Several YRZSC models trained at once in one process (GPU campaign, ``deep.campaign``).

On a GPU the MNIST networks of YRZSC Table 2 at the paper's batch size 64 are launch-bound: a
training step is hundreds of tiny kernels. :class:`StackedModel` holds K independent copies of
one architecture with their parameters stacked along a leading axis
(``torch.func.stack_module_state``) and evaluates all K with one ``torch.func.vmap`` over
``functional_call``: each kernel then does the work of K models (the convolutions become grouped
convolutions), so K runs cost about the launches of one.

Layout: the stacked model takes ``K * B`` rows; rows ``k*B .. (k+1)*B - 1`` go to model k and its
logits come back in the same rows. Every row depends only on its own input, so the input gradient
of a sum of per-row losses is each row's own gradient, and the attacks of ``deep.attacks``
(per-example projection, per-example random starts) work unchanged on the stacked rows.

Objectives (YRZSC Appendix A.0.2, as in ``deep.methods``), all with one PGD inner maximisation for
the whole stack (``deep.attacks.pgd``, eps 0.1, 10 steps of 0.02, last iterate):

* ``ce_mix``: model k minimises ``a_k CE(f_k(x), y) + b_k CE(f_k(x'), y)`` with x' the CE-PGD
  point (uniform start, train mode: dropout on during the attack, as the authors' AT/RST):
  AT is (a, b) = (0, 1), RST(lambda) is (1, lambda);
* ``trades``: model k minimises ``CE(f_k(x), y) + beta_k KL(f_k(x) || f_k(x'))`` with x' the
  KL-PGD point (eval mode, start x + 0.001 N(0, 1); batch-mean KL as ``deep.methods``; f_k(x)
  and f_k(x') share dropout masks through ``deep.methods.paired_forward``);
* ``single``: one model with ``deep.methods.make_loss`` (natural, GR, LLR).

The stacked loss is the *sum* over models of each model's own batch-mean loss, so model k's
gradient, and with plain SGD + momentum (elementwise) its whole trajectory, equals training it
alone on the same batches; ``tests/test_campaign.py`` checks this against ``deep.methods``.
Dropout masks are drawn independently per model (``vmap(randomness="different")``).
"""
from __future__ import annotations

import copy
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from deep.methods import MethodConfig, inner_attack, make_loss, paired_forward
from deep.trainer import epoch_seed
from plumbing.io import atomic_write_bytes
from plumbing.validation import check_choice, check_int

KINDS = ("single", "ce_mix", "trades")


class StackedModel(nn.Module):
    """K copies of one architecture evaluated together (module docstring: row layout)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("models must hold at least one module")
        kinds = {type(m) for m in models}
        if len(kinds) != 1:
            raise TypeError(f"models must share one architecture, got {sorted(k.__name__ for k in kinds)}")
        params, buffers = stack_module_state(models)
        self.k = len(models)
        self._names = list(params)
        self._buffer_names = list(buffers)
        for i, name in enumerate(self._names):
            self.register_parameter(f"p{i}", nn.Parameter(params[name].detach().clone()))
        for i, name in enumerate(self._buffer_names):
            self.register_buffer(f"b{i}", buffers[name].detach().clone())
        # the architecture without storage; not a registered submodule (its meta parameters must
        # stay out of parameters() and state_dict()); its train/eval flag follows ours per call
        self.__dict__["_skeleton"] = copy.deepcopy(models[0]).to("meta")

    def stacked_params(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"p{i}") for i, n in enumerate(self._names)}

    def stacked_buffers(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"b{i}") for i, n in enumerate(self._buffer_names)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.k:
            raise ValueError(f"stacked input must hold K*B rows with K={self.k}, got {x.shape[0]}")
        skel = self._skeleton
        skel.train(self.training)
        xs = x.reshape(self.k, x.shape[0] // self.k, *x.shape[1:])

        def one(p, b, xx):
            return functional_call(skel, (p, b), (xx,))

        out = vmap(one, randomness="different")(self.stacked_params(), self.stacked_buffers(), xs)
        return out.reshape(x.shape[0], *out.shape[2:])

    @torch.no_grad()
    def unstack(self, template: nn.Module) -> list[nn.Module]:
        """K ordinary modules (copies of ``template``'s architecture) with the stacked weights."""
        out = []
        params, buffers = self.stacked_params(), self.stacked_buffers()
        for k in range(self.k):
            m = copy.deepcopy(template)
            state = {n: t[k].detach().clone() for n, t in {**params, **buffers}.items()}
            m.load_state_dict(state)
            out.append(m.to(next(iter(params.values())).device))
        return out


def _per_model_mean(v: torch.Tensor, k: int) -> torch.Tensor:
    return v.reshape(k, -1).mean(dim=1)


@dataclass
class Group:
    """A set of runs trained together: one architecture, one kind of objective (module
    docstring), one MethodConfig per model."""
    arch: str
    kind: str
    methods: list[MethodConfig] = field(default_factory=list)

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        if not self.methods:
            raise ValueError("a group needs at least one method")
        if self.kind == "single" and len(self.methods) != 1:
            raise ValueError("a 'single' group holds exactly one method")
        allowed = {"single": ("natural", "gr", "llr", "at", "rst", "trades"),
                   "ce_mix": ("at", "rst"), "trades": ("trades",)}[self.kind]
        for m in self.methods:
            if m.name not in allowed:
                raise ValueError(f"method {m.spec} cannot join a {self.kind!r} group")
        base = self.methods[0]
        for m in self.methods[1:]:
            if (m.eps, m.steps, m.step_size) != (base.eps, base.steps, base.step_size):
                raise ValueError("methods of one group must share eps, steps and step size")

    @property
    def name(self) -> str:
        return f"{self.arch}_" + "+".join(m.spec.replace(":", "-") for m in self.methods)

    def build(self, models: list[nn.Module]) -> nn.Module:
        if len(models) != len(self.methods):
            raise ValueError(f"group {self.name} needs {len(self.methods)} models, got {len(models)}")
        return models[0] if self.kind == "single" else StackedModel(models)

    def loss_fn(self):
        """``loss(model, xb, yb)`` of the whole group (sum of the models' own losses)."""
        if self.kind == "single":
            return make_loss(self.methods[0], validate=False)   # train_group validated the data

        cfg = self.methods[0]
        k = len(self.methods)
        if self.kind == "ce_mix":
            a = [0.0 if m.name == "at" else 1.0 for m in self.methods]
            b = [1.0 if m.name == "at" else float(m.weight) for m in self.methods]
        else:
            beta = [float(m.weight) for m in self.methods]

        def loss(model, xb, yb):
            xr = xb.repeat(k, *([1] * (xb.dim() - 1)))
            yr = yb.repeat(k)
            dev, dt = xb.device, xb.dtype
            if self.kind == "ce_mix":
                xa = inner_attack(model, xr, yr, cfg, "ce", validate=False)
                aa = torch.tensor(a, device=dev, dtype=dt)
                bb = torch.tensor(b, device=dev, dtype=dt)
                clean = _per_model_mean(F.cross_entropy(model(xr), yr, reduction="none"), k)
                adv = _per_model_mean(F.cross_entropy(model(xa), yr, reduction="none"), k)
                return (aa * clean + bb * adv).sum()
            xa = inner_attack(model, xr, yr, cfg, "kl", validate=False)
            logits, logits_adv = paired_forward(model, xr, xa)   # as deep.methods' TRADES
            ce = _per_model_mean(F.cross_entropy(logits, yr, reduction="none"), k)
            kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1),
                          reduction="none").sum(dim=1)
            bt = torch.tensor(beta, device=dev, dtype=dt)
            return (ce + bt * _per_model_mean(kl, k)).sum()

        return loss


def step_seed(seed: int, epoch: int, step: int) -> int:
    """Seed of torch's RNG before training step ``step`` of ``epoch`` (dropout, attack starts):
    every step is reproducible on its own, so a resumed run continues exactly."""
    return (epoch_seed(seed, epoch) * 100_003 + step) % (2 ** 63 - 1)


@dataclass
class Schedule:
    """SGD with momentum and a step learning-rate schedule compressed to ``total_steps``."""
    lr: float
    momentum: float
    milestones: tuple[float, ...]
    gamma: float = 0.1

    def factor(self, step: int, total_steps: int) -> float:
        from deep.experiments.campaign_common import step_decay_factor
        return step_decay_factor(step / max(1, total_steps), self.milestones, self.gamma)


def make_sgd(model: nn.Module, sched: Schedule) -> torch.optim.SGD:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=sched.lr,
                           momentum=sched.momentum, nesterov=False, weight_decay=0.0)


def _save(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def train_group(group: Group, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                batch_size: int, sched: Schedule, seed: int, checkpoint: Path | None = None,
                should_stop=None, max_steps: int | None = None) -> dict:
    """Train ``model`` (built by ``group.build``) on device-resident tensors ``x``, ``y``.

    Epoch e visits a permutation drawn from a CPU generator seeded by (seed, e); before step s
    torch's RNG is seeded with :func:`step_seed` (dropout, attack starts). The learning rate is
    ``sched.lr * factor(step / total steps)``. A checkpoint (model, optimiser, position, history)
    is written after every epoch and when ``should_stop()`` turns true; training resumes from it.
    ``max_steps`` ends the call after that many steps (pilot timing). Returns
    ``{"finished", "history", "steps_done", "seconds"}``.
    """
    check_int("epochs", epochs, min_value=1)
    check_int("batch_size", batch_size, min_value=1)
    n = len(y)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    loss_fn = group.loss_fn()
    opt = make_sgd(model, sched)
    history: list[dict] = []
    epoch0, step0 = 0, 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=x.device, weights_only=False)
        if state["plan"] != {"epochs": epochs, "batch_size": batch_size, "n": n, "seed": seed}:
            raise ValueError(f"checkpoint {checkpoint} belongs to another plan {state['plan']}; "
                             f"delete it or use another --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, epoch0, step0 = state["history"], state["epoch"], state["step"]

    def save(epoch, step):
        if checkpoint is not None:
            _save(Path(checkpoint), {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "history": history, "epoch": epoch, "step": step,
                                     "plan": {"epochs": epochs, "batch_size": batch_size, "n": n,
                                              "seed": seed}})

    done_steps = 0
    t_start = time.perf_counter()
    model.train()
    for epoch in range(epoch0, epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        perm = perm.to(x.device)
        loss_sum = torch.zeros((), device=x.device)
        first = step0 if epoch == epoch0 else 0
        for s in range(first, steps_per_epoch):
            if (should_stop is not None and should_stop()) or (
                    max_steps is not None and done_steps >= max_steps):
                save(epoch, s)
                return {"finished": False, "history": history, "steps_done": done_steps,
                        "seconds": time.perf_counter() - t_start}
            torch.manual_seed(step_seed(seed, epoch, s))
            for g in opt.param_groups:
                g["lr"] = sched.lr * sched.factor(epoch * steps_per_epoch + s, total)
            idx = perm[s * batch_size:(s + 1) * batch_size]
            loss = loss_fn(model, x[idx], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            done_steps += 1
        history.append({"epoch": epoch, "train_loss_sum_over_models": float(loss_sum) / n,
                        "lr_end": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
        save(epoch + 1, 0)
    model.eval()
    return {"finished": True, "history": history, "steps_done": done_steps,
            "seconds": time.perf_counter() - t_start}
