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

Captured steps. A training step (loss with its inner attack, gradients, SGD-momentum update) has
no host synchronisation: the data are validated once before the first step
(``deep.attacks.validate_batch``), the attacks run with ``validate=False`` and draw their random
starts on the device, and the update is :class:`MomentumSGD` (torch.optim's ``step`` inserts graph
breaks by design). So ``step_mode="captured"`` compiles the whole step with
``torch.compile(fullgraph=True)`` (on a GPU: CUDA graphs with ``mode="reduce-overhead"``) for the
natural, AT/RST and TRADES groups; GR and LLR replay torch's RNG state to share a dropout mask,
which cannot be captured, so their compile fails and :func:`train_group` falls back to the eager
step and records why. ``step_mode="eager"`` runs the same Python step uncompiled.
"""
from __future__ import annotations

import contextlib
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
STEP_MODES = ("eager", "captured")


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


class MomentumSGD:
    """SGD with momentum (no dampening, no Nesterov, no weight decay), the update of
    ``torch.optim.SGD(momentum=m)`` written as plain tensor operations so that it can sit inside a
    captured step: ``buf = m * buf + grad`` (``buf`` starts at 0, so the first step gives
    ``buf = grad`` as torch's), ``p -= lr * buf``. ``lr`` is a 0-dim tensor on the parameters'
    device, changed in place by :meth:`set_lr` (a schedule never forces a recompilation)."""

    def __init__(self, params, lr: float, momentum: float):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("params must hold at least one tensor that requires grad")
        self.momentum = float(momentum)
        p0 = self.params[0]
        self.lr = torch.tensor(float(lr), device=p0.device, dtype=p0.dtype)
        self.buffers = [torch.zeros_like(p) for p in self.params]

    def set_lr(self, value: float) -> None:
        self.lr.fill_(float(value))

    @torch.no_grad()
    def apply(self, grads) -> None:
        torch._foreach_mul_(self.buffers, self.momentum)
        torch._foreach_add_(self.buffers, list(grads))
        torch._foreach_add_(self.params, torch._foreach_mul(self.buffers, -self.lr))

    def state_dict(self) -> dict:
        return {"momentum": self.momentum, "lr": float(self.lr),
                "buffers": [b.detach().clone() for b in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["buffers"]) != len(self.buffers):
            raise ValueError("optimizer state holds another number of parameters")
        with torch.no_grad():
            for b, v in zip(self.buffers, state["buffers"]):
                b.copy_(v)
        self.set_lr(state["lr"])


def make_step(group: Group, model: nn.Module, opt: MomentumSGD):
    """``step(xb, yb) -> loss`` (detached): the group's loss, the gradients of all parameters,
    one :class:`MomentumSGD` update. No host synchronisation inside (module docstring)."""
    loss_fn = group.loss_fn()
    params = opt.params

    def step(xb, yb):
        loss = loss_fn(model, xb, yb)
        grads = torch.autograd.grad(loss, params)
        opt.apply(grads)
        return loss.detach()

    return step


def _capture_context():
    """Dynamo must trace ``torch.autograd.grad`` (the inner attacks' input gradients and the
    parameter gradients) for a step to be one graph."""
    import torch._dynamo

    if not hasattr(torch._dynamo.config, "trace_autograd_ops"):
        raise RuntimeError(f"torch {torch.__version__} cannot trace torch.autograd.grad inside "
                           f"torch.compile (no torch._dynamo.config.trace_autograd_ops)")
    return torch._dynamo.config.patch(trace_autograd_ops=True)


def capture(step, *, backend: str | None = None, mode: str | None = None, device=None):
    """``torch.compile(step, fullgraph=True)`` (a graph break is an error, not a silent split);
    ``backend`` defaults to inductor, ``mode`` to ``"reduce-overhead"`` (CUDA graphs) on a GPU.
    Compilation happens at the first call; callers catch its errors and fall back to eager."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if mode is None and dev.type == "cuda" and (backend in (None, "inductor")):
        mode = "reduce-overhead"
    with _capture_context():
        compiled = torch.compile(step, fullgraph=True, backend=backend or "inductor", mode=mode,
                                 dynamic=False)

    def run(xb, yb):
        with _capture_context():
            return compiled(xb, yb)

    return run


def count_graphs(step, xb, yb) -> tuple[int, int]:
    """(graphs, graph breaks) that ``torch._dynamo.explain`` finds in one call of ``step``. The
    call runs the step once (its update is applied)."""
    import torch._dynamo

    torch._dynamo.reset()
    with _capture_context():
        e = torch._dynamo.explain(step)(xb, yb)
    return e.graph_count, e.graph_break_count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _save(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def train_group(group: Group, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                batch_size: int, sched: Schedule, seed: int, checkpoint: Path | None = None,
                should_stop=None, max_steps: int | None = None, step_mode: str = "eager",
                capture_backend: str | None = None, capture_mode: str | None = None,
                step_times: list | None = None) -> dict:
    """Train ``model`` (built by ``group.build``) on device-resident tensors ``x``, ``y``.

    Epoch e visits a permutation drawn from a CPU generator seeded by (seed, e); before step s
    torch's RNG is seeded with :func:`step_seed` (dropout, attack starts). The learning rate is
    ``sched.lr * factor(step / total steps)``. A checkpoint (model, optimiser, position, history)
    is written after every epoch and when ``should_stop()`` turns true; training resumes from it.
    ``max_steps`` ends the call after that many steps (pilot timing). ``step_mode``: ``"eager"``
    or ``"captured"`` (:func:`capture`; if compiling or the first captured step fails, the run
    continues eagerly and ``capture_error`` says why). The data are validated once here, not in
    the steps. Returns ``{"finished", "history", "steps_done", "seconds", "step_mode",
    "capture_error", "first_step_seconds"}`` (``step_mode``: the mode actually used). With a
    ``step_times`` list, the wall time before the first step and after every step (device
    synchronised) is appended to it (pilot timing).
    """
    from deep.attacks import validate_batch

    check_int("epochs", epochs, min_value=1)
    check_int("batch_size", batch_size, min_value=1)
    check_choice("step_mode", step_mode, STEP_MODES)
    validate_batch(x, y)
    n = len(y)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    opt = MomentumSGD(model.parameters(), sched.lr, sched.momentum)
    eager_step = make_step(group, model, opt)
    step_fn, capture_error, used = eager_step, None, step_mode
    if step_mode == "captured":
        try:
            step_fn = capture(eager_step, backend=capture_backend, mode=capture_mode,
                              device=x.device)
        except Exception as e:          # noqa: BLE001 - any compile failure falls back to eager
            step_fn, capture_error, used = eager_step, f"{type(e).__name__}: {e}", "eager"
    first_step_seconds = None
    history: list[dict] = []
    epoch0, step0 = 0, 0
    if checkpoint is not None and Path(checkpoint).is_file():
        from plumbing.io import load_checkpoint  # weights only, names a truncated file; a planted file is refused, never run

        state = load_checkpoint(checkpoint, map_location=x.device,
                                required=("plan", "model", "optimizer", "history", "epoch", "step"))
        if state["plan"] != {"epochs": epochs, "batch_size": batch_size, "n": n, "seed": seed}:
            raise ValueError(f"checkpoint {checkpoint} belongs to another plan {state['plan']}; "
                             f"delete it or use another --out")
        model.load_state_dict(state["model"])
        if not isinstance(state.get("optimizer"), dict) or "buffers" not in state["optimizer"]:
            raise ValueError(f"checkpoint {checkpoint} holds another optimizer format (written by "
                             f"an earlier version); delete it or use another --out")
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
                        "seconds": time.perf_counter() - t_start, "step_mode": used,
                        "capture_error": capture_error, "first_step_seconds": first_step_seconds}
            opt.set_lr(sched.lr * sched.factor(epoch * steps_per_epoch + s, total))
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            torch.manual_seed(step_seed(seed, epoch, s))
            if done_steps == 0:
                if step_times is not None:
                    _sync(x.device)
                    step_times.append(time.perf_counter())
                t_first = time.perf_counter()
                if used == "captured":
                    try:
                        loss = step_fn(xb, yb)
                    except Exception as e:  # noqa: BLE001 - compile errors surface at the first call
                        # tracing fails before any update is applied: rerun this step eagerly
                        step_fn, used = eager_step, "eager"
                        capture_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        torch.manual_seed(step_seed(seed, epoch, s))
                        loss = step_fn(xb, yb)
                else:
                    loss = step_fn(xb, yb)
                first_step_seconds = time.perf_counter() - t_first
            else:
                loss = step_fn(xb, yb)
            loss_sum += loss * len(idx)
            if step_times is not None:
                _sync(x.device)
                step_times.append(time.perf_counter())
            done_steps += 1
        history.append({"epoch": epoch, "train_loss_sum_over_models": float(loss_sum) / n,
                        "lr_end": float(opt.lr), "seconds": time.perf_counter() - t0})
        save(epoch + 1, 0)
    model.eval()
    return {"finished": True, "history": history, "steps_done": done_steps,
            "seconds": time.perf_counter() - t_start, "step_mode": used,
            "capture_error": capture_error, "first_step_seconds": first_step_seconds}
