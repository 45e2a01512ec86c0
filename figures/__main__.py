"""``python -m figures [--out DIR] [--only NAME[,NAME]] [--list]``: regenerate every registered
figure as PNG (default folder ``out/figures``; existing PNGs of the same names are replaced, they
are derived from the committed results).

A figure whose result file is missing is skipped; one that fails (e.g. a corrupt result file) is
reported as FAILED with the reason, the other figures are still written, and the command then
exits with status 1.
"""
from __future__ import annotations

import sys

from plumbing.cli import OneLineArgumentParser, csv_list, run_main
from plumbing.io import check_output_dir

from .registry import figures, iter_render

RESUMABLE = "interrupted; figures written so far are complete, rerun the command to draw the rest"


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog="python -m figures", description=__doc__)
    ap.add_argument("--out", default="out/figures", help="output folder (default out/figures)")
    ap.add_argument("--only", type=csv_list(str, "--only"),
                    help="comma-separated figure names (default: all; see --list)")
    ap.add_argument("--list", action="store_true", help="list registered figures and exit")
    args = ap.parse_args(argv)
    if args.list:
        for f in figures():
            print(f"{f.name:32s} {f.paper_ref:22s} {f.description}")
        return 0
    check_output_dir(args.out, "--out")
    failed = []
    for name, status, info in iter_render(args.out, args.only):
        print(f"{name:32s} {status:8s} {info}", flush=True)
        if status == "FAILED":
            failed.append(name)
    if failed:
        print(f"python -m figures: {len(failed)} figure(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m figures"))
