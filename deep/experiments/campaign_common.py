"""Shared machinery of the budgeted GPU campaigns (``python -m deep.campaign``).

A campaign is a list of runs executed inside one wall-clock budget:

* :class:`Budget` - the wall clock of the whole command, with a stop flag that SIGTERM / SIGINT
  set (so a command killed by a time limit still packs what it finished).
* every finished run is written at once as its own JSON (atomically, ``plumbing.io``); a rerun with
  the same ``--out`` skips finished runs and resumes unfinished ones from their checkpoints;
* :func:`write_manifest` - provenance of the campaign (command, commit, device, torch version,
  seed, wall time, epoch plan, every deviation from the papers' protocols, the runs finished and
  the runs left undone);
* :func:`pack_archive` - one ``.tar.gz`` with every JSON / Markdown file of the output folder
  (checkpoints left out), written atomically, so the device machine returns one file. Every JSON
  is parsed before it is packed: a truncated or garbage one is left out and named (on stderr, in
  the return value and in ``SKIPPED_CORRUPT.txt`` inside the archive), never packed silently. The
  archive's path is noted in ``OUT/.campaign_archive``, so a rerun may replace its own archive
  while any other existing file needs ``--force``.
"""
from __future__ import annotations

import io
import json
import signal
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from deep.experiments.experiment import device_description
from plumbing.io import atomic_write_bytes, atomic_write_json, provenance, read_json
from plumbing.validation import check_float

#: files that travel in the archive (checkpoints stay behind: they are resume points only)
ARCHIVE_SUFFIXES = (".json", ".md", ".csv", ".txt")


