"""CPU timing and GPU estimate of the YRZSC MNIST campaign (``deep.campaign yrzsc-mnist``).

    python -m deep.experiments.campaign_timing --out runs/campaign_timing.json [--batch 16]

For every training group of the campaign (CNN1 and CNN2: natural, GR, LLR, AT + RST(1, 2, 5)
stacked, TRADES(1, 3, 6) stacked) it measures, for one training step at the paper's batch 64:

* FLOPs (``torch.utils.flop_counter.FlopCounterMode`` on a small batch, scaled linearly to 64:
  every FLOP of these networks is per example),
* dispatched ATen operators (a ``TorchDispatchMode`` counter; on a GPU each is at least one kernel
  launch, and at batch 64 the launches, not the arithmetic, bound the step),
* CPU wall time of a few steps on ``--batch`` examples (the machine may be shared: the numbers
  are upper bounds and say so),

* steps/s of the eager step and of the captured step (``torch.compile(fullgraph=True)``,
  ``--capture-backend``; a group whose capture fails is recorded with the reason), timed in the
  same run on ``--batch`` examples,

and the same for one model's evaluation (PGD-10 on train and test subsets, MT, Eq. 3). The GPU
estimate per step is ``max(ops * launch_s, flops / gpu_flops)`` with stated constants (eager
PyTorch on an H100: about 6-10 us of host time per operator; about 25 TFLOP/s reached by small
float32/TF32 convolutions), and the epochs that fit a budget follow as in the campaign's pilot.
The pilot inside the campaign replaces this estimate by a measurement on the GPU itself.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from deep.experiments.campaign_stack import Schedule, train_group
from deep.experiments.campaign_yrzsc import EVAL_SHARE, YrzscConfig, fresh_models, groups_for
from plumbing.cli import OneLineArgumentParser, float_range, int_sci, run_main
from plumbing.io import atomic_write_json, provenance

PROG = "python -m deep.experiments.campaign_timing"
STEPS_PER_EPOCH = math.ceil(60000 / 64)


class OpCounter(TorchDispatchMode):
    """Counts ATen operator calls (a lower bound of GPU kernel launches) and the FLOPs of the
    matrix products and convolutions among them (``torch.utils.flop_counter``'s formulas;
    ``FlopCounterMode`` itself cannot run around ``autograd.grad`` on inputs)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.count += 1
        out = func(*args, **kwargs)
        f = flop_registry.get(func._overloadpacket)
        if f is not None:
            self.flops += int(f(*args, **kwargs, out_val=out))
        return out


def _step(group, model, x, y, seed=0):
    sched = Schedule(lr=0.01, momentum=0.9, milestones=(0.25, 0.5, 0.75, 0.875))
    return train_group(group, model, x, y, epochs=1, batch_size=len(y), sched=sched, seed=seed,
                       max_steps=1)


def time_step_modes(group, x, y, timed_batch: int, repeats: int, backend: str | None) -> dict:
    """Steps/s of the eager and the captured training step of ``group`` (one untimed first step
    each: kernels, and the compilation in captured mode), measured in this run."""
    out = {}
    modes = ("eager",) if backend == "none" else ("eager", "captured")
    for mode in modes:
        model = group.build(fresh_models(group.arch, len(group.methods), "cpu", 0))
        times: list[float] = []
        sched = Schedule(lr=0.01, momentum=0.9, milestones=(0.25, 0.5, 0.75, 0.875))
        r = train_group(group, model, x[:timed_batch * (repeats + 1)], y[:timed_batch * (repeats + 1)],
                        epochs=1, batch_size=timed_batch, sched=sched, seed=0,
                        max_steps=repeats + 1, step_mode=mode, capture_backend=backend,
                        step_times=times)
        gaps = [b - a for a, b in zip(times, times[1:])]
        timed = gaps[1:] or gaps
        ok = r["step_mode"] == mode
        out[mode] = {"steps_per_s": (len(timed) / sum(timed)) if ok and timed else None,
                     "first_step_seconds": gaps[0] if gaps else None,
                     "error": r["capture_error"]}
    return out


