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
import io
import math
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from plumbing.fidelity import (Fidelity, check_cifar_batch, check_idx_file, combine, display_name,
                               unknown)
from plumbing.imagefolder import ImageFolderData, ImageFolderError, find_source, read_image_folder
from plumbing.printable import printable, show_value

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


# Size caps (memory bombs: a few KB of gzip can expand to GBs). A file's header declares its
# shape; we check it, then decompress exactly the declared number of bytes and no more.
MAX_IDX_BYTES = 1 << 30          # read_idx: decompressed IDX content of any shape (1 GiB)
MAX_IDX_EXAMPLES = 1_000_000     # MNIST/Fashion-MNIST: examples per file (official: 60000)
MNIST_SHAPE = (28, 28)
MAX_CIFAR_BATCH_BYTES = 256 << 20  # one python batch (official: 31 MB for 10000 images)
MAX_SVHN_EXAMPLES = 1_000_000    # per .mat file (official: 73257 train, 26032 test, 531131 extra)
MAX_SVHN_FILE_BYTES = 4 << 30


def _p(path) -> str:
    return printable(path)


def _check_file_size(path: Path, limit: int, what: str) -> None:
    size = path.stat().st_size
    if size > limit:
        raise DataCorruptError(f"{_p(path)}: {size} bytes is more than a {what} can be "
                               f"({limit} bytes); refused")


def _read_exact(path: Path, fh, n: int) -> bytes:
    """Up to ``n`` bytes from ``fh`` (fewer at the end of the file); never more."""
    chunks, left = [], n
    try:
        while left > 0:
            block = fh.read(min(left, 1 << 20))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataCorruptError(f"{_p(path)}: not a valid gzip file ({exc})") from None
    return b"".join(chunks)


def _is_gzip(path: Path, head: bytes) -> bool:
    return path.suffix == ".gz" or head[:2] == b"\x1f\x8b"


