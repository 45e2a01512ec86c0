"""Atomic result files, provenance, up-front checks of output paths, and loaders that name a
corrupt file (project standards: results are written atomically, never silently overwritten or
lost; a corrupt file is named together with what to do about it)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parent.parent


def _jsonable(obj):
    """Convert numpy scalars/arrays and non-finite floats into JSON-safe values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


STALE_TEMP_SECONDS = 24 * 3600   # a temporary file this old whose writer cannot be checked is stale


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", platform.node() or "host")[:32]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _clean_stale_temps(path: Path) -> None:
    """Remove temporary files of earlier writes of ``path`` that were killed before renaming
    (``.<name>.<pid>@<host>.<random>.tmp``): those of a process of this host that no longer
    runs, and any (other host, older naming) not touched for :data:`STALE_TEMP_SECONDS`."""
    prefix, host = f".{path.name}.", _host_tag()
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    now = time.time()
    for e in entries:
        rest = e.name[len(prefix):]
        m = re.fullmatch(r"(\d+)@([A-Za-z0-9._-]+)\.[A-Za-z0-9_]{8}\.tmp", rest)
        try:
            if m is not None and m.group(2) == host:
                stale = not _pid_alive(int(m.group(1)))
            elif m is not None or re.fullmatch(r"[A-Za-z0-9_]{8}\.tmp", rest):
                stale = now - e.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS
            else:
                continue       # another target's temporary file (e.g. of "<name>.x")
            if stale and e.is_file(follow_symlinks=False):
                os.unlink(e.path)
        except OSError:
            pass


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike):
    """Binary file handle on a temporary file in the target folder; on success it is fsynced and
    renamed over ``path`` (readers see the old file or the new one, never half of one); on any
    error the temporary file is removed and ``path`` is untouched. Streams, so large arrays
    (``np.savez(fh, ...)``) need no second copy in memory. The temporary file's name carries the
    writer's process id and host; temporary files left by a killed writer of the same target
    are removed by the next write (:func:`_clean_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_host_tag()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file in the target folder, fsync, then rename over ``path``."""
    with atomic_writer(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """Serialise ``obj`` (numpy values allowed) to JSON and write it atomically."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


class CorruptFileError(ValueError):
    """A file exists but cannot be read as what it should be; the message names the file."""


def read_json(path: str | os.PathLike, *, remedy: str = "delete it to recompute it, or restore it "
                                                         "from version control"):
    """Parse the JSON file ``path``; a truncated or garbage file raises :class:`CorruptFileError`
    naming the file and ``remedy`` (never a bare JSONDecodeError)."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except UnicodeDecodeError:
        raise CorruptFileError(f"{path} is corrupt: not a JSON text file (not UTF-8); {remedy}") from None
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"{path} is corrupt: not valid JSON ({exc.msg} at line {exc.lineno}, "
                               f"column {exc.colno}; truncated?); {remedy}") from None


