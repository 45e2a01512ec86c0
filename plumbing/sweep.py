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

Joining a cluster never hangs: :func:`check_engine_args` checks the address before any work
(``auto``, ``host:port`` with a port in 1..65535, or ``ray://host:port``, which needs Ray Client,
``ray[client]``) and tries a TCP connection to it (``CONNECT_PROBE_S`` seconds); ``ray.init`` is
then given ``RAY_CONNECT_TIMEOUT_S`` seconds (environment variable
``ROBUSTGEN_RAY_CONNECT_TIMEOUT_S``), after which the command ends with one line and exit status
2, and SIGTERM received while connecting ends it at once (exit status 143).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from plumbing.cli import UsageError, int_sci
from plumbing.experiment import Experiment, config_dict
from plumbing.io import _jsonable, atomic_write_json, read_json

ENGINES = ("local", "ray")
RAY_EXTRA_HINT = 'pip install -e ".[ray]"'
DEFAULT_MAX_RETRIES = 3
CONNECT_PROBE_S = 5.0          # TCP connect timeout of the up-front check of --address
RAY_CONNECT_TIMEOUT_S = 60.0   # bound on ray.init joining a cluster
RAY_CLIENT_HINT = 'pip install -e ".[ray]" (it installs ray[client])'


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
        if address is not None:
            check_ray_address(address)
    return {"engine": engine, "address": address, "workers": workers}


def parse_host_port(text: str, option: str = "--address") -> tuple[str, int]:
    """``host:port`` -> (host, port); UsageError unless the host is non-empty and the port an
    integer in 1..65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]"):
        raise UsageError(f"{option} must be 'auto', 'ray://host:port' or 'host:port', got {text!r} "
                         f"(no host:port)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"{option} {text}: the port must be an integer in 1..65535, got {port!r}")
    return host.strip("[]"), int(port)


def _resolve_auto() -> str | None:
    """The ``host:port`` that Ray's ``auto`` means here (RAY_ADDRESS, else the cluster last
    started on this machine), or None if there is none."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return env
    try:
        from ray._private.services import canonicalize_bootstrap_address
        return canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError, ImportError, AttributeError, OSError):
        return None


