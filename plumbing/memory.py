"""Up-front memory estimates: a command refuses a size that cannot fit before it starts computing
(project standards: bad input exits 2 with one line, before long work), instead of failing with
a MemoryError after minutes.

The estimators count the arrays each computation materialises at its peak (sizes in bytes, with
the factor noted at each); they are estimates, deliberately on the high side, compared with the
memory the operating system reports as available (``MemAvailable`` of /proc/meminfo, else
``os.sysconf``). No third-party dependency.
"""
from __future__ import annotations

import math
import os

GIB = 1024 ** 3
MIB = 1024 ** 2
# theory.knn.nearest_neighbor keeps its l-inf difference tensor near 2^25 float64 entries
KNN_LINF_BLOCK_BYTES = 8 * (1 << 25)
KNN_QUERY_BLOCK = 1024


def available_bytes() -> int | None:
    """Memory available to a new allocation now, in bytes (None if the system does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """'1.5 GiB', '12 MiB', '3.2e+11 GiB' (readable for absurd sizes too)."""
    if n >= 1e6 * GIB:
        return f"{n / GIB:.2g} GiB"
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{max(1.0, n / MIB):.0f} MiB"


def check_fits(needed: float, what: str, advice: str = "") -> None:
    """Raise ValueError (one line) if ``needed`` bytes exceed the available memory.

    ``what`` names the options responsible, e.g. ``"--n 1000000000 with --test-size 2000"``;
    ``advice`` is appended (e.g. ``"lower --n"``). Passes when the system reports nothing."""
    avail = available_bytes()
    if avail is None or needed <= avail:
        return
    msg = (f"{what} needs about {format_bytes(needed)} of memory, this machine has "
           f"{format_bytes(avail)} available")
    raise ValueError(msg + (f"; {advice}" if advice else ""))


def _finite(x: float) -> float:
    return x if math.isfinite(x) else float("inf")


def no_free_robustness_bytes(n: int, test_size: int) -> float:
    """Peak of one trial of ``theory.hypercube_simulation`` (trials run one after the other).

    Measured peak resident memory on the reference machine: about 33 bytes per training pattern
    (n = 4e6) and 520 bytes per test point (test_size = 1e6) above a 200 MiB interpreter; the
    estimate doubles the per-point figures."""
    return _finite(200 * MIB + 64.0 * n + 1040.0 * test_size)


def nn_covering_bytes(n: int, n_test: int, d: int, classes: int) -> float:
    """Peak of one trial of ``theory.box_covering.simulate_theorem2`` at training size ``n``.

    Training set (n x d float64 points, labels, box indices, sorting copies of np.isin), test
    set likewise plus its (n_test x classes) class distances and per-query outputs, and the
    l-inf difference block of ``theory.knn.nearest_neighbor``; times 1.5."""
    per_train = 8.0 * d * 3 + 32
    per_test = 8.0 * d * 3 + 8.0 * classes + 64
    return _finite(1.5 * (n * per_train + n_test * per_test) + KNN_LINF_BLOCK_BYTES + 200 * MIB)


def nn_distance_bytes(n_max: int, queries: int, features: int, *, itemsize: int = 8,
                      angular: bool = False) -> float:
    """Peak of ``simulate.nn_distance_scaling``: the largest training set and the queries
    (``features`` values each; a normalised copy of both for the angular distance), the
    (query block x n) distance block of the l2 search in float64, the l-inf block, and the
    per-query outputs."""
    copies = 2 if angular else 1
    data = float(itemsize) * features * (n_max + queries) * copies
    block = 8.0 * min(queries, KNN_QUERY_BLOCK) * n_max
    return _finite(data + block + KNN_LINF_BLOCK_BYTES + 24.0 * queries + 200 * MIB)