def checkpoint_state(obj):
    """``obj`` with numpy scalars and arrays, tuples' contents, paths and dataclasses turned into
    the plain types a ``weights_only`` checkpoint holds (tensors, dicts, lists, tuples, numbers,
    strings, None), so :func:`load_checkpoint` can read it back."""
    import dataclasses

    import torch

    if isinstance(obj, np.generic):      # before float: np.float64 is a float subclass
        return obj.item()
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {k: checkpoint_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        vals = [checkpoint_state(v) for v in obj]
        return vals if isinstance(obj, list) else tuple(vals)
    if isinstance(obj, np.ndarray):       # lists, so a resumed history stays JSON-serialisable
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return checkpoint_state(dataclasses.asdict(obj))
    return obj


def load_checkpoint(path: str | os.PathLike, map_location=None, required=()) -> dict:
    """``torch.load(weights_only=True)`` of a training checkpoint written by this project: only
    tensors, dicts, lists, numbers and strings are built, so a planted file cannot run code (it
    is refused, naming it). A truncated or garbage file, or one without the ``required`` keys,
    raises :class:`CorruptFileError` naming it ("delete it to restart the run from scratch")
    instead of a torch traceback."""
    import pickle
    import zipfile

    import torch

    from plumbing.printable import printable

    remedy = "delete it to restart that run from scratch"
    shown = printable(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            AttributeError, ImportError, IndexError, KeyError, UnicodeDecodeError, TypeError) as exc:
        text = str(exc)
        if "weights only" in text.lower() or "weights_only" in text.lower():
            found = re.search(r"Unsupported global: GLOBAL \S+|Unsupported operand \S+", text)
            what = printable(found.group(0))[:120] if found else "unexpected content"
            raise CorruptFileError(f"checkpoint {shown} refused: not a plain checkpoint of tensors, "
                                   f"numbers, strings, lists and dicts as this project writes ({what}); "
                                   f"other objects are never unpickled; {remedy}") from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise CorruptFileError(f"checkpoint {shown} is unreadable ({printable(first)[:120]}); "
                               f"{remedy}") from None
    if not isinstance(state, dict):
        raise CorruptFileError(f"checkpoint {shown} does not hold a training state "
                               f"(got {type(state).__name__}); {remedy}")
    missing = [k for k in required if k not in state]
    if missing:
        raise CorruptFileError(f"checkpoint {shown} lacks {', '.join(missing)}; {remedy}")
    return state


def load_npz(path: str | os.PathLike) -> dict:
    """All arrays of the ``.npz`` file ``path`` as a dict, loaded with ``allow_pickle=False``
    (object arrays are refused, never unpickled). A file that is not a valid ``.npz`` raises
    :class:`CorruptFileError` naming it."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise CorruptFileError(f"not a valid .npz file: {path} (it holds a single .npy "
                                       f"array, not named arrays)")
            return {k: z[k] for k in z.files}
    except CorruptFileError:
        raise
    except ValueError as exc:
        if "object arrays" in str(exc).lower():
            raise CorruptFileError(f"not a valid .npz file: {path} (it holds object arrays; only "
                                   f"numeric arrays are read)") from None
        if "pickle" in str(exc).lower():  # numpy's guess for a file that is not a zip archive
            raise CorruptFileError(f"not a valid .npz file: {path} (not a zip archive of "
                                   f"numeric .npy arrays)") from None
        raise CorruptFileError(f"not a valid .npz file: {path} ({exc})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptFileError(f"not a valid .npz file: {path} ({type(exc).__name__})") from None


# ---- output paths, checked before any computing ------------------------------------------------

class OutputPathError(ValueError):
    """An output option names a path that cannot be written; the message names the option."""


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def _check_writable_folder(folder: Path, option: str, path: Path) -> None:
    """``folder`` (the nearest existing ancestor of ``path``) must be a folder we can create
    files in; tried for real with a temporary file (permission bits lie for root and for
    read-only file systems)."""
    if not folder.is_dir():
        raise OutputPathError(f"{option} {path}: {folder} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".robustgen-write-test.", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"{option} {path}: cannot write in {folder} "
                              f"({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: str | os.PathLike | None, option: str, *, force: bool = False,
                      existing: str = "refuse") -> Path | None:
    """Check, before any computing, that the file option ``option`` (e.g. ``"--json"``) can be
    written at ``path``: not a folder, not below a file, its folder creatable and writable.
    None passes through (option not given).

    An existing file: ``existing="refuse"`` (result files) raises unless ``force`` (the command's
    ``--force``), so a finished result is never replaced by accident; ``existing="replace"``
    (files derived from kept results, e.g. figures or a summary rebuilt from per-run files)
    allows it. Nothing is created here. Returns the path."""
    if path is None:
        return None
    if existing not in ("refuse", "replace"):
        raise ValueError(f"existing must be 'refuse' or 'replace', got {existing!r}")
    p = Path(path).expanduser()
    if str(path).strip() == "" or p.is_dir() or str(path).endswith(("/", os.sep)):
        shown = str(path) if str(path).strip() else repr(str(path))
        raise OutputPathError(f"{option} {shown}: is a directory (folder); give a file name")
    if p.exists() and not p.is_file():
        raise OutputPathError(f"{option} {path}: exists and is not a regular file")
    _check_writable_folder(_first_existing(p.parent), option, p)
    if p.is_file() and existing == "refuse" and not force:
        raise OutputPathError(f"{option} {path} already exists; pass --force to replace it, or "
                              f"choose another path")
    return p


def check_output_dir(path: str | os.PathLike | None, option: str) -> Path | None:
    """Check, before any computing, that the folder option ``option`` (e.g. ``"--out"``) can be
    used: not an existing file, not below a file, creatable and writable. Existing files inside
    are the command's business (the network experiments skip finished runs and resume
    interrupted ones). Nothing is created here. Returns the path (None passes through)."""
    if path is None:
        return None
    if str(path).strip() == "":
        raise OutputPathError(f"{option} '': give a folder name")
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{option} {path}: is a file, not a folder")
    _check_writable_folder(_first_existing(p), option, p)
    return p


def git_commit() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` if the tree has changes), or None."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(*, seed=None, command: list[str] | None = None, wall_seconds: float | None = None,
               device: str | None = None, **extra) -> dict:
    """A provenance record: command, commit, time, machine, library versions, seed, wall time.

    torch's version is recorded only if torch is already imported (theory/ never imports it).
    """
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("scipy", "numba", "sympy", "torch"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "unknown")
    rec = {
        "command": " ".join(command if command is not None else [Path(sys.executable).name] + sys.argv),
        "commit": git_commit(),
        "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
        "seed": seed,
    }
    if device is not None:
        rec["device"] = device
    if wall_seconds is not None:
        rec["wall_seconds"] = round(float(wall_seconds), 4)
    rec.update(extra)
    return rec
