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
  else the one-folder-per-class image layout (``train/<class>/*.jpg``, ``test/<class>/*``, unpacked or
  as one ``.tar.gz``) in ``<root>/``, ``<root>/cifar10-jpeg/`` or ``<root>/cifar10/``, decoded once
  and cached (:mod:`plumbing.imagefolder`), classes in the official order; such a copy is marked
  approximate (see below). Images come back as ``(N, 32, 32, 3)``.
* SVHN: ``train_32x32.mat`` and ``test_32x32.mat`` (format 2, read with scipy.io) in ``<root>/``,
  ``<root>/svhn/`` or ``<root>/SVHN/``; images ``(N, 32, 32, 3)``; label 10 (digit zero) becomes 0.

:func:`download` fetches the files for users with internet access (tests never call it).

A plain folder of IDX files can also be passed directly as ``root``.

Any image folder (Restricted ImageNet and similar): the dataset name ``imagefolder:<path>`` (or
:func:`load_image_folder`), classes in sorted folder-name order.

Fidelity (:mod:`plumbing.fidelity`): :func:`load_dataset_with_fidelity` also returns whether the
files matched the official content checksums and whether the data is approximate (a JPEG copy, a
checksum mismatch), with a one-line reason; every command records this in its output and JSON.
A file that is the official file of *another* known dataset is refused (ValueError naming both).
Images come back as ``(N, H, W)`` for grey-scale and ``(N, H, W, C)`` for colour data.
"""
from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

import numpy as np

from plumbing.fidelity import (Fidelity, check_cifar_batch, check_idx_file, combine, display_name,
                               unknown)
from plumbing.imagefolder import ImageFolderData, ImageFolderError, find_source, read_image_folder

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
    return _gunzip(path, path.read_bytes())


def _gunzip(path: Path, raw: bytes) -> bytes:
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataCorruptError(f"{path}: not a valid gzip file ({exc})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) with full header validation; returns a uint8 array."""
    path = Path(path)
    return _parse_idx(path, _open_maybe_gz(path))


def _parse_idx(path: Path, raw: bytes) -> np.ndarray:
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
    images, labels, _ = _load_idx_with_fidelity(name, split, root)
    return images, labels


def _read_idx_checked(name: str, stem: str, path: Path):
    """(array, Fidelity) of one IDX file; refuses the official file of another dataset."""
    on_disk = path.read_bytes()
    raw = _gunzip(path, on_disk)
    fid = check_idx_file(name, stem, path, on_disk, raw)
    return _parse_idx(path, raw), fid


def _load_idx_with_fidelity(name: str, split: str = "train", root=None):
    if name not in IDX_SUBDIRS:
        raise ValueError(f"name must be one of {', '.join(IDX_SUBDIRS)}; got {name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    base = data_root(root)
    img_stem, lab_stem = IDX_FILES[split]
    img_p, lab_p = _find(base, IDX_SUBDIRS[name], img_stem), _find(base, IDX_SUBDIRS[name], lab_stem)
    if img_p is None or lab_p is None:
        raise _missing(name, base, [img_stem, lab_stem], IDX_SUBDIRS[name])
    images, fid_i = _read_idx_checked(name, img_stem, img_p)
    labels, fid_l = _read_idx_checked(name, lab_stem, lab_p)
    if images.ndim != 3:
        raise DataCorruptError(f"{img_p}: expected a 3-d image array, got shape {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataCorruptError(f"{lab_p}: {labels.shape[0] if labels.ndim == 1 else labels.shape} labels "
                               f"for {images.shape[0]} images")
    if labels.size and labels.max() > 9:
        raise DataCorruptError(f"{lab_p}: labels must lie in 0..9, found {int(labels.max())}")
    return images, labels.astype(np.int64), combine(fid_i, fid_l)


# loaders returning (images, labels, Fidelity)
_FID_LOADERS = {
    "mnist": lambda split, root: _load_idx_with_fidelity("mnist", split, root),
    "fashion-mnist": lambda split, root: _load_idx_with_fidelity("fashion-mnist", split, root),
}
IMAGEFOLDER_PREFIX = "imagefolder:"


def register_loader(name: str, fn) -> None:
    """Register ``fn(split, root) -> (images, labels)`` under ``name`` (fidelity "unknown")."""
    def wrapped(split, root):
        images, labels = fn(split, root)
        return images, labels, unknown(name)
    _FID_LOADERS[name] = wrapped


def _register_fid_loader(name: str, fn) -> None:
    _FID_LOADERS[name] = fn


def dataset_names() -> tuple[str, ...]:
    return tuple(_FID_LOADERS)


def load_dataset_with_fidelity(name: str, split: str = "train", root=None):
    """(images, labels, :class:`plumbing.fidelity.Fidelity`) of ``name`` for ``split``.

    ``name`` is one of :func:`dataset_names` or ``imagefolder:<path>`` (any one-folder-per-class
    image set; ``root`` is then ignored). Raises ValueError when the files are the official files
    of another known dataset."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if isinstance(name, str) and name.startswith(IMAGEFOLDER_PREFIX):
        path = name[len(IMAGEFOLDER_PREFIX):]
        if not path:
            raise ValueError("dataset 'imagefolder:<path>' needs a path after the colon")
        return _load_image_folder_with_fidelity(Path(path), split, None, name)
    if name not in _FID_LOADERS:
        raise ValueError(f"dataset must be one of {', '.join(_FID_LOADERS)} or imagefolder:<path>; "
                         f"got {name!r}")
    return _FID_LOADERS[name](split, root)


def load_dataset(name: str, split: str = "train", root=None) -> tuple[np.ndarray, np.ndarray]:
    """Load ``name`` (see :func:`dataset_names`, or ``imagefolder:<path>``) for ``split`` in
    {"train", "test"}; the fidelity record is dropped (use :func:`load_dataset_with_fidelity`)."""
    images, labels, _ = load_dataset_with_fidelity(name, split, root)
    return images, labels


def load_splits_with_fidelity(name: str, root=None):
    """(x_train, y_train, x_test, y_test, Fidelity of both) for a command line."""
    xtr, ytr, ftr = load_dataset_with_fidelity(name, "train", root)
    xte, yte, fte = load_dataset_with_fidelity(name, "test", root)
    return xtr, ytr, xte, yte, combine(ftr, fte)


def dataset_arg(*names: str):
    """argparse ``type=`` for ``--dataset``: one of ``names`` or ``imagefolder:<path>``."""
    def parse(value: str) -> str:
        if value in names:
            return value
        if value.startswith(IMAGEFOLDER_PREFIX) and len(value) > len(IMAGEFOLDER_PREFIX):
            return value
        raise argparse.ArgumentTypeError(f"--dataset must be one of {', '.join(names)} or "
                                         f"imagefolder:<path>; got {value!r}")
    parse.__name__ = "dataset"
    return parse


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


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")  # the official label order (batches.meta)
CIFAR_IMAGEFOLDER_SUBDIRS = ("", "cifar10-jpeg", "cifar10", "CIFAR10", "cifar-10-jpeg")


def load_cifar10(split: str = "train", root=None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the python batches, else from an image folder:
    ((N, 32, 32, 3) uint8, (N,) int64)."""
    images, labels, _ = load_cifar10_with_fidelity(split, root)
    return images, labels


def load_cifar10_with_fidelity(split: str = "train", root=None):
    """CIFAR-10 with its :class:`Fidelity`: the official python batches are checked against their
    published MD5s; an image-folder copy is approximate (lossy JPEG, or unverifiable order)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    base = data_root(root)
    files = CIFAR_FILES[split]
    for sub in CIFAR_SUBDIRS:
        folder = base / sub if sub else base
        if all((folder / f).is_file() for f in files):
            parts = [read_cifar_batch(folder / f) for f in files]
            fid = combine(*[check_cifar_batch(folder / f) for f in files])
            return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), fid)
    for sub in CIFAR_IMAGEFOLDER_SUBDIRS:
        folder = base / sub if sub else base
        try:
            source = find_source(folder)
        except ImageFolderError as exc:
            raise DataCorruptError(str(exc)) from None
        if source is not None:
            images, labels, fid = _load_image_folder_with_fidelity(source, split, CIFAR10_CLASSES, "cifar10")
            if images.shape[1:] != (32, 32, 3):
                raise DataCorruptError(f"{source}: CIFAR-10 images must be 32x32 RGB, got shape "
                                       f"{images.shape[1:]}")
            return images, labels, fid
    raise DataMissingError(
        f"cifar10 not found: expected the python batches {', '.join(files)} in one of: "
        + ", ".join(str(base / s) if s else str(base) for s in CIFAR_SUBDIRS)
        + f"; or an image folder (train/<class>/*.jpg|png, or one .tar.gz of it) in one of: "
        + ", ".join(str(base / s) if s else str(base) for s in CIFAR_IMAGEFOLDER_SUBDIRS)
        + f". Put the files there, or pass --data-root DIR / set {ENV_VAR}=DIR")


# ---- one-folder-per-class image sets ----------------------------------------------------------

def _image_folder_fidelity(data: ImageFolderData, dataset: str) -> Fidelity:
    known = dataset in ("cifar10",)
    if known:
        if data.lossy:
            return Fidelity(dataset, False, True,
                            f"{display_name(dataset)}, JPEG-approximate: lossy JPEG re-encoding, pixels "
                            f"differ from the official data and the official index order is unknown",
                            str(data.source))
        return Fidelity(dataset, "unknown", True,
                        f"{display_name(dataset)} image-folder copy: cannot be verified against the "
                        f"official checksums and the official index order is unknown", str(data.source))
    if data.lossy:
        return Fidelity(dataset, "unknown", False, "image folder with lossy (JPEG/WebP) files; no "
                        "official checksums known", str(data.source))
    return unknown(dataset, str(data.source), "image folder; no official checksums known")


def _load_image_folder_with_fidelity(source: Path, split: str, classes, dataset: str):
    try:
        data = read_image_folder(source, classes)
    except ImageFolderError as exc:
        raise DataCorruptError(str(exc)) from None
    except FileNotFoundError as exc:
        raise DataMissingError(str(exc)) from None
    if split not in data.splits:
        raise DataMissingError(f"{data.source}: no {split}/<class>/<image> files")
    images, labels = data.splits[split]
    return images, labels, _image_folder_fidelity(data, dataset)


def load_image_folder(root, split: str = "train", *, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of split ``split`` of a one-folder-per-class image set at ``root`` (a
    folder holding ``train/<class>/...``, an archive of it, or a folder holding one archive),
    decoded once and cached (:mod:`plumbing.imagefolder`). Labels index ``classes`` (default: the
    sorted class-folder names; see :func:`image_folder_classes`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    images, labels, _ = _load_image_folder_with_fidelity(Path(root), split, classes, "imagefolder")
    return images, labels


def image_folder_classes(root, classes=None) -> tuple[str, ...]:
    """The class names of an image set, in label order."""
    return read_image_folder(Path(root), classes).classes


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


_register_fid_loader("cifar10", load_cifar10_with_fidelity)
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
