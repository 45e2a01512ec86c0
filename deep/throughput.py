"""Alias: ``python -m deep.throughput`` runs :mod:`deep.experiments.throughput`."""
import sys

from deep.experiments.throughput import PROG, main
from plumbing.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
