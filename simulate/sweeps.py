"""The simulate/ experiments in the one experiment interface (:mod:`plumbing.experiment`): a
validated config, a pure ``run(config, workdir) -> dict``, and the list of configs of each sweep,
mapped by :func:`plumbing.sweep.run_sweep` locally or on Ray.

This module is what a Ray worker imports, so it stays light: the theory modules are imported
inside the run functions.
"""
from __future__ import annotations

from dataclasses import dataclass

from plumbing.experiment import ConfigMixin, Experiment
from plumbing.validation import check_choice, check_float, check_int


# ---- P&L Theorem 1 (No Free Robustness) sweep: one run per n at fixed d --------------------

def thm1_run(config, workdir=None) -> dict:
    """One point of the sweep: :func:`theory.hypercube_simulation.run_trials` on ``config`` (a
    ``Thm1Config``). Pure: the counter-based keys make it a function of the config alone. The
    unit of checkpointing is the whole point (its per-run result file)."""
    from theory.hypercube_simulation import run_trials

    return run_trials(config)


def missing_keys(result, keys, *, nested: dict | None = None) -> str | None:
    """None if the dict ``result`` holds every key of ``keys`` (and, for each ``nested`` key, a
    list of dicts holding its keys), else a short description of what is missing."""
    if not isinstance(result, dict):
        return f"not a JSON object but {type(result).__name__}"
    miss = [k for k in keys if k not in result]
    for k, sub in (nested or {}).items():
        rows = result.get(k)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            miss.append(f"{k} (list of objects)")
            continue
        miss += sorted({f"{k}[].{s}" for r in rows for s in sub if s not in r})
    return f"lacks {', '.join(miss[:6])}" if miss else None


THM1_RESULT_KEYS = ("n", "d", "trials", "test_size", "seed", "bound", "bound_applies",
                    "bound_tight", "theorem_threshold", "learners")
THM1_LEARNER_KEYS = ("name", "role", "robust_accuracy", "robust_accuracy_ci95")


def thm1_check(result) -> str | None:
    return missing_keys(result, THM1_RESULT_KEYS, nested={"learners": THM1_LEARNER_KEYS})


THM1 = Experiment("thm1", run=thm1_run, check_result=thm1_check)


def thm1_sweep_configs(base, ns) -> list:
    """The sweep as a list of configs: ``base`` at every n of ``ns`` (default: powers of two
    around 2^(d-1), see ``theory.hypercube_simulation.default_sweep_ns``)."""
    from dataclasses import replace

    from theory.hypercube_simulation import SweepConfig

    sc = SweepConfig(base=base, ns=tuple(ns or ()))
    return [replace(sc.base, n=n) for n in sc.ns]


def thm1_sweep_result(base, points: list) -> dict:
    """The sweep's JSON (same layout as ``theory.hypercube_simulation.run_sweep``)."""
    b = base
    return {
        "theorem": "P&L Theorem 1 (No Free Robustness): robust accuracy against n at fixed d",
        "mode": "sweep", "d": b.d, "delta": b.delta, "eps": b.eps, "trials": b.trials,
        "test_size": b.test_size, "seed": b.seed, "k": b.k, "learners_requested": list(b.learners),
        "n_patterns": 2 ** (b.d - 1), "points": points,
    }




# ---- P&L Theorem 2: 1-NN certified robust accuracy, one run per (d, delta, n) ----------------

THM2_DISTRIBUTIONS = ("grid", "uniform")


@dataclass(frozen=True)
class Thm2Config(ConfigMixin):
    """One row of ``python -m simulate.nn_covering``: ``trials`` training sets of size ``n`` of
    the delta-robust distribution (``distribution``, ``cells`` per axis already resolved,
    ``classes``, labelling seed ``dist_seed``), 1-NN certified at delta/2 (P&L Theorem 2,
    supplementary Section 12); ``seed`` is the row's own seed."""
    d: int
    delta: float
    n: int
    trials: int = 5
    n_test: int = 500
    distribution: str = "grid"
    cells: int = 1
    classes: int = 2
    dist_seed: int = 0
    seed: int = 0
    KEY_PREFIX = "thm2"

    def __post_init__(self):
        check_int("d", self.d, min_value=1)
        check_float("delta", self.delta, low=0.0, high=1.0, low_open=True, high_open=True)
        check_int("n", self.n, min_value=1)
        check_int("trials", self.trials, min_value=2)
        check_int("n_test", self.n_test, min_value=1)
        check_choice("distribution", self.distribution, THM2_DISTRIBUTIONS)
        check_int("cells", self.cells, min_value=1)
        check_int("classes", self.classes, min_value=1)
        check_int("dist_seed", self.dist_seed, min_value=0)
        check_int("seed", self.seed, min_value=0)