def _read_idx_bytes(path: Path, on_disk: bytes, check_shape=None, limit: int = MAX_IDX_BYTES) -> bytes:
    """The IDX content of ``on_disk`` (gzip or raw): header read first and checked
    (``check_shape(shape)`` may refuse it), then exactly the declared number of bytes; a file
    that expands beyond its header's size is refused after reading one byte more."""
    fh = gzip.GzipFile(fileobj=io.BytesIO(on_disk)) if _is_gzip(path, on_disk) else io.BytesIO(on_disk)
    with fh:
        head = _read_exact(path, fh, 4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0:
            raise DataCorruptError(f"{_p(path)}: bad IDX magic number")
        if head[2] != 0x08:
            raise DataCorruptError(f"{_p(path)}: IDX data type 0x{head[2]:02x} is not unsigned byte (0x08)")
        ndim = head[3]
        dims = _read_exact(path, fh, 4 * ndim)
        if ndim < 1 or len(dims) < 4 * ndim:
            raise DataCorruptError(f"{_p(path)}: truncated IDX header")
        shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
        if check_shape is not None:
            check_shape(shape)
        expected = math.prod(shape)
        if expected > limit:
            raise DataCorruptError(f"{_p(path)}: IDX header declares shape {shape} ({expected} bytes), "
                                   f"more than the {limit} bytes allowed; refused")
        body = _read_exact(path, fh, expected + 1)
    if len(body) > expected:
        raise DataCorruptError(f"{_p(path)}: IDX header says {shape} ({expected} bytes) but the "
                               f"file holds more; refused (read stopped after {expected + 1} bytes)")
    if len(body) != expected:
        raise DataCorruptError(f"{_p(path)}: IDX header says {shape} ({expected} bytes) "
                               f"but the file holds {len(body)} bytes")
    return head + dims + body


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) with full header validation; returns a uint8 array.
    At most :data:`MAX_IDX_BYTES` of content are decompressed."""
    path = Path(path)
    _check_file_size(path, MAX_IDX_BYTES + 1024, "IDX file")
    return _parse_idx(path, _read_idx_bytes(path, path.read_bytes()))


def _parse_idx(path: Path, raw: bytes) -> np.ndarray:
    """uint8 array of a complete IDX content already checked by :func:`_read_idx_bytes`."""
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


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


def _idx_shape_check(name: str, path: Path, images: bool):
    """Refuses an IDX header that is not MNIST-format images (N, 28, 28) or labels (N,), or
    that declares more than :data:`MAX_IDX_EXAMPLES` examples; runs before any decompressing."""
    def check(shape):
        if images and (len(shape) != 3 or shape[1:] != MNIST_SHAPE):
            found = "x".join(map(str, shape[1:])) if len(shape) == 3 else f"shape {shape}"
            raise DataCorruptError(f"{_p(path)}: {display_name(name)} images must be 28x28 "
                                   f"(header shape (N, 28, 28)); found {found}")
        if not images and len(shape) != 1:
            raise DataCorruptError(f"{_p(path)}: labels must be a 1-d IDX array, header declares "
                                   f"shape {shape}")
        if shape[0] > MAX_IDX_EXAMPLES:
            raise DataCorruptError(f"{_p(path)}: header declares {shape[0]} examples, more than "
                                   f"the {MAX_IDX_EXAMPLES} allowed; refused")
    return check


def _read_idx_checked(name: str, stem: str, path: Path, images: bool):
    """(array, Fidelity) of one IDX file; refuses the official file of another dataset."""
    limit = 8 + 4 * 3 + MAX_IDX_EXAMPLES * (MNIST_SHAPE[0] * MNIST_SHAPE[1] if images else 1)
    _check_file_size(path, limit + 1024, f"{display_name(name)} IDX file")
    on_disk = path.read_bytes()
    raw = _read_idx_bytes(path, on_disk, _idx_shape_check(name, path, images), limit)
    if not _is_gzip(path, on_disk):
        raw = on_disk            # fidelity: no separate on-disk checksum of a raw file
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
    images, fid_i = _read_idx_checked(name, img_stem, img_p, images=True)
    labels, fid_l = _read_idx_checked(name, lab_stem, lab_p, images=False)
    if labels.shape[0] != images.shape[0]:
        raise DataCorruptError(f"{_p(lab_p)}: {labels.shape[0]} labels for {images.shape[0]} images")
    if labels.size and labels.max() > 9:
        raise DataCorruptError(f"{_p(lab_p)}: labels must lie in 0..9, found {int(labels.max())}")
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


class _RefusedGlobal(pickle.UnpicklingError):
    pass


_NDARRAY = object()   # stands for numpy.ndarray inside a batch: only _reconstruct may use it
_DTYPES = ("u1", "i1", "b1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "<u2", "<i2", "<u4",
           "<i4", "<u8", "<i8", "<f4", "<f8", "|u1", "|i1", "|b1")


def _np_reconstruct(cls, shape, dtype):
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("array reconstruction of a type other than numpy.ndarray")
    return np.empty(0, dtype=np.uint8)         # __setstate__ then sets shape, dtype and data


def _np_dtype(spec, align=False, copy=False):
    if isinstance(spec, bytes):
        spec = spec.decode("ascii", "replace")
    if spec not in _DTYPES:
        raise pickle.UnpicklingError(f"array type {show_value(spec)} is not a plain number type")
    return np.dtype(spec)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype)[0]


def _np_frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or order not in ("C", "F"):
        raise pickle.UnpicklingError("malformed numpy array")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _latin1(text, encoding="utf-8"):
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2 (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("bytes encoded other than as latin-1")
    return text.encode("latin-1")


_CIFAR_GLOBALS = {("_codecs", "encode"): _latin1, ("numpy", "ndarray"): _NDARRAY,
                  ("numpy", "dtype"): _np_dtype}
for _mod in ("numpy.core", "numpy._core"):
    _CIFAR_GLOBALS[(f"{_mod}.multiarray", "_reconstruct")] = _np_reconstruct
    _CIFAR_GLOBALS[(f"{_mod}.multiarray", "scalar")] = _np_scalar
    _CIFAR_GLOBALS[(f"{_mod}.numeric", "_frombuffer")] = _np_frombuffer


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10 python batches: builds dicts, lists, bytes, strings, numbers and
    numpy arrays of plain number types, and nothing else. Any other global (a class or
    function a crafted file names to run code) is refused without being imported or called."""

    def find_class(self, module, name):
        found = _CIFAR_GLOBALS.get((module, name))
        if found is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return found


