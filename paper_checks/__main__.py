"""``python -m paper_checks [--slow] [--only ID[,ID]] [--data-root DIR] [--json PATH [--force]] [--list]``

Prints claim | kind | claimed | measured | verdict for every registered claim of the two papers
(fast ones by default): first the reproductions (measured numbers that could disagree with the
papers), then the identities (checks of the project's own algebra, never counted as
reproductions). The last line counts them separately; its headline is the reproductions, with
approximate-data (APPROX-*), reduced-run (REDUCED-*, APPROX-REDUCED-*) and not-judged
(REDUCED-NOT-JUDGED) verdicts counted apart from PASS/FAIL. Exit status 0 unless a claim FAILs
or ERRORs (then 1); bad flags exit 2.
"""
from __future__ import annotations

import sys

from plumbing.cli import OneLineArgumentParser, UsageError, add_force_arg, csv_list, run_main
from plumbing.io import atomic_write_json, check_output_file, provenance

from .registry import KINDS, claims, run_claims, summarise, summary_line


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_rows(rows: list[dict]) -> str:
    """The table, reproductions first and identities after, and the summary line."""
    w_id = max([len(r["id"]) for r in rows] + [5])
    w_wh = max([len(r["paper"] + " " + r["location"]) for r in rows] + [5])
    hdr = (f"{'claim':{w_id}s} | {'kind':12s} | {'where':{w_wh}s} | {'claimed':>10s} | "
           f"{'measured':>10s} | verdict")
    lines = []
    for kind, title in zip(KINDS, ("Reproductions (measured; could disagree with the paper)",
                                   "Identities (checks of our own algebra; not reproductions)")):
        part = [r for r in rows if r["kind"] == kind]
        if not part:
            continue
        lines += ["" if lines else None, title, hdr, "-" * (len(hdr) + 20)]
        for r in part:
            lines.append(f"{r['id']:{w_id}s} | {r['kind']:12s} | "
                         f"{r['paper'] + ' ' + r['location']:{w_wh}s} | {_fmt(r['claimed']):>10s} | "
                         f"{_fmt(r['measured']):>10s} | {r['verdict']}"
                         + (f"  ({r['detail']})" if r.get('detail') else ""))
    lines += ["", summary_line(rows)]
    return "\n".join(x for x in lines if x is not None)


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
            print(f"{c.id:40s} {c.kind:12s} {c.cost:5s} {c.paper:6s} {c.location:14s} {c.claim}")
        return 0
    rows = run_claims(include_slow=args.slow, only=args.only)
    print(format_rows(rows))
    if args.json:
        atomic_write_json(args.json, {"provenance": provenance(), "summary": summarise(rows),
                                      "summary_line": summary_line(rows), "rows": rows})
    return 1 if any(r["verdict"] in ("FAIL", "ERROR") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m paper_checks"))