def _probe(host: str, port: int, shown: str) -> None:
    """A TCP connection to ``host:port`` within CONNECT_PROBE_S seconds, else one line."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_PROBE_S):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise UsageError(f"--address {shown}: no Ray cluster reachable at {host}:{port} ({why}); "
                         f"start one with 'ray start --head' or check the address") from None


def check_ray_address(address: str) -> None:
    """Check ``--address`` before any work: its form, Ray Client for ``ray://``, and that
    something answers at the host and port (see module docstring)."""
    if address == "auto":
        resolved = _resolve_auto()
        if resolved is None:
            raise UsageError("--address auto: no running Ray cluster found on this machine "
                             "(start one with 'ray start --head', or set RAY_ADDRESS, or leave "
                             "--address out to start a local Ray)")
        if "://" in resolved:
            return check_ray_address(resolved)
        host, port = parse_host_port(resolved, "RAY_ADDRESS")
        _probe(host, port, f"auto ({resolved})")
        return
    if address.startswith("ray://"):
        host, port = parse_host_port(address[len("ray://"):])
        import importlib.util

        if importlib.util.find_spec("grpc") is None:
            raise UsageError(f"--address {address}: ray:// addresses need Ray Client (ray[client]), "
                             f"which is not installed: {RAY_CLIENT_HINT}")
        _probe(host, port, address)
        return
    if "://" in address:
        raise UsageError(f"--address must be 'auto', 'ray://host:port' or 'host:port', got "
                         f"{address!r}")
    host, port = parse_host_port(address)
    _probe(host, port, address)


def ray_connect_timeout() -> float:
    raw = os.environ.get("ROBUSTGEN_RAY_CONNECT_TIMEOUT_S")
    if raw is None or raw.strip() == "":
        return RAY_CONNECT_TIMEOUT_S
    try:
        val = float(raw)
    except ValueError:
        val = -1.0
    if not 0 < val <= 86400:
        raise UsageError(f"environment variable ROBUSTGEN_RAY_CONNECT_TIMEOUT_S must be a number "
                         f"of seconds in (0, 86400], got {raw!r}")
    return val


def _bounded_init(ray, kw: dict, address: str) -> None:
    """``ray.init(**kw)`` joining ``address``, bounded in time and interruptible by SIGTERM and
    Ctrl-C.

    Ray blocks in native code while it waits for a cluster (retrying for minutes), so Python
    signal handlers would only run after it gives up. A watchdog thread therefore watches the
    signal wakeup file descriptor (:func:`signal.set_wakeup_fd`: the C-level handler writes each
    signal's number there at once, whatever the main thread is doing) and the deadline; either
    ends the process at once with one line (exit 143 on SIGTERM, 130 on Ctrl-C, 2 when the
    deadline passes). Nothing has been computed yet, so nothing is lost."""
    timeout = ray_connect_timeout()
    if threading.current_thread() is not threading.main_thread():
        ray.init(**kw)
        return
    import select
    import time

    prog = _prog()
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    done = threading.Event()

    def note(signum, frame):          # the watchdog acts; the main thread may be stuck in Ray
        pass

    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, note)   # a Python-level handler feeds the wakeup fd
    old_fd = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)

    def watch():
        deadline = time.monotonic() + timeout
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                _exit_line(f"{prog}: error: --address {address}: no Ray cluster answered within "
                           f"{timeout:g} s (ROBUSTGEN_RAY_CONNECT_TIMEOUT_S); check that "
                           f"'ray start --head' runs there with the same Ray version", 2)
            ready, _, _ = select.select([rfd], [], [], max(0.0, min(0.2, left)))
            if not ready:
                continue
            for signum in os.read(rfd, 64):
                if signum == signal.SIGTERM:
                    _exit_line(f"{prog}: stopped by SIGTERM while connecting to the Ray cluster "
                               f"at {address}; nothing was computed", 128 + signal.SIGTERM)
                if signum == signal.SIGINT:
                    _exit_line(f"interrupted while connecting to the Ray cluster at {address}; "
                               f"nothing was computed", 130)

    watcher = threading.Thread(target=watch, name="ray-connect-watchdog", daemon=True)
    # Ray's native code logs each failed retry ("Failed to connect to GCS ...") on stderr; while
    # joining, stderr goes to /dev/null and our own lines to the saved descriptor
    sys.stderr.flush()
    _STDERR[0] = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    watcher.start()
    try:
        ray.init(**kw)
    finally:
        done.set()
        watcher.join()
        os.dup2(_STDERR[0], 2)
        os.close(_STDERR[0])
        _STDERR[0] = None
        signal.set_wakeup_fd(old_fd)
        if signal.getsignal(signal.SIGTERM) is note:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        os.close(rfd)
        os.close(wfd)


def _prog() -> str:
    """The command's name as the one-line errors show it ("python -m simulate.separation")."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "robustgen"


_STDERR: list = [None]      # the real stderr while _bounded_init silences Ray's native logging


def _exit_line(line: str, status: int) -> None:
    try:
        fd = _STDERR[0] if _STDERR[0] is not None else 2
        os.write(fd, (line + "\n").encode("utf-8", "replace"))
    finally:
        os._exit(status)


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
                if self.address is None:
                    self.ray.init(**kw)
                else:
                    try:
                        _bounded_init(self.ray, kw, self.address)
                    except ConnectionError as exc:
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        raise UsageError(f"--address {self.address}: cannot join a Ray cluster "
                                         f"({first[:200]})") from None
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
    if experiment.check_result is not None:
        problem = experiment.check_result(rec["result"])
        if problem:
            from plumbing.io import CorruptFileError

            raise CorruptFileError(f"run result {path} is incomplete ({problem}); delete it to "
                                   "recompute")
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

