"""Time our PGD-10 (``deep.attacks.pgd``) against torchattacks' PGD on the same model and batch.

Both run l-inf PGD with 10 steps of eps/5 from a uniform random start (YRZSC Section 5) on
YRZSC's CNN1 (``deep.models_yang``; untrained, timing does not depend on the weights) and a batch
of MNIST-shaped inputs in [0, 1], with the labels the model predicts, so the fraction of flipped
predictions shows both attacks do the same work. Calls alternate (ours, theirs, ours, ...) so
a changing load on a shared machine hits both alike; prints the median wall and process-CPU
seconds per call of each and the ratio ours / torchattacks (< 1: ours is faster).

Before timing, both attacks run once WITHOUT random start, where PGD is deterministic and the
two implementations must return the same points: the command prints the largest coordinate
difference and the fraction of coordinates differing by more than ``--atol`` (default 1e-6),
and exits 1 with "DISAGREE" when that fraction exceeds ``--max-differing`` (default 1e-3; a
coordinate whose gradient is zero to rounding may take the other sign).

torchattacks is an optional peer, not a dependency: install it with
``pip install --no-deps torchattacks`` (its declared torchvision requirement would otherwise pull
another torch; PGD needs only torch). Without it the command prints
"torchattacks unavailable: <reason>" and exits 0.

    python -m bench.bench_attacks [--device cpu|cuda] [--batch 256] [--repeats 5] [--out f.json]
"""
from __future__ import annotations

import statistics
import sys
import time

from plumbing.cli import OneLineArgumentParser, UsageError, add_force_arg, float_range, int_sci, run_main
from theory.constants import YANG_EPS_LINF, YANG_PGD_STEP_DIVISOR, YANG_PGD_STEPS

PROG = "python -m bench.bench_attacks"


def agreement(ours, theirs, *, atol: float = 1e-6, max_differing: float = 1e-3) -> dict:
    """Compare two attacks' outputs from the same deterministic start: ``max_abs_diff``, the
    fraction of coordinates differing by more than ``atol`` (``differing``) and ``ok`` (that
    fraction <= ``max_differing`` and the shapes equal)."""
    if tuple(ours.shape) != tuple(theirs.shape):
        return {"max_abs_diff": float("inf"), "differing": 1.0, "ok": False}
    diff = (ours.detach().double() - theirs.detach().double().to(ours.device)).abs()
    differing = float((diff > atol).double().mean())
    return {"max_abs_diff": float(diff.max()), "differing": differing,
            "ok": differing <= max_differing}


def _model(torch):
    try:
        from deep.models_yang import CNN1
        return CNN1(dropout=0.0), "CNN1 (deep.models_yang)"
    except ImportError as exc:  # models live in another module; keep the bench usable alone
        nn = torch.nn
        return (nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(),
                              nn.Linear(128, 10)), f"local CNN1 copy ({exc})")


