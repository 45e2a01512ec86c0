"""Where this process sits in a torchrun job, read from the environment torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK); no torch import, so every package may ask.

Under ``torchrun --nproc-per-node N -m deep.<experiment>`` every rank runs the same command;
only rank 0 writes checkpoints, result JSON and summaries (:func:`is_main_process`). Outside
torchrun the process is rank 0 of a world of 1.
"""
from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def rank() -> int:
    """Global rank (0 outside torchrun)."""
    return _env_int("RANK", 0)


def world_size() -> int:
    """Number of processes of the job (1 outside torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """Rank on this node: the GPU index this process uses (0 outside torchrun)."""
    return _env_int("LOCAL_RANK", 0)


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """True on the process that writes files (rank 0)."""
    return rank() == 0