def measure_group(group, x, y, small: int, timed_batch: int, repeats: int,
                  capture_backend: str | None = None) -> dict:
    k = len(group.methods)
    model = group.build(fresh_models(group.arch, k, "cpu", 0))
    _step(group, model, x[:small], y[:small])                       # warm-up
    oc = OpCounter()
    with oc:
        _step(group, model, x[:small], y[:small])
    flops64 = oc.flops * 64 / small
    t0 = time.perf_counter()
    for i in range(repeats):
        _step(group, model, x[:timed_batch], y[:timed_batch], seed=i)
    cpu_s = (time.perf_counter() - t0) / repeats
    modes = time_step_modes(group, x, y, timed_batch, repeats, capture_backend)
    return {"group": group.name, "models": k, "flops_per_step_b64": flops64,
            "aten_ops_per_step": oc.count, "cpu_seconds_per_step": cpu_s,
            "cpu_batch": timed_batch, "cpu_seconds_per_step_b64_scaled": cpu_s * 64 / timed_batch,
            "eager_steps_per_s": modes["eager"]["steps_per_s"],
            "captured_steps_per_s": modes.get("captured", {}).get("steps_per_s"),
            "captured_first_step_seconds": modes.get("captured", {}).get("first_step_seconds"),
            "captured_error": modes.get("captured", {}).get("error")}


def measure_eval(arch: str, x, y, n: int) -> dict:
    """FLOPs and operators of one model's evaluation, per example, from a PGD-10 and an MT batch."""
    from deep.attacks import robust_accuracy
    from deep.local_lipschitz import empirical_local_lipschitz

    model = fresh_models(arch, 1, "cpu", 0)[0].eval()
    out = {}
    for name, fn in (("pgd10", lambda: robust_accuracy(model, x[:n], y[:n], 0.1, "inf", "pgd", steps=10)),
                     ("mt20", lambda: robust_accuracy(model, x[:n], y[:n], 0.1, "inf", "mt", steps=20)),
                     ("lip10", lambda: empirical_local_lipschitz(model, x[:n], 0.1, steps=10))):
        oc = OpCounter()
        with oc:
            fn()
        out[name] = {"flops_per_example": oc.flops / n, "aten_ops_per_batch": oc.count}
    return out


