"""Shared fixtures. Real MNIST: $ROBUSTGEN_DATA if set, else ../shared/data (the CI layout);
tests that need it are skipped with a clear reason when neither holds the files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True, print_blob=True)
settings.load_profile("ci")

# Keep the suite predictable on the 2-core CI machine.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")


def _mnist_root() -> Path | None:
    cands = []
    if os.environ.get("ROBUSTGEN_DATA"):
        cands.append(Path(os.environ["ROBUSTGEN_DATA"]))
    cands.append(REPO.parent / "shared" / "data")
    for root in cands:
        for sub in ("", "mnist", "MNIST/raw"):
            if (root / sub / "train-images-idx3-ubyte.gz").is_file() or (root / sub / "train-images-idx3-ubyte").is_file():
                return root / sub if sub else root
    return None


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = _mnist_root()
    if root is None:
        pytest.skip("real MNIST not found: set ROBUSTGEN_DATA or place it in ../shared/data/mnist")
    return root


@pytest.fixture(scope="session")
def mnist_train(mnist_root):
    from plumbing.datasets import load_dataset
    return load_dataset("mnist", "train", mnist_root)


@pytest.fixture(scope="session")
def mnist_test(mnist_root):
    from plumbing.datasets import load_dataset
    return load_dataset("mnist", "test", mnist_root)