def _time_pair(fa, fb, sync, repeats: int):
    """Interleaved timing (a, b, a, b, ...) after one warm-up each, so a change of load on a
    shared machine hits both alike. Returns medians of wall and process-CPU seconds per call for
    a and b, the median of the per-round wall ratios a/b, and the last outputs."""
    outs = [fa(), fb()]
    sync()
    wall = ([], [])
    cpu = ([], [])
    for _ in range(repeats):
        for k, fn in enumerate((fa, fb)):
            w0, c0 = time.perf_counter(), time.process_time()
            outs[k] = fn()
            sync()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    med = statistics.median
    ratios = [a / b for a, b in zip(*wall)]
    return (med(wall[0]), med(wall[1]), med(cpu[0]), med(cpu[1]), med(ratios), outs)


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--batch", type=int_sci(1, "--batch"), default=256, help="batch size")
    ap.add_argument("--repeats", type=int_sci(1, "--repeats"), default=5, help="timed repetitions")
    ap.add_argument("--eps", type=float_range(0.0, 1.0, low_open=True, name="--eps"),
                    default=YANG_EPS_LINF["mnist"], help="l-inf radius of the attacks")
    ap.add_argument("--threads", type=int_sci(1, "--threads"), default=None,
                    help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="seed, >= 0")
    ap.add_argument("--atol", type=float_range(0.0, 1.0, name="--atol"), default=1e-6,
                    help="coordinate tolerance of the agreement check (default 1e-6)")
    ap.add_argument("--max-differing", type=float_range(0.0, 1.0, name="--max-differing"),
                    default=1e-3, help="largest fraction of coordinates allowed to differ by more "
                    "than --atol (default 1e-3)")
    ap.add_argument("--out", default=None, metavar="PATH",
                    help="JSON file for the measurement (default: not written)")
    add_force_arg(ap)
    args = ap.parse_args(argv)
    from plumbing.io import check_output_file

    check_output_file(args.out, "--out", force=args.force)

    import torch

    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise UsageError(f"--device must be cpu or cuda[:i], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available on this machine")
    try:
        import torchattacks
    except Exception as exc:  # noqa: BLE001 - any import failure means the peer is unavailable
        print(f"torchattacks unavailable: {type(exc).__name__}: {exc}")
        return 0

    from deep.attacks import perturbation_norms, pgd

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(args.seed)
    model, model_name = _model(torch)
    model = model.to(device).eval()
    x = torch.rand(args.batch, 1, 28, 28, generator=g).to(device)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    eps, steps = args.eps, YANG_PGD_STEPS
    alpha = eps / YANG_PGD_STEP_DIVISOR

    # agreement: without random start PGD is deterministic, so both must give the same points
    det = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    agree = agreement(pgd(model, x, y, eps, "inf", steps=steps, step_size=alpha, random_start=False),
                      det(x, y), atol=args.atol, max_differing=args.max_differing)
    print(f"agreement without random start: max |ours - torchattacks| = {agree['max_abs_diff']:.3g}, "
          f"coordinates differing by > {args.atol:g}: {100 * agree['differing']:.4f}% "
          f"({'agree' if agree['ok'] else 'DISAGREE'})")
    if not agree["ok"]:
        return 1

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)  # torchattacks draws its random start from the global RNG
    peer = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    ours_s, theirs_s, ours_cpu, theirs_cpu, ratio, (ours, theirs) = _time_pair(
        lambda: pgd(model, x, y, eps, "inf", steps=steps, step_size=alpha,
                    generator=torch.Generator().manual_seed(args.seed)),
        lambda: peer(x, y), sync, args.repeats)
    wall = time.perf_counter() - t0

    with torch.no_grad():
        flip_ours = float((model(ours).argmax(1) != y).float().mean())
        flip_theirs = float((model(theirs).argmax(1) != y).float().mean())
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"model {model_name}, batch {args.batch}x1x28x28, eps {eps:g}, PGD-{steps} step {alpha:g}, "
          f"device {dev_name}, threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"ours (deep.attacks.pgd):  {ours_s * 1000:9.2f} ms/call (cpu {ours_cpu * 1000:9.2f} ms)  "
          f"flipped {100 * flip_ours:5.1f}%  "
          f"max perturbation {float(perturbation_norms(ours, x, 'inf').max()):.5f}")
    print(f"torchattacks {torchattacks.__version__} PGD:  {theirs_s * 1000:9.2f} ms/call "
          f"(cpu {theirs_cpu * 1000:9.2f} ms)  flipped {100 * flip_theirs:5.1f}%  "
          f"max perturbation {float(perturbation_norms(theirs, x, 'inf').max()):.5f}")
    cpu_ratio = ours_cpu / theirs_cpu
    print(f"ratio ours/torchattacks = {ratio:.3f} wall (median of {args.repeats} interleaved rounds), "
          f"{cpu_ratio:.3f} process CPU time "
          f"({'ours faster' if ratio < 1 else 'torchattacks faster'})")
    if args.out:
        from plumbing.io import atomic_write_json, provenance
        atomic_write_json(args.out, {
            "model": model_name, "batch": args.batch, "eps": eps, "steps": steps,
            "step_size": alpha, "device": dev_name, "threads": torch.get_num_threads(),
            "repeats": args.repeats, "ours_seconds": ours_s, "torchattacks_seconds": theirs_s,
            "ours_cpu_seconds": ours_cpu, "torchattacks_cpu_seconds": theirs_cpu,
            "ratio_ours_over_torchattacks": ratio, "cpu_ratio_ours_over_torchattacks": cpu_ratio, "flipped_ours": flip_ours,
            "flipped_torchattacks": flip_theirs, "torchattacks_version": torchattacks.__version__,
            "agreement_no_random_start": agree,
            "provenance": provenance(seed=args.seed, wall_seconds=wall, device=dev_name)})
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
