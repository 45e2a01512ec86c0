"""``python -m paper_checks [--slow] [--only ID[,ID]] [--data-root DIR] [--json PATH [--force]] [--list]``

Prints claim | claimed | measured | verdict for every registered claim of the two papers (fast
ones by default). Exit status 0 unless a claim FAILs or ERRORs (then 1); bad flags exit 2.
"""
from __future__ import annotations

import sys

from plumbing.cli import OneLineArgumentParser, UsageError, add_force_arg, csv_list, run_main
from plumbing.io import atomic_write_json, check_output_file, provenance

from .registry import claims, run_claims


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog="python -m paper_checks", description=__doc__)
    ap.add_argument("--slow", action="store_true", help="also run slow and gpu-class claims")
    ap.add_argument("--only", type=csv_list(str, "--only"),
                    help="comma-separated claim ids (default: all fast claims, with --slow all)")
    ap.add_argument("--data-root", metavar="DIR", default=None,
                    help="data folder for the claims that load datasets (default: $ROBUSTGEN_DATA, "
                         "else ~/.robustgen/data)")
    ap.add_argument("--json", metavar="PATH", help="write all rows as JSON (default: not written)")
    add_force_arg(ap)
    ap.add_argument("--list", action="store_true", help="list the registered claims and exit")
    args = ap.parse_args(argv)
    check_output_file(args.json, "--json", force=args.force)
    if args.data_root is not None:
        import os
        from pathlib import Path

        if not Path(args.data_root).expanduser().is_dir():
            raise UsageError(f"--data-root {args.data_root}: no such folder")
        os.environ["ROBUSTGEN_DATA"] = str(Path(args.data_root).expanduser().resolve())
    if args.list:
        for c in claims():
            print(f"{c.id:40s} {c.cost:5s} {c.paper:6s} {c.location:14s} {c.claim}")
        return 0
    rows = run_claims(include_slow=args.slow, only=args.only)
    w_id = max([len(r["id"]) for r in rows] + [5])
    print(f"{'claim':{w_id}s} | {'where':14s} | {'claimed':>10s} | {'measured':>10s} | verdict")
    print("-" * (w_id + 56))
    for r in rows:
        print(f"{r['id']:{w_id}s} | {r['paper'] + ' ' + r['location']:14s} | {_fmt(r['claimed']):>10s} | "
              f"{_fmt(r['measured']):>10s} | {r['verdict']}" + (f"  ({r['detail']})" if r.get('detail') else ""))
    counts = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(", ".join(f"{v}: {n}" for v, n in sorted(counts.items())))
    if args.json:
        atomic_write_json(args.json, {"provenance": provenance(), "rows": rows})
    return 1 if any(r["verdict"] in ("FAIL", "ERROR") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m paper_checks"))
