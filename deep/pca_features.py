"""Alias: ``python -m deep.pca_features`` runs :mod:`deep.experiments.pca_features`."""
import sys

from deep.experiments.pca_features import PROG, main
from plumbing.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
