"""Dataset loaders shared by theory/ and deep/: uint8 images and int64 labels, no torch.

Data root
---------
``root`` argument, else the environment variable ``ROBUSTGEN_DATA``, else ``~/.robustgen/data``.
Inside the root each dataset is searched in the usual layouts:

* MNIST: ``<root>/``, ``<root>/mnist/``, ``<root>/MNIST/raw/`` holding
  ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``.
* Fashion-MNIST: same file names in ``<root>/``, ``<root>/fashion-mnist/``,
  ``<root>/FashionMNIST/raw/``.

A plain folder of IDX files can also be passed directly as ``root``.
Images come back as ``(N, H, W)`` for grey-scale and ``(N, H, W, C)`` for colour data.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

ENV_VAR = "ROBUSTGEN_DATA"
DEFAULT_ROOT = Path.home() / ".robustgen" / "data"

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_SUBDIRS = {
    "mnist": ("", "mnist", "MNIST/raw", "MNIST"),
    "fashion-mnist": ("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
}
SPLITS = ("train", "test")


class DataMissingError(FileNotFoundError):
    """A dataset file is missing; the message names the expected files and where to put them."""


class DataCorruptError(ValueError):
    """A dataset file exists but its header, size or labels are invalid."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data root: argument, then $ROBUSTGEN_DATA, then ~/.robustgen/data."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_ROOT


def _open_maybe_gz(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataCorruptError(f"{path}: not a valid gzip file ({exc})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) with full header validation; returns a uint8 array."""
    path = Path(path)
    raw = _open_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataCorruptError(f"{path}: bad IDX magic number")
    if raw[2] != 0x08:
        raise DataCorruptError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataCorruptError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != expected:
        raise DataCorruptError(f"{path}: IDX header says {shape} ({expected} bytes) "
                               f"but the file holds {body.size} bytes")
    return body.reshape(shape)


def _find(root: Path, subdirs, stem: str) -> Path | None:
    for sub in subdirs:
        for name in (stem, stem + ".gz"):
            p = root / sub / name if sub else root / name
            if p.is_file():
                return p
    return None


def _missing(name: str, root: Path, files, subdirs) -> DataMissingError:
    where = ", ".join(str(root / s) if s else str(root) for s in subdirs)
    return DataMissingError(
        f"{name} not found: expected {', '.join(f + '[.gz]' for f in files)} in one of: {where}. "
        f"Put the files there, or pass --data-root DIR / set {ENV_VAR}=DIR")


def load_idx_dataset(name: str, split: str = "train", root=None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST or Fashion-MNIST as (uint8 images (N, 28, 28), int64 labels (N,))."""
    if name not in IDX_SUBDIRS:
        raise ValueError(f"name must be one of {', '.join(IDX_SUBDIRS)}; got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    base = data_root(root)
    img_stem, lab_stem = IDX_FILES[split]
    img_p, lab_p = _find(base, IDX_SUBDIRS[name], img_stem), _find(base, IDX_SUBDIRS[name], lab_stem)
    if img_p is None or lab_p is None:
        raise _missing(name, base, [img_stem, lab_stem], IDX_SUBDIRS[name])
    images, labels = read_idx(img_p), read_idx(lab_p)
    if images.ndim != 3:
        raise DataCorruptError(f"{img_p}: expected a 3-d image array, got shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataCorruptError(f"{lab_p}: {labels.shape[0] if labels.ndim == 1 else labels.shape} labels "
                               f"for {images.shape[0]} images")
    if labels.size and labels.max() > 9:
        raise DataCorruptError(f"{lab_p}: labels must lie in 0..9, found {int(labels.max())}")
    return images, labels.astype(np.int64)


_LOADERS = {
    "mnist": lambda split, root: load_idx_dataset("mnist", split, root),
    "fashion-mnist": lambda split, root: load_idx_dataset("fashion-mnist", split, root),
}


def register_loader(name: str, fn) -> None:
    """Register ``fn(split, root) -> (images, labels)`` under ``name``."""
    _LOADERS[name] = fn


def dataset_names() -> tuple[str, ...]:
    return tuple(_LOADERS)


def load_dataset(name: str, split: str = "train", root=None) -> tuple[np.ndarray, np.ndarray]:
    """Load ``name`` (see :func:`dataset_names`) for ``split`` in {"train", "test"}."""
    if name not in _LOADERS:
        raise ValueError(f"dataset must be one of {', '.join(_LOADERS)}; got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return _LOADERS[name](split, root)