@dataclass
class Budget:
    """Wall-clock budget of one campaign command (seconds, from construction)."""
    seconds: float
    start: float = field(default_factory=time.perf_counter)
    stop_requested: bool = False
    stop_reason: str | None = None
    parent: "Budget | None" = None
    stop_after_runs: int | None = None   # testing hook: request a stop after this many runs
    runs_done: int = 0

    def __post_init__(self):
        check_float("budget seconds", self.seconds, low=0.0, low_open=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def expired(self, reserve: float = 0.0) -> bool:
        """True once a stop was requested (here or on a parent budget) or fewer than ``reserve``
        seconds are left."""
        return self.stopped() or self.remaining() <= reserve

    def stopped(self) -> bool:
        return self.stop_requested or (self.parent is not None and self.parent.stopped())

    def request_stop(self, reason: str) -> None:
        self.stop_requested = True
        self.stop_reason = self.stop_reason or reason

    def note_run_done(self) -> None:
        """Count a finished run (here and in the parents); honours ``stop_after_runs``."""
        self.runs_done += 1
        if self.parent is not None:
            self.parent.note_run_done()
        if self.stop_after_runs is not None and self.runs_done >= self.stop_after_runs:
            self.request_stop(f"stop after {self.stop_after_runs} run(s) (--stop-after-runs)")

    def reason(self) -> str | None:
        return self.stop_reason or (self.parent.reason() if self.parent is not None else None)

    def sub(self, seconds: float) -> "Budget":
        """A budget of ``min(seconds, remaining)`` seconds that also stops when this one does."""
        return Budget(max(1e-3, min(seconds, self.remaining())), parent=self)

    def outermost(self) -> "Budget":
        """The budget of the whole command (the last parent)."""
        b = self
        while b.parent is not None:
            b = b.parent
        return b

    def stop_hook(self, reserve: float | None = None) -> Callable[[], bool]:
        """``should_stop()`` for long loops (training steps, timing steps, attack batches): True
        once a stop was requested (SIGTERM / SIGINT, here or on a parent) or the *outermost*
        budget has at most ``reserve`` seconds left (default: :func:`finish_reserve`, the time
        the command keeps for its tables, manifest and archive). Share budgets decide whether
        new work starts; this hook cuts the work that is running."""
        top = self.outermost()
        keep = finish_reserve(top.seconds) if reserve is None else float(reserve)

        def should_stop() -> bool:
            return self.stopped() or top.remaining() <= keep
        return should_stop


def finish_reserve(seconds: float) -> float:
    """Seconds a campaign of ``seconds`` keeps at its end for writing the combined tables, the
    manifest and the archive (5 % of the budget, at most 5 s)."""
    return min(5.0, 0.05 * float(seconds))


def install_signal_stop(budget: Budget):
    """SIGTERM / SIGINT request a stop (the campaign then checkpoints, packs and exits)."""
    previous = {}

    def handler(signum, frame):
        budget.request_stop(f"signal {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass
    return previous


def restore_signals(previous: dict) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_info(device: torch.device) -> dict:
    info = {"device": device_description(device), "torch": torch.__version__,
            "cuda": torch.version.cuda, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    capability=f"{p.major}.{p.minor}", tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32)
    return info


def finished(path: Path) -> dict | None:
    """The finished run JSON at ``path`` or None (a corrupt file is named, never silently used)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except ValueError as exc:
        raise ValueError(f"corrupt result file {path}: {exc}; delete it to recompute") from None


def write_manifest(out: Path, *, campaign: str, seed: int, device: torch.device, budget: Budget,
                   plan: dict, deviations: list[str], runs_done: list[str], runs_left: list[str],
                   status: str, extra: dict | None = None) -> Path:
    """``OUT/manifest_<campaign>.json``: provenance and the state of the campaign."""
    rec = {"campaign": campaign, "status": status, "stop_reason": budget.reason(),
           "budget_seconds": budget.seconds, "plan": plan, "deviations": list(deviations),
           "runs_done": sorted(runs_done), "runs_left": sorted(runs_left),
           "n_done": len(runs_done), "n_left": len(runs_left), **(extra or {}),
           "provenance": provenance(seed=seed, wall_seconds=budget.elapsed(),
                                    device=device_description(device),
                                    device_info=device_info(device))}
    return atomic_write_json(Path(out) / f"manifest_{campaign.replace('-', '_')}.json", rec)


ARCHIVE_MARKER = ".campaign_archive"


def archive_is_ours(out: Path, archive: Path) -> bool:
    """True if ``archive`` was written by :func:`pack_archive` for the output folder ``out`` (a
    rerun of the campaign may replace it)."""
    marker = Path(out) / ARCHIVE_MARKER
    try:
        return marker.read_text(encoding="utf-8").strip() == str(Path(archive).resolve())
    except (OSError, UnicodeDecodeError):
        return False


def _corrupt_json(data: bytes) -> str | None:
    """None for a parseable JSON document, else the parser's reason."""
    try:
        json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; truncated?"
    return None


def pack_archive(out: Path, archive: Path, *, skipped: list | None = None) -> Path:
    """Pack every result file (``ARCHIVE_SUFFIXES``) under ``out`` into ``archive`` (.tar.gz),
    paths relative to ``out``; written atomically (a crash leaves the previous archive).

    Each file is read once and packed from those bytes; a ``.json`` that does not parse is left
    out, named on stderr and listed in ``SKIPPED_CORRUPT.txt`` in the archive (and appended to
    ``skipped`` as (path, reason) if a list is given)."""
    out, archive = Path(out), Path(archive)
    bad: list[tuple[Path, str]] = []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(out.rglob("*")):
            if p.is_file() and p.suffix in ARCHIVE_SUFFIXES and not p.name.startswith("."):
                if p.resolve() == archive.resolve():
                    continue
                data = p.read_bytes()
                reason = _corrupt_json(data) if p.suffix == ".json" else None
                if reason is not None:
                    bad.append((p, reason))
                    log(f"archive: left out {p} ({reason}); delete it to recompute that run")
                    continue
                info = tarfile.TarInfo(str(p.relative_to(out)))
                info.size, info.mtime, info.mode = len(data), int(p.stat().st_mtime), 0o644
                tar.addfile(info, io.BytesIO(data))
        if bad:
            text = "".join(f"{p.relative_to(out)}: {why}\n" for p, why in bad).encode()
            info = tarfile.TarInfo("SKIPPED_CORRUPT.txt")
            info.size, info.mtime, info.mode = len(text), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(text))
    path = atomic_write_bytes(archive, buf.getvalue())
    try:
        atomic_write_bytes(out / ARCHIVE_MARKER, (str(archive.resolve()) + "\n").encode())
    except OSError:
        pass
    if skipped is not None:
        skipped.extend(bad)
    return path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def step_decay_factor(progress: float, milestones: tuple[float, ...], gamma: float = 0.1) -> float:
    """Learning-rate factor of a step schedule compressed to fractions of training: gamma^k where
    k is the number of milestone fractions <= ``progress`` (YRZSC Appendix A, MNIST: 160 epochs,
    decay 0.1 at epochs 40, 80, 120, 140 -> fractions 0.25, 0.5, 0.75, 0.875)."""
    k = sum(1 for m in milestones if progress >= m - 1e-12)
    return gamma ** k
