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
* CIFAR-10: the python batches ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` in
  ``<root>/cifar-10-batches-py/`` (or ``<root>/cifar10/cifar-10-batches-py/``, or ``<root>/`` itself);
  images come back as ``(N, 32, 32, 3)``.
* SVHN: ``train_32x32.mat`` and ``test_32x32.mat`` (format 2, read with scipy.io) in ``<root>/``,
  ``<root>/svhn/`` or ``<root>/SVHN/``; images ``(N, 32, 32, 3)``; label 10 (digit zero) becomes 0.

:func:`download` fetches the files for users with internet access (tests never call it).

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


# ---- CIFAR-10 python batches ------------------------------------------------------------------

CIFAR_SUBDIRS = ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "CIFAR10/cifar-10-batches-py", "")
CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (a pickled dict with b"data" (N, 3072) uint8 in CHW order and
    b"labels"), validated, as ((N, 32, 32, 3) uint8, (N,) int64)."""
    import pickle

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, IndexError) as exc:
        raise DataCorruptError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(obj, dict):
        raise DataCorruptError(f"{path}: expected a dict, got {type(obj).__name__}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise DataCorruptError(f"{path}: missing 'data' or 'labels' entry")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataCorruptError(f"{path}: data must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataCorruptError(f"{path}: {labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataCorruptError(f"{path}: labels must lie in 0..9, found {int(labels.min())}..{int(labels.max())}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def load_cifar10(split: str = "train", root=None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the python batches: ((N, 32, 32, 3) uint8, (N,) int64)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    base = data_root(root)
    files = CIFAR_FILES[split]
    for sub in CIFAR_SUBDIRS:
        folder = base / sub if sub else base
        if all((folder / f).is_file() for f in files):
            parts = [read_cifar_batch(folder / f) for f in files]
            return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    raise _missing("cifar10", base, files, CIFAR_SUBDIRS)


# ---- SVHN .mat ----------------------------------------------------------------------------------

SVHN_SUBDIRS = ("", "svhn", "SVHN")
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def read_svhn_mat(path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN format-2 ``.mat`` file: X (32, 32, 3, N) uint8 and y (N, 1) in 1..10, validated;
    returns ((N, 32, 32, 3) uint8, (N,) int64) with label 10 mapped to 0."""
    import scipy.io

    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataCorruptError(f"{path}: not a readable .mat file ({exc})") from None
    if "X" not in mat or "y" not in mat:
        raise DataCorruptError(f"{path}: expected variables 'X' and 'y'")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataCorruptError(f"{path}: X must have shape (32, 32, 3, N), got {x.shape}")
    if x.dtype != np.uint8:
        raise DataCorruptError(f"{path}: X must be uint8, got {x.dtype}")
    if y.shape[0] != x.shape[3]:
        raise DataCorruptError(f"{path}: {y.shape[0]} labels for {x.shape[3]} images")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataCorruptError(f"{path}: labels must lie in 1..10, found {int(y.min())}..{int(y.max())}")
    y = y.astype(np.int64)
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y


def load_svhn(split: str = "train", root=None) -> tuple[np.ndarray, np.ndarray]:
    """SVHN (cropped digits, format 2): ((N, 32, 32, 3) uint8, (N,) int64 in 0..9)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    base = data_root(root)
    name = SVHN_FILES[split]
    for sub in SVHN_SUBDIRS:
        p = base / sub / name if sub else base / name
        if p.is_file():
            return read_svhn_mat(p)
    where = ", ".join(str(base / s) if s else str(base) for s in SVHN_SUBDIRS)
    raise DataMissingError(f"svhn not found: expected {name} in one of: {where}. Put the file "
                           f"there, or pass --data-root DIR / set {ENV_VAR}=DIR")


register_loader("cifar10", load_cifar10)
register_loader("svhn", load_svhn)


# ---- optional download (users with internet; never called by tests) ----------------------------

DOWNLOAD_URLS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"], "mnist"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"], "fashion-mnist"),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", ["cifar-10-python.tar.gz"], ""),
    "svhn": ("http://ufldl.stanford.edu/housenumbers/", ["train_32x32.mat", "test_32x32.mat"], "svhn"),
}


def download(name: str, root=None) -> Path:
    """Download ``name`` into the data root (layout as above) and return the folder. Needs
    internet access; existing files are kept. CIFAR-10's archive is unpacked."""
    import tarfile
    import urllib.request

    if name not in DOWNLOAD_URLS:
        raise ValueError(f"name must be one of {', '.join(DOWNLOAD_URLS)}; got {name!r}")
    base_url, files, sub = DOWNLOAD_URLS[name]
    folder = data_root(root) / sub if sub else data_root(root)
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        target = folder / f
        if not target.is_file():
            tmp = target.with_suffix(target.suffix + ".part")
            urllib.request.urlretrieve(base_url + f, tmp)
            tmp.replace(target)
        if f.endswith(".tar.gz"):
            with tarfile.open(target) as tar:
                tar.extractall(folder, filter="data")
    return folder
