"""Sweep runner: map an experiment's ``run`` over a list of configs, locally or on Ray.

A sweep is a list of configs (see :mod:`plumbing.experiment`). :func:`run_sweep` returns the list
of results in the order of the configs, whatever engine computed them:

* ``engine="local"`` (default): one run after the other in this process; nothing to install or
  start beyond the core.
* ``engine="ray"``: each run is a Ray task with the resources it needs (``num_gpus=1`` for a CUDA
  run, CPUs otherwise). ``address=None`` starts a local Ray on this machine (``workers`` CPUs);
  ``"auto"`` or ``"ray://host:port"`` joins a running cluster. At most ``workers`` runs are in
  flight. Objects in ``shared`` (data sets, reference arrays) are put in the object store once
  and every task receives the reference, so each node holds one copy however many tasks it runs.
  A task whose worker process dies is retried (``max_retries``) and, given a ``state_dir``,
  resumes from its own checkpoint in ``<state_dir>/<key>.work/``.

With ``state_dir``, each finished run is written atomically to ``<state_dir>/<key>.json`` (its
config and result) as soon as it finishes, and a rerun skips every run whose file is there, so an
interrupted sweep restarts where it stopped. Results pass through JSON in that case, so a fresh
and a resumed sweep return identical values; runs are pure functions of their configs (seeded),
so the two engines return the same numbers bit for bit.

Ray is an optional extra: :func:`require_ray` (used by :func:`check_engine_args`) turns a missing
installation into one line naming ``pip install -e ".[ray]"``. This module imports Ray only when
the Ray engine is asked for.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from plumbing.cli import UsageError, int_sci
from plumbing.experiment import Experiment, config_dict
from plumbing.io import _jsonable, atomic_write_json, read_json

ENGINES = ("local", "ray")
RAY_EXTRA_HINT = 'pip install -e ".[ray]"'
DEFAULT_MAX_RETRIES = 3


# ---- command-line options ------------------------------------------------------------------

def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine``, ``--address`` and ``--workers`` (the same on every sweep command)."""
    g = parser.add_argument_group("execution (see docs/distributed.md)")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: runs one after the other in this process (default); ray: one Ray "
                        f"task per run (needs {RAY_EXTRA_HINT})")
    g.add_argument("--address", default=None,
                   help="with --engine ray: 'auto' or 'ray://host:port' joins a running cluster "
                        "(default: start a local Ray on this machine)")
    g.add_argument("--workers", type=int_sci(1, "--workers"), default=None,
                   help="with --engine ray: at most this many runs at once (default: all CPUs)")


def check_engine_args(args: argparse.Namespace) -> dict:
    """Validate the engine options (before any long work); returns keyword arguments for
    :func:`run_sweep` / :class:`Engine`. Missing Ray -> UsageError naming the extra."""
    engine = getattr(args, "engine", "local")
    address = getattr(args, "address", None)
    workers = getattr(args, "workers", None)
    if engine == "local" and (address is not None or workers is not None):
        raise UsageError("--address and --workers need --engine ray")
    if engine == "ray":
        require_ray()
        if address is not None and address != "auto" and not address.startswith("ray://") \
                and ":" not in address:
            raise UsageError(f"--address must be 'auto', 'ray://host:port' or 'host:port', "
                             f"got {address!r}")
    return {"engine": engine, "address": address, "workers": workers}


def require_ray():
    """Import and return Ray, or raise UsageError with the install command (one line)."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--engine ray needs the optional Ray extra: {RAY_EXTRA_HINT}") from None
    return ray


# ---- the engine ----------------------------------------------------------------------------

class Engine:
    """Context manager around the execution engine. For Ray it starts a local instance (and shuts
    it down on exit) or joins the cluster at ``address`` (and only disconnects)."""

    def __init__(self, engine: str = "local", address: str | None = None,
                 workers: int | None = None):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.engine, self.address, self.workers = engine, address, workers
        self.ray = None
        self._started = False

    def __enter__(self) -> "Engine":
        if self.engine == "ray":
            self.ray = require_ray()
            if not self.ray.is_initialized():
                kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
                if self.address is None:
                    if self.workers is not None:
                        kw["num_cpus"] = self.workers
                    _export_repo_path()      # local workers import this checkout's packages
                else:
                    kw["address"] = self.address
                self.ray.init(**kw)
                self._started = True
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False

    def capacity(self) -> int:
        """How many runs may be in flight: ``workers`` if given, else the cluster's CPUs."""
        if self.engine == "local":
            return 1
        if self.workers is not None:
            return self.workers
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))