def _integer_labels(path: Path, labels, lo: int, hi: int) -> np.ndarray:
    """``labels`` (a list of ints, or an array of an integer type or of integer-valued floats)
    as int64 in lo..hi; anything else (1.5, inf, nan, complex, bool, text) is refused with the
    first offending value shown."""
    where = _p(path)
    if isinstance(labels, (list, tuple)):
        for v in labels:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise DataCorruptError(f"{where}: labels must be integers in {lo}..{hi}, found "
                                       f"{show_value(v)} ({type(v).__name__})")
            if not lo <= int(v) <= hi:
                raise DataCorruptError(f"{where}: labels must lie in {lo}..{hi}, found {int(v)}")
        return np.array([int(v) for v in labels], dtype=np.int64)
    arr = np.asarray(labels)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        bad[~bad] = arr[~bad] != np.floor(arr[~bad])
        if bad.any():
            v = arr[bad][0]
            raise DataCorruptError(f"{where}: labels must be integers in {lo}..{hi}, found "
                                   f"{show_value(v)}")
    elif arr.dtype.kind not in "iu":
        v = arr.reshape(-1)[0] if arr.size else arr.dtype
        raise DataCorruptError(f"{where}: labels must be integers in {lo}..{hi}, found "
                               f"{show_value(v)} (type {arr.dtype})")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise DataCorruptError(f"{where}: labels must lie in {lo}..{hi}, found "
                               f"{show_value(arr.min())}..{show_value(arr.max())}")
    return arr.astype(np.int64)


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (a pickled dict with b"data" (N, 3072) uint8 in CHW order and
    b"labels"), validated, as ((N, 32, 32, 3) uint8, (N,) int64).

    The pickle is read with a restricted unpickler (dicts, lists, bytes, strings, numbers and
    numpy arrays only; :class:`_CifarUnpickler`): a file naming any other Python object is
    refused, never run."""
    path = Path(path)
    where = _p(path)
    _check_file_size(path, MAX_CIFAR_BATCH_BYTES, "CIFAR-10 python batch")
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(fh, encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise DataCorruptError(f"{where}: refused: a CIFAR-10 batch holds only arrays, lists, dicts, "
                               f"numbers and strings, this file names the Python object "
                               f"{printable(str(exc))[:100]} (not loaded, nothing run)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError, RecursionError) as exc:
        raise DataCorruptError(f"{where}: not a CIFAR-10 python batch "
                               f"({printable(str(exc))[:120]})") from None
    if type(obj) is not dict:
        raise DataCorruptError(f"{where}: expected a dict, got {type(obj).__name__}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise DataCorruptError(f"{where}: missing 'data' or 'labels' entry")
    if type(data) is not np.ndarray or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataCorruptError(f"{where}: data must be a uint8 array of shape (N, 3072), got {got}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != data.shape[0] or (
            isinstance(labels, np.ndarray) and labels.ndim != 1):
        shown = len(labels) if isinstance(labels, (list, np.ndarray)) else type(labels).__name__
        raise DataCorruptError(f"{where}: {shown} labels for {data.shape[0]} images")
    labels = _integer_labels(path, labels, 0, 9)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


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
            images, labels, fid = _load_image_folder_with_fidelity(source, split, CIFAR10_CLASSES, "cifar10",
                                                                   image_size=(32, 32))
            if images.shape[1:] != (32, 32, 3):
                raise DataCorruptError(f"{_p(source)}: CIFAR-10 images must be 32x32 RGB, got shape "
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


def _load_image_folder_with_fidelity(source: Path, split: str, classes, dataset: str, image_size=None):
    try:
        data = read_image_folder(source, classes, image_size=image_size)
    except ImageFolderError as exc:
        raise DataCorruptError(str(exc)) from None
    except FileNotFoundError as exc:
        raise DataMissingError(str(exc)) from None
    if split not in data.splits:
        raise DataMissingError(f"{_p(data.source)}: no {split}/<class>/<image> files")
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


_MAT_CLASSES = {6: "double", 7: "single", 8: "int8", 9: "uint8", 10: "int16", 11: "uint16",
                12: "int32", 13: "uint32", 14: "int64", 15: "uint64"}
_MI_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}   # element types
_MI_MATRIX, _MI_COMPRESSED = 14, 15


def _mat5_variables(path: Path, wanted=("X", "y")):
    """Headers of a MATLAB 5 ``.mat`` file, read without decompressing any data: (the 128-byte
    file header, {name: (class, dims, data bytes declared, raw element bytes)} for the ``wanted``
    variables). Other variables are skipped unread; a compressed variable's header is read by
    inflating at most 2 KB."""
    where = _p(path)
    size = path.stat().st_size
    out = {}
    with open(path, "rb") as fh:
        head = fh.read(128)
        order = {b"IM": "<", b"MI": ">"}.get(head[126:128]) if len(head) == 128 else None
        if order is None:
            raise DataCorruptError(f"{where}: not a MATLAB 5 .mat file (format 2 of SVHN; HDF5-based "
                                   f".mat files are not read)")
        pos = 128
        while pos + 8 <= size and len(out) < len(wanted):
            fh.seek(pos)
            mdtype, nbytes = struct.unpack(order + "II", fh.read(8))
            nxt = pos + 8 + nbytes + ((-nbytes) % 8 if mdtype != _MI_COMPRESSED else 0)
            if nxt > size:
                raise DataCorruptError(f"{where}: truncated .mat file (a variable runs past the end)")
            if mdtype == _MI_COMPRESSED:
                try:
                    body = zlib.decompressobj().decompress(fh.read(min(nbytes, 2048)), 2048)
                except zlib.error as exc:
                    raise DataCorruptError(f"{where}: damaged compressed variable ({exc})") from None
            elif mdtype == _MI_MATRIX:
                body = struct.pack(order + "II", mdtype, nbytes) + fh.read(min(nbytes, 2048))
            else:
                raise DataCorruptError(f"{where}: unexpected .mat element type {mdtype}")
            hdr = _mat5_matrix_header(path, body, order)
            if hdr is not None and hdr[0] in wanted:
                fh.seek(pos)
                out[hdr[0]] = hdr[1:] + (fh.read(nxt - pos),)
            pos = nxt
    return head, out


def _mat5_matrix_header(path: Path, body: bytes, order: str):
    """(name, class, dims, declared data bytes) of a miMATRIX element's start, or None when the
    variable is not a plain numeric array."""
    def element(o):
        if o + 8 > len(body):
            raise DataCorruptError(f"{_p(path)}: damaged .mat variable header")
        first, second = struct.unpack_from(order + "II", body, o)
        if first >> 16:                                   # small data element
            n, t = first >> 16, first & 0xFFFF
            return t, n, body[o + 4:o + 4 + n], o + 8
        return first, second, body[o + 8:o + 8 + second], o + 8 + second + (-second) % 8

    t, _, _, _ = element(0)
    if t != _MI_MATRIX:
        raise DataCorruptError(f"{_p(path)}: a variable is not a MATLAB array")
    _, _, flags, o = element(8)
    if len(flags) < 4:
        raise DataCorruptError(f"{_p(path)}: damaged .mat variable header")
    flag = struct.unpack_from(order + "I", flags)[0]
    cls, is_complex = flag & 0xFF, bool(flag & 0x800)
    t, n, dims_raw, o = element(o)
    if t != 5 or n % 4 or n > 4 * 32:
        raise DataCorruptError(f"{_p(path)}: damaged .mat variable dimensions")
    dims = struct.unpack(order + f"{n // 4}i", dims_raw)
    t, n, name, o = element(o)
    name = name.decode("latin-1")
    if cls not in _MAT_CLASSES or is_complex:
        return name, None, dims, None
    t, n, _, _ = element(o)
    if t not in _MI_SIZES or n != math.prod(dims) * _MI_SIZES[t]:
        raise DataCorruptError(f"{_p(path)}: variable {printable(name)} declares {n} data bytes "
                               f"for shape {dims}; refused")
    return name, _MAT_CLASSES[cls], dims, n


def read_svhn_mat(path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN format-2 ``.mat`` file: X (32, 32, 3, N) uint8 and y (N, 1) in 1..10, validated;
    returns ((N, 32, 32, 3) uint8, (N,) int64) with label 10 mapped to 0.

    The declared shapes, types and data sizes of X and y are checked before anything is
    decompressed (at most :data:`MAX_SVHN_EXAMPLES` images); other variables are skipped
    unread, and only X and y are handed to scipy.io."""
    import scipy.io

    path = Path(path)
    where = _p(path)
    _check_file_size(path, MAX_SVHN_FILE_BYTES, "SVHN .mat file")
    head, found = _mat5_variables(path)
    if "X" not in found or "y" not in found:
        raise DataCorruptError(f"{where}: expected variables 'X' and 'y'")
    (xcls, xs, _, xraw), (ycls, ys, _, yraw) = found["X"], found["y"]
    if len(xs) != 4 or tuple(xs[:3]) != (32, 32, 3):
        raise DataCorruptError(f"{where}: X must have shape (32, 32, 3, N), got {tuple(xs)}")
    if xcls != "uint8":
        raise DataCorruptError(f"{where}: X must be uint8, got {xcls or 'a non-numeric array'}")
    if xs[3] > MAX_SVHN_EXAMPLES:
        raise DataCorruptError(f"{where}: X declares {xs[3]} images, more than the "
                               f"{MAX_SVHN_EXAMPLES} allowed; refused")
    if ycls is None or math.prod(ys) != xs[3]:
        raise DataCorruptError(f"{where}: {math.prod(ys)} labels for {xs[3]} images (y must hold one "
                               f"number per image)")
    try:
        mat = scipy.io.loadmat(io.BytesIO(head + xraw + yraw))
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataCorruptError(f"{where}: not a readable .mat file ({printable(str(exc))[:120]})") from None
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataCorruptError(f"{where}: X must be uint8 of shape (32, 32, 3, N), got {x.dtype} {x.shape}")
    if y.shape[0] != x.shape[3]:
        raise DataCorruptError(f"{where}: {y.shape[0]} labels for {x.shape[3]} images")
    y = _integer_labels(path, y, 1, 10)
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
