"""The one experiment interface: a validated config, a pure ``run(config) -> dict``, a thin CLI.

Every experiment of the project (Theorem 1 and 2 Monte Carlo sweeps, separation, the P&L and
YRZSC network experiments) is described by three things:

* a **config**: a frozen dataclass whose ``__post_init__`` validates every field (ValueError /
  TypeError naming the field and its range). :func:`config_dict` turns it into JSON-ready data
  and :func:`config_key` into a stable file-name key (a hash of that JSON), so a finished run is
  recognised by its key alone;
* a **run**: a module-level function ``run(config, workdir=None) -> dict`` that is pure (same
  config, same numbers) and, given a ``workdir``, checkpoints there and resumes from it;
* a **thin CLI** that parses arguments into configs and hands them to :mod:`plumbing.sweep`.

:class:`Experiment` bundles a run function with what the scheduler needs to know about it (the
resources one run takes). :class:`ConfigMixin` gives new config dataclasses ``asdict()``,
``key()`` and ``from_dict()``; existing frozen dataclasses work with the free functions directly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from plumbing.io import _jsonable


def config_dict(config) -> dict:
    """JSON-ready dict of a config dataclass (tuples become lists, nested dataclasses dicts)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    return _jsonable(dataclasses.asdict(config))


def config_key(config, prefix: str | None = None) -> str:
    """Stable key of a config: ``<prefix>-<12 hex digits of sha256(canonical JSON)>``.

    The JSON includes the dataclass name, so two experiments with equal fields do not collide.
    ``prefix`` (default: the lower-cased class name) keeps file names readable; it must be a
    plain file-name token."""
    payload = json.dumps({"type": type(config).__qualname__, "fields": config_dict(config)},
                         sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
    prefix = type(config).__name__.lower() if prefix is None else str(prefix)
    if not prefix or any(c in prefix for c in "/\\\0") or prefix.startswith("."):
        raise ValueError(f"prefix must be a plain file-name token, got {prefix!r}")
    return f"{prefix}-{digest}"


class ConfigMixin:
    """``asdict()``, ``key()`` and ``from_dict()`` for frozen, validated config dataclasses."""

    def asdict(self) -> dict:
        return config_dict(self)

    def key(self) -> str:
        return config_key(self, getattr(self, "KEY_PREFIX", None))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {', '.join(sorted(unknown))}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**kw)


def _cpu_only(config) -> dict:
    return {"num_cpus": 1}


@dataclass(frozen=True)
class Experiment:
    """A run function plus what a scheduler needs to place one run.

    ``run(config, workdir)`` must be a module-level function (so a worker process can import it).
    ``resources(config)`` returns Ray-style resources of one run, e.g. ``{"num_cpus": 1}`` or
    ``{"num_cpus": 1, "num_gpus": 1}`` for a CUDA run; ``prefix`` names the per-run files.
    ``check_result(result)`` (optional) returns None for a complete stored result, else what is
    missing (a stored run result that lacks it is named, not used)."""
    name: str
    run: Callable[..., dict]
    resources: Callable[[Any], dict] = field(default=_cpu_only)
    prefix: str | None = None
    check_result: Callable[[Any], str | None] | None = None

    def __post_init__(self):
        if not callable(self.run):
            raise TypeError("run must be callable")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("name must be a non-empty string")

    def key(self, config) -> str:
        return config_key(config, self.prefix or self.name)


def device_resources(device: str, cpus: int = 1) -> dict:
    """Resources of one run on ``device``: one GPU for a CUDA device, ``cpus`` CPUs otherwise."""
    res = {"num_cpus": int(cpus)}
    if str(device).startswith("cuda"):
        res["num_gpus"] = 1
    return res