def _export_repo_path() -> None:
    """Put this checkout on PYTHONPATH so the worker processes a local Ray starts (they inherit
    the environment) import the same code as this process."""
    import os

    repo = str(Path(__file__).resolve().parent.parent)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if repo not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([repo] + parts)


# ---- running one config --------------------------------------------------------------------

def _execute(run, config, workdir, shared_names, *shared_values):
    """Body of one run (in this process or in a Ray worker)."""
    shared = dict(zip(shared_names, shared_values))
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    return run(config, workdir, **shared)


_REMOTE = None


def _remote_execute(ray):
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(_execute)
    return _REMOTE


def _normalise(result):
    """The value a result has after a round trip through its JSON file."""
    return json.loads(json.dumps(_jsonable(result)))


def result_path(state_dir, experiment: Experiment, config) -> Path:
    return Path(state_dir) / f"{experiment.key(config)}.json"


def load_finished(state_dir, experiment: Experiment, config):
    """The stored result of ``config`` or None. A file that is not valid JSON, or belongs to
    another config, is named in a ValueError (results are never silently overwritten)."""
    path = result_path(state_dir, experiment, config)
    if not path.is_file():
        return None
    try:
        rec = read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"corrupt run result {path}: {exc}; delete it to recompute") from None
    if not isinstance(rec, dict) or rec.get("config") != config_dict(config) or "result" not in rec:
        raise ValueError(f"run result {path} does not belong to this configuration; "
                         "delete it or use another folder")
    return rec["result"]


def run_sweep(experiment: Experiment, configs: Sequence, *, engine: str = "local",
              address: str | None = None, workers: int | None = None, state_dir=None,
              shared: dict | None = None, max_retries: int = DEFAULT_MAX_RETRIES,
              desc: str | None = None, on_result=None) -> list:
    """Results of ``experiment.run`` over ``configs``, in their order (see module docstring).

    ``shared``: keyword arguments passed to every run (put once in the object store with Ray).
    ``on_result(index, config, result)`` is called as each run finishes (progress, printing).
    """
    if not isinstance(experiment, Experiment):
        raise TypeError("experiment must be a plumbing.experiment.Experiment")
    configs = list(configs)
    shared = dict(shared or {})
    keys = [experiment.key(c) for c in configs]
    if len(set(keys)) != len(keys):
        raise ValueError("configs must be distinct (two runs share a key)")
    results: list[Any] = [None] * len(configs)
    todo = []
    for i, cfg in enumerate(configs):
        if state_dir is not None:
            got = load_finished(state_dir, experiment, cfg)
            if got is not None:
                results[i] = got
                if on_result is not None:
                    on_result(i, cfg, got)
                continue
        todo.append(i)

    def workdir(i):
        return None if state_dir is None else str(Path(state_dir) / f"{keys[i]}.work")

    def finish(i, res):
        if state_dir is not None:
            res = _normalise(res)
            atomic_write_json(result_path(state_dir, experiment, configs[i]),
                              {"config": config_dict(configs[i]), "result": res})
            shutil.rmtree(workdir(i), ignore_errors=True)
        results[i] = res
        if on_result is not None:
            on_result(i, configs[i], res)

    if not todo:
        return results
    from plumbing.progress import progress

    bar = progress(total=len(todo), desc=desc or experiment.name)
    names = tuple(shared)
    with Engine(engine, address, workers) as eng:
        if eng.engine == "local":
            for i in todo:
                finish(i, _execute(experiment.run, configs[i], workdir(i), names,
                                   *shared.values()))
                bar.update(1)
        else:
            ray = eng.ray
            refs = [ray.put(v) for v in shared.values()]     # once per sweep, not per task
            remote = _remote_execute(ray)
            cap = eng.capacity()
            pending: dict = {}
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < cap:
                    i = queue.pop(0)
                    res = dict(experiment.resources(configs[i]))
                    task = remote.options(max_retries=max_retries, **res).remote(
                        experiment.run, configs[i], workdir(i), names, *refs)
                    pending[task] = i
                done, _ = ray.wait(list(pending), num_returns=1)
                for t in done:
                    try:
                        res = ray.get(t)
                    except ray.exceptions.RayTaskError as exc:
                        cause = getattr(exc, "cause", None)   # the run's own exception
                        if isinstance(cause, Exception):
                            raise cause from None
                        raise
                    finish(pending.pop(t), res)
                    bar.update(1)
    bar.close()
    return results