def gpu_estimate(groups: list[dict], evals: dict, *, launch_s: float, gpu_flops: float,
                 n_pgd: int, n_mt: int, n_lip: int, eval_batch: int, budget_s: float,
                 eval_share: float = EVAL_SHARE) -> dict:
    """GPU seconds per epoch and per evaluation; the evaluation on the full sets is then cut as
    the campaign's pilot does (``campaign_yrzsc.size_evaluation``: every set scaled by one factor
    so that the evaluation takes at most ``eval_share`` of the planned time; here the cost is
    taken as linear in the sizes and the sets' lower limit is ignored), and the epochs that fit
    the rest follow."""
    per_group = {}
    epoch_total = 0.0
    for g in groups:
        step = max(g["aten_ops_per_step"] * launch_s, g["flops_per_step_b64"] / gpu_flops)
        per_group[g["group"]] = {"seconds_per_step": step, "seconds_per_epoch": step * STEPS_PER_EPOCH,
                                 "bound": "launch" if g["aten_ops_per_step"] * launch_s >=
                                 g["flops_per_step_b64"] / gpu_flops else "compute"}
        epoch_total += step * STEPS_PER_EPOCH
    eval_total = 0.0
    for g in groups:
        arch = g["group"].split("_")[0]
        e = evals[arch]
        one = 0.0
        for key, n in (("pgd10", n_pgd), ("mt20", n_mt), ("lip10", n_lip)):
            batches = math.ceil(n / eval_batch)
            one += max(e[key]["aten_ops_per_batch"] * launch_s * batches,
                       e[key]["flops_per_example"] * n / gpu_flops)
        eval_total += one * g["models"]
    share_s = eval_share * 0.85 * budget_s
    fraction = 1.0 if eval_total <= share_s else share_s / eval_total
    eval_used = eval_total * fraction
    epochs = max(0, math.floor((0.85 * budget_s - eval_used) / epoch_total))
    return {"launch_seconds_per_op": launch_s, "gpu_flops_per_s": gpu_flops,
            "per_group": per_group, "train_seconds_per_epoch_all_groups": epoch_total,
            "eval_seconds_all_models": eval_total, "eval_share": eval_share,
            "eval_fraction_that_fits": fraction, "eval_seconds_used": eval_used,
            "budget_seconds": budget_s, "epochs_that_fit": epochs}


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batch", type=int_sci(2, "--batch"), default=16,
                    help="examples per timed CPU step (default 16; the estimate scales to 64)")
    ap.add_argument("--repeats", type=int_sci(1, "--repeats"), default=2)
    ap.add_argument("--budget-s", type=float_range(0, None, low_open=True, name="--budget-s"),
                    default=270.0, help="budget of the YRZSC part for the epochs estimate")
    ap.add_argument("--threads", type=int_sci(1, "--threads"), default=1)
    ap.add_argument("--capture-backend", choices=("inductor", "aot_eager", "eager", "none"),
                    default="inductor", help="torch.compile backend of the captured step "
                    "(none: time the eager step only; default inductor)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from deep.data import load_tensors

    x, y = load_tensors("mnist", "train", args.data_root,
                        subset=max(64, args.batch * (args.repeats + 1)), seed=0)
    cfg = YrzscConfig(out=Path("unused"))
    started = time.perf_counter()
    backend = None if args.capture_backend == "inductor" else args.capture_backend
    groups = [measure_group(g, x, y, 4, args.batch, args.repeats, backend) for g in groups_for(cfg)]
    for g in groups:
        cap = (f"{g['captured_steps_per_s']:.2f}" if g["captured_steps_per_s"] else
               f"n/a ({(g['captured_error'] or 'not timed')[:60]})")
        print(f"{g['group']:34s} {g['flops_per_step_b64'] / 1e9:8.2f} GFLOP/step(b64) "
              f"{g['aten_ops_per_step']:6d} ops/step  CPU {g['cpu_seconds_per_step']:.3f} s/step "
              f"(batch {args.batch}); steps/s eager {g['eager_steps_per_s']:.2f}, captured {cap}",
              flush=True)
    evals = {a: measure_eval(a, x, y, 8) for a in ("cnn1", "cnn2")}
    est = {}
    for name, launch, fl in (("optimistic", 6e-6, 40e12), ("central", 10e-6, 25e12),
                             ("pessimistic", 20e-6, 10e12)):
        est[name] = gpu_estimate(groups, evals, launch_s=launch, gpu_flops=fl, n_pgd=20000,
                                 n_mt=2000, n_lip=10000, eval_batch=1000, budget_s=args.budget_s)
        print(f"H100 {name}: {est[name]['train_seconds_per_epoch_all_groups']:.1f} s per epoch of all "
              f"20 runs, evaluation {est[name]['eval_seconds_all_models']:.1f} s on the full sets "
              f"({est[name]['eval_fraction_that_fits']:.2f} of them fit {EVAL_SHARE:.0%}) -> "
              f"{est[name]['epochs_that_fit']} epoch(s) in {args.budget_s:.0f} s", flush=True)
    atomic_write_json(args.out, {"groups": groups, "evaluation": evals, "estimates": est,
                                 "note": "CPU timings on a shared, loaded machine (upper bounds)",
                                 "provenance": provenance(wall_seconds=time.perf_counter() - started,
                                                          device="cpu")})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
