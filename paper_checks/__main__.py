"""``python -m paper_checks [--slow] [--only ID[,ID]] [--json PATH] [--list]``

Prints claim | claimed | measured | verdict for every registered claim of the two papers (fast
ones by default). Exit status 0 unless a claim FAILs or ERRORs (then 1); bad flags exit 2.
"""
from __future__ import annotations

import sys

from plumbing.cli import OneLineArgumentParser, csv_list, run_main
from plumbing.io import atomic_write_json, provenance

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
    ap.add_argument("--only", type=csv_list(str, "--only"), help="comma-separated claim ids")
    ap.add_argument("--json", metavar="PATH", help="write all rows as JSON")
    ap.add_argument("--list", action="store_true", help="list the registered claims and exit")
    args = ap.parse_args(argv)
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