def thm2_distribution(config: Thm2Config):
    """The distribution of a row (as ``simulate.nn_covering.make_distribution`` builds it)."""
    from theory.robust_distributions import GridRobustDistribution, uniform_cube

    if config.distribution == "uniform":
        return uniform_cube(config.d, config.delta)
    return GridRobustDistribution(d=config.d, delta=config.delta, cells_per_axis=config.cells,
                                  n_classes=config.classes, seed=config.dist_seed)


def thm2_run(config: Thm2Config, workdir=None) -> dict:
    """One row: ``theory.box_covering.simulate_theorem2`` plus the exact coverage and the bound."""
    from theory.box_covering import (coverage_bound, simulate_theorem2, theorem2_sample_size,
                                     uniform_coverage_exact)

    c = config
    res = simulate_theorem2(thm2_distribution(c).sample, c.d, c.delta, c.n, trials=c.trials,
                            n_test=c.n_test, seed=c.seed)
    return {
        "d": c.d, "delta": c.delta, "n": c.n,
        "n_over_thm2": c.n / theorem2_sample_size(c.d, c.delta),
        "certified_robust_accuracy": res.certified_robust_accuracy.mean,
        "certified_robust_accuracy_stderr": res.certified_robust_accuracy.stderr,
        "near_fraction": res.near_fraction.mean,
        "coverage": res.coverage.mean,
        "coverage_stderr": res.coverage.stderr,
        "coverage_uniform_exact": uniform_coverage_exact(c.d, c.delta, c.n),
        "coverage_bound": coverage_bound(c.d, c.delta, c.n),
    }


THM2_RESULT_KEYS = ("d", "delta", "n", "n_over_thm2", "certified_robust_accuracy",
                    "certified_robust_accuracy_stderr", "near_fraction", "coverage",
                    "coverage_stderr", "coverage_uniform_exact", "coverage_bound")


def thm2_check(result) -> str | None:
    return missing_keys(result, THM2_RESULT_KEYS)


THM2 = Experiment("thm2", run=thm2_run, check_result=thm2_check)


# ---- YRZSC Table 1 separation, sharded over the queries ------------------------------------

@dataclass(frozen=True)
class SeparationShard(ConfigMixin):
    """Queries ``[start, stop)`` of one side of a Table 1 row: ``part`` "train_train" (queries =
    training set) or "test_train" (queries = test set); references are always the training set."""
    part: str
    start: int
    stop: int
    norm: str = "inf"
    KEY_PREFIX = "separation"

    def __post_init__(self):
        check_choice("part", self.part, SEPARATION_PARTS)
        check_int("start", self.start, min_value=0)
        check_int("stop", self.stop, min_value=self.start + 1)
        check_choice("norm", self.norm, ("inf", "2"))


SEPARATION_PARTS = ("train_train", "test_train")


def separation_shard_run(config: SeparationShard, workdir=None, *, train_x, train_y, test_x=None,
                         test_y=None):
    """Exact nearest-other-label distances of one shard of queries against the whole training
    set (``theory.separation.nearest_other_label``; every query is searched independently, so the
    shards together give the single-process answer). Returns (distances, indices)."""
    from theory.separation import nearest_other_label

    if config.part == "train_train":
        q, ql = train_x, train_y
    else:
        q, ql = test_x, test_y
    s = slice(config.start, config.stop)
    return nearest_other_label(q[s], ql[s], train_x, train_y, config.norm)


