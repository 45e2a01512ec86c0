"""Alias: ``python -m deep.campaign`` runs :mod:`deep.experiments.campaign`."""
import sys

from deep.experiments.campaign import PROG, main
from plumbing.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
