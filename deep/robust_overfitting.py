"""Alias: ``python -m deep.robust_overfitting`` runs :mod:`deep.experiments.robust_overfitting`."""
import sys

from deep.experiments.robust_overfitting import PROG, main
from plumbing.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