SEPARATION = Experiment("separation", run=separation_shard_run)


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` (at most ``n``) contiguous, nearly equal ranges covering 0..n-1."""
    n = check_int("n", n, min_value=1)
    shards = min(check_int("shards", shards, min_value=1), n)
    edges = [n * k // shards for k in range(shards + 1)]
    return list(zip(edges[:-1], edges[1:]))


def separation_row_sharded(train_x, train_y, test_x=None, test_y=None, norm: str = "inf", *,
                           engine: str = "local", address=None, workers=None,
                           shards: int | None = None):
    """``theory.separation.separation_row`` with the queries split into shards mapped by
    :func:`plumbing.sweep.run_sweep` (the training and test arrays go to the object store once).
    ``engine="local"`` with no ``shards`` is exactly ``separation_row``."""
    import numpy as np

    from plumbing.sweep import Engine, run_sweep
    from theory.separation import SeparationRow, separation_row

    if engine == "local" and shards is None:
        return separation_row(train_x, train_y, test_x, test_y, norm)
    tx, ty = np.asarray(train_x), np.asarray(train_y)
    scale = 255.0 if tx.dtype == np.uint8 else 1.0      # as separation_row's default
    if len(np.unique(ty)) < 2:
        raise ValueError("train_y must contain at least two classes (separation is undefined "
                         "for one class)")
    shared = {"train_x": tx, "train_y": ty}
    with Engine(engine, address, workers) as eng:
        k = shards or 2 * eng.capacity()
        configs = [SeparationShard("train_train", a, b, norm) for a, b in shard_bounds(len(tx), k)]
        if test_x is not None:
            shared.update(test_x=np.asarray(test_x), test_y=np.asarray(test_y))
            configs += [SeparationShard("test_train", a, b, norm)
                        for a, b in shard_bounds(len(shared["test_x"]), k)]
        out = run_sweep(SEPARATION, configs, engine=engine, address=address, workers=workers,
                        shared=shared, desc="separation shards")

    def part(name):
        got = [r for c, r in zip(configs, out) if c.part == name]
        if not got:
            return np.empty(0), np.empty(0, np.int64)
        return np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])

    tt, tti = part("train_train")
    ts, tsi = part("test_train")
    return SeparationRow(norm, scale, tt / scale, tti, ts / scale, tsi)


# ---- exact robust radius of 1-NN (theory.nn_exact), sharded over the test points -----------

NN_EXACT_FIELDS = ("prediction", "radius", "target", "lower_bound", "half_gap_l2", "n_solved",
                   "status")


@dataclass(frozen=True)
class NnExactShard(ConfigMixin):
    """Test points ``[start, stop)`` of a ``python -m simulate.nn_exact_robustness`` run (one
    checkpoint chunk): their exact 1-NN radii in ``norm``, in the pixel box when ``box``."""
    start: int
    stop: int
    norm: str = "inf"
    box: bool = True
    KEY_PREFIX = "nn-exact"

    def __post_init__(self):
        check_int("start", self.start, min_value=0)
        check_int("stop", self.stop, min_value=self.start + 1)
        check_choice("norm", self.norm, ("inf", "2"))
        if not isinstance(self.box, bool):
            raise TypeError(f"box must be a bool, got {type(self.box).__name__}")


def nn_exact_chunk(index, test_x, test_y, start: int, stop: int, norm: str) -> dict:
    """One chunk of test points (uint8 images, labels) against the prepared training set
    ``index`` (``theory.nn_exact.build_index`` on the images / 255): the per-point columns of
    :class:`theory.nn_exact.ExactRadiusResult` as lists, plus the seconds it took. Every query is
    searched on its own and the bulk products run over blocks of 128 queries from ``start``, so a
    chunk gives the same numbers wherever it runs."""
    import time

    from theory.nn_exact import exact_1nn

    t = time.perf_counter()
    q = test_x[start:stop] / 255.0
    res = exact_1nn(q, index.raw, index.y, norm, box=index.box_raw, labels=test_y[start:stop],
                    index=index, chunk=128)
    rec = {f: getattr(res, f).tolist() for f in NN_EXACT_FIELDS}
    rec["seconds"] = time.perf_counter() - t
    return rec


def nn_exact_shard_run(config: NnExactShard, workdir=None, *, index, test_x, test_y) -> dict:
    """A Ray task (or a local call) of one chunk: :func:`nn_exact_chunk` with the prepared index
    and the test set from the object store. One task holds one CPU, so numba kernels run on one
    thread (the numbers do not depend on it)."""
    import numba

    if (index.box_raw is not None) != config.box or index.norm != config.norm:
        raise ValueError("the index was built for another norm or threat model than the shard")
    numba.set_num_threads(1)
    return nn_exact_chunk(index, test_x, test_y, config.start, config.stop, config.norm)


def nn_exact_check(result) -> str | None:
    return missing_keys(result, NN_EXACT_FIELDS + ("seconds",))


NN_EXACT = Experiment("nn-exact", run=nn_exact_shard_run, check_result=nn_exact_check)
