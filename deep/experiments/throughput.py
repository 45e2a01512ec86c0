"""Training throughput of a model on random data: epochs per second (to size the GPU runs).

Times ``--batches`` SGD steps (forward, loss, backward, optimiser step; the training setup of
P&L Sec. 4.1: batch 256, Nesterov SGD, OffsetCrossEntropy or temperature CE) on random images of
the dataset's shape after ``--warmup`` untimed steps, and converts examples per second into
epochs per second for an epoch of ``--epoch-size`` examples (CIFAR-10: 50000, MNIST: 60000).
Random data is enough for timing; the number is comparable to the timings of the
"1-Lipschitz Layers Compared" benchmark when taken on the same GPU. ``lipconvnet`` is the
1-Lipschitz ConvNet of Sec. 4.1 with AOL convolutions; ``--conv cpl`` uses CPL instead.
"""
from __future__ import annotations

import sys
import time

import torch

from deep import models
from deep.experiments.experiment import device_description, resolve_device
from deep.losses import OffsetCrossEntropy, TemperatureCrossEntropy
from plumbing.cli import OneLineArgumentParser, add_force_arg, int_sci, run_main
from plumbing.io import atomic_write_json, check_output_file, provenance

PROG = "python -m deep.throughput"
SHAPES = {"cifar10": (3, 32, 50000), "mnist": (1, 28, 60000)}
MODEL_ALIASES = {"lipconvnet": "lipschitz_convnet"}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(model_name: str, shape: str, device: torch.device, *, conv: str = "aol", batch_size: int = 256,
            batches: int = 10, warmup: int = 2, width: int | None = None, seed: int = 0,
            should_stop=None) -> dict | None:
    """Seconds per training step and epochs/s of ``model_name`` on random data of ``shape``.

    ``should_stop()`` (optional) is asked before every step; once it returns True the measurement
    ends: with the steps timed so far if there are any (``batches_timed`` says how many), else
    None."""
    if should_stop is not None and not callable(should_stop):
        raise TypeError(f"should_stop must be a callable returning bool, got {type(should_stop).__name__}")
    name = MODEL_ALIASES.get(model_name, model_name)
    if name not in models.MODEL_NAMES:
        raise ValueError(f"model must be one of {', '.join(list(MODEL_ALIASES) + list(models.MODEL_NAMES))}; "
                         f"got {model_name!r}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}; got {shape!r}")
    c, size, epoch_size = SHAPES[shape]
    fields = {"in_channels": c, "input_size": size, "num_classes": 10}
    if name in ("lipschitz_convnet",):
        fields["conv"] = conv
    if width is not None:
        fields["width" if name == "aol_mlp" else "base_width"] = width
    torch.manual_seed(seed)
    model = models.build_model(name, models.make_config(name, **fields)).to(device)
    crit = TemperatureCrossEntropy() if name == "simple_convnet" else OffsetCrossEntropy()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, c, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (batch_size,), generator=g).to(device)
    model.train()

    def step():
        loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def stop() -> bool:
        return should_stop is not None and bool(should_stop())

    for _ in range(warmup):
        if stop():
            return None
        step()
    _sync(device)
    t0 = time.perf_counter()
    timed = 0
    for _ in range(batches):
        if stop():
            break
        step()
        timed += 1
    _sync(device)
    if timed == 0:
        return None
    batches = timed
    sec = (time.perf_counter() - t0) / batches
    ex_per_s = batch_size / sec
    return {"model": name, "conv": conv if name == "lipschitz_convnet" else None, "shape": shape,
            "batch_size": batch_size, "batches_timed": batches, "seconds_per_step": sec,
            "examples_per_second": ex_per_s, "epoch_size": epoch_size,
            "epochs_per_second": ex_per_s / epoch_size, "seconds_per_epoch": epoch_size / ex_per_s,
            "parameters": sum(p.numel() for p in model.parameters()),
            "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lipconvnet",
                    choices=list(MODEL_ALIASES) + list(models.MODEL_NAMES), help="model to time")
    ap.add_argument("--conv", default="aol", choices=["aol", "cpl"], help="convolution of lipconvnet (default aol)")
    ap.add_argument("--shape", default="cifar10", choices=list(SHAPES),
                    help="image shape and epoch size: cifar10 (3x32x32, 50000) or mnist (1x28x28, 60000)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--batch-size", type=int_sci(1, "--batch-size"), default=256, help="batch size")
    ap.add_argument("--batches", type=int_sci(1, "--batches"), default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int_sci(0, "--warmup"), default=2, help="untimed steps first (default 2)")
    ap.add_argument("--width", type=int_sci(2, "--width"), default=None, help="base width (default the paper's)")
    ap.add_argument("--threads", type=int_sci(1, "--threads"), default=None,
                    help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", default=None, metavar="PATH",
                    help="also write the result as JSON here (default: not written)")
    add_force_arg(ap)
    args = ap.parse_args(argv)
    check_output_file(args.out, "--out", force=args.force)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"timing {args.batches} training steps of {args.model} ({args.shape}, batch {args.batch_size}) "
          f"after {args.warmup} warm-up steps on {args.device}...", flush=True)
    res = measure(args.model, args.shape, device, conv=args.conv, batch_size=args.batch_size,
                  batches=args.batches, warmup=args.warmup, width=args.width)
    res["device"] = device_description(device)
    print(f"{res['model']}{'/' + res['conv'] if res['conv'] else ''} {args.shape} on {res['device']}: "
          f"{res['seconds_per_step'] * 1e3:.1f} ms/step (batch {args.batch_size}), "
          f"{res['examples_per_second']:.0f} examples/s, {res['epochs_per_second']:.5f} epochs/s "
          f"({res['seconds_per_epoch']:.1f} s/epoch of {res['epoch_size']})")
    if args.out:
        res["provenance"] = provenance(wall_seconds=time.perf_counter() - started, device=res["device"])
        atomic_write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
