"""A small resumable checkpoint: rows keyed by string in one JSON file, written atomically, with
a fingerprint of the settings (used by ``simulate.nn_exact_robustness``, ``simulate.staircase``
and ``simulate.nn_distance_scaling``). A checkpoint written with other settings is refused, naming
the file (its rows are never silently dropped and deleted); ``force=True`` (the command's
``--force``) starts afresh and replaces it at the first saved row."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from plumbing.io import CorruptFileError, atomic_write_json, read_json


class Checkpoint:
    """Rows keyed by string, stored atomically as JSON with a fingerprint of the settings."""

    def __init__(self, path: Path | None, settings: dict, *, force: bool = False):
        path = None if path is None else Path(path)
        self.path = path
        self.fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.rows: dict = {}
        if path is not None and path.is_file():
            # a corrupt file is named (never silently dropped and overwritten)
            remedy = "delete it to recompute its rows"
            data = read_json(path, remedy=remedy)
            if not isinstance(data, dict) or not isinstance(data.get("rows", {}), dict):
                raise CorruptFileError(f"checkpoint {path} does not hold checkpoint rows; {remedy}")
            if data.get("fingerprint") == self.fingerprint:
                self.rows = data.get("rows", {})
            elif not force:
                raise ValueError(f"checkpoint {path} was written with other settings; rerun with "
                                 f"those settings to resume it, pass --force to discard it, or use "
                                 f"another --json/--checkpoint path (or remove it)")

    def get(self, key):
        return self.rows.get(key)

    def put(self, key, row) -> None:
        self.rows[key] = row
        if self.path is not None:
            atomic_write_json(self.path, {"fingerprint": self.fingerprint, "rows": self.rows})

    def done(self) -> None:
        if self.path is not None and self.path.is_file():
            self.path.unlink()
