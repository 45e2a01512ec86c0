"""Alias: ``python -m deep.tradeoff_table`` runs :mod:`deep.experiments.tradeoff_table`."""
import sys

from deep.experiments.tradeoff_table import PROG, main
from plumbing.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
