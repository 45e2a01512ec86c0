"""Alias: ``python -m deep.scaling_law`` runs :mod:`deep.experiments.scaling_law`."""
import sys

from deep.experiments.scaling_law import PROG, main
from plumbing.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
