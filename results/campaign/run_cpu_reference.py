"""REDUCED CPU reference run of the YRZSC MNIST campaign: CNN1 Natural, AT and TRADES(beta = 6),
E = 2 epochs, on the campaign's own code path (``deep.experiments.campaign_yrzsc.run`` with
``archs=("cnn1",)`` and ``methods=("natural", "at", "trades:6")``), to judge the Lipschitz
ordering Natural > AT > TRADES on real MNIST before the GPU campaign.

    python results/campaign/run_cpu_reference.py --out runs/cpu_reference \\
        --json results/campaign/yrzsc_cnn1_cpu_reduced_E2_train10k.json

Reduced against the paper (every reduction is written into the JSON next to the numbers):
a class-balanced training subset (``--train-size``, default 10000 of 60000), 2 epochs instead of
160 (the learning-rate steps compressed to the same fractions), evaluation on class-balanced
subsets (``--test-size`` PGD test examples, ``--train-eval-size`` training examples,
``--mt-size`` per split for the multi-targeted attack, ``--lip-size`` examples for Eq. 3), eager
training steps (the CPU does not profit from a captured step; the GPU campaign times both).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deep.experiments import campaign_yrzsc as cy  # noqa: E402
from deep.experiments.campaign_common import Budget  # noqa: E402
from plumbing.io import atomic_write_json, provenance  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="campaign output folder (resumable)")
    ap.add_argument("--json", required=True, help="summary JSON to write (REDUCED in its name)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--train-eval-size", type=int, default=2000)
    ap.add_argument("--mt-size", type=int, default=100)
    ap.add_argument("--lip-size", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--methods", default="natural,at,trades:6",
                    help="comma-separated (default natural,at,trades:6); a run of a subset into "
                    "another --out trains and evaluates exactly as inside the full run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=4 * 3600.0)
    ap.add_argument("--force", action="store_true", help="replace an existing --json")
    ap.add_argument("--note", default=None, help="a sentence added to the JSON (e.g. how it was run)")
    ap.add_argument("--runs-from", default=None,
                    help="another --out of this script (same settings, other --methods, e.g. run "
                    "in a second process): its finished runs missing here are copied in first, "
                    "after checking that they were made with the same sizes, epochs, lr and seed")
    args = ap.parse_args()
    if "reduced" not in Path(args.json).name.lower():
        ap.error("--json: the file name must say REDUCED (e.g. yrzsc_cnn1_cpu_reduced_E2.json)")
    if Path(args.json).exists() and not args.force:
        ap.error(f"--json: {args.json} exists (use --force to replace it)")
    torch.set_num_threads(args.threads)
    cfg = cy.YrzscConfig(out=Path(args.out), device="cpu", data_root=args.data_root, seed=0,
                         archs=("cnn1",), methods=tuple(args.methods.split(",")),
                         epochs=args.epochs, train_size=args.train_size,
                         test_size=args.test_size, train_eval_size=args.train_eval_size,
                         mt_eval_size=args.mt_size, lip_size=args.lip_size, pilot_steps=3,
                         step_mode="eager")
    started = time.perf_counter()
    copied = []
    if args.runs_from:
        import shutil
        runs_dir = cfg.root / "runs"
        runs_dir.mkdir(parents=True, exist_ok=True)
        for spec in cfg.methods:
            name = f"{cy.run_name('cnn1', cfg.method_config(spec))}.json"
            src = Path(args.runs_from) / cy.CAMPAIGN / "runs" / name
            if (runs_dir / name).exists() or not src.is_file():
                continue
            r = json.loads(src.read_text())
            want = {"n_train": args.train_size, "epochs": args.epochs, "lr": cfg.lr,
                    "n_test": args.test_size}
            got = {k: r.get(k) for k in want}
            n_eval = r.get("n_eval", {})
            if (got != want or n_eval.get("train") != args.train_eval_size
                    or n_eval.get("mt_test") != args.mt_size or n_eval.get("lipschitz") != args.lip_size
                    or r.get("provenance", {}).get("seed") != 0):
                ap.error(f"--runs-from: {src} was made with other settings ({got}, {n_eval})")
            shutil.copyfile(src, runs_dir / name)
            copied.append(str(src))
    status = cy.run(cfg, Budget(args.budget_s))
    rows = {}
    for spec in cfg.methods:
        path = cfg.root / "runs" / f"{cy.run_name('cnn1', cfg.method_config(spec))}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        rows[r["label"]] = {"pgd": r["pgd"], "mt": r["mt"], "test_lipschitz": r["test_lipschitz"],
                            "history": r["history"], "group_train_seconds": r["group_train_seconds"],
                            "eval_seconds": r["eval_seconds"], "step_mode": r["step_mode"]}
        devs = r["deviations"]
    order = ["Natural", "AT", "TRADES(β=6)"]
    lips = [rows[k]["test_lipschitz"] for k in order if k in rows]
    summary = {
        "label": "REDUCED",
        "note": (f"REDUCED CPU reference run, not a reproduction of YRZSC Table 2: CNN1, "
                 f"{args.epochs} epochs (paper: 160) on a class-balanced subset of "
                 f"{args.train_size} MNIST training images (paper: 60000), evaluation on "
                 f"class-balanced subsets (PGD test {args.test_size}, train {args.train_eval_size}, "
                 f"MT {args.mt_size} per split, Eq. 3 on {args.lip_size} test images)"),
        "reduced": True, "campaign": cy.CAMPAIGN, "model": "cnn1", "epochs": args.epochs,
        "train_subset": {"size": args.train_size, "selection": "class-balanced, seed 0 "
                         "(deep.data.load_tensors subset)"},
        "eval_sizes": {"pgd_test": args.test_size, "pgd_train": args.train_eval_size,
                       "mt_per_split": args.mt_size, "lipschitz": args.lip_size},
        "rows": rows,
        "lipschitz_order": {"methods": [k for k in order if k in rows], "values": lips,
                            "natural_gt_at_gt_trades": (len(lips) == 3 and lips[0] > lips[1] > lips[2])},
        "deviations": devs if rows else [],
        "status": status,
        "runs_copied_from": copied,
        "run_note": args.note,
        "command": " ".join([sys.executable, *sys.argv]),
        "threads": args.threads,
        "provenance": provenance(seed=0, wall_seconds=time.perf_counter() - started, device="cpu"),
    }
    atomic_write_json(args.json, summary)
    print(json.dumps({k: v for k, v in summary["lipschitz_order"].items()}))
    for k in order:
        if k in rows:
            p = rows[k]["pgd"]
            print(f"{k:12s} test {p['test_acc']:.2f}  adv test {p['adv_test_acc']:.2f}  "
                  f"MT adv test {rows[k]['mt']['adv_test_acc']:.2f}  Lipschitz {rows[k]['test_lipschitz']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
