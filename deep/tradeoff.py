"""Alias: ``python -m deep.tradeoff`` runs :mod:`deep.experiments.tradeoff`."""
import sys

from deep.experiments.tradeoff import PROG, main
from plumbing.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
