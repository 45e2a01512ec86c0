"""``python -m figures [--out DIR] [--only NAME[,NAME]] [--list]``: regenerate every registered
figure as PNG (default folder ``out/figures``)."""
from __future__ import annotations

import sys

from plumbing.cli import OneLineArgumentParser, csv_list, run_main

from .registry import figures, render


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog="python -m figures", description=__doc__)
    ap.add_argument("--out", default="out/figures", help="output folder (default out/figures)")
    ap.add_argument("--only", type=csv_list(str, "--only"), help="comma-separated figure names")
    ap.add_argument("--list", action="store_true", help="list registered figures and exit")
    args = ap.parse_args(argv)
    if args.list:
        for f in figures():
            print(f"{f.name:32s} {f.paper_ref:22s} {f.description}")
        return 0
    for name, status, info in render(args.out, args.only):
        print(f"{name:32s} {status:8s} {info}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m figures"))
