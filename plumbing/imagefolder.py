"""One-folder-per-class image datasets (torchvision's ``ImageFolder`` layout), decoded once and
cached as uint8 arrays.

Layout: ``<root>/train/<class>/*.jpg|png|...`` and ``<root>/test/<class>/*``, either as unpacked
folders or packed in one ``.tar``/``.tar.gz``/``.tgz`` (read directly, nothing is unpacked; a
common leading folder inside the archive is allowed). Images are decoded with Pillow into one
uint8 array per split, ``(N, H, W, 3)`` for colour and ``(N, H, W)`` when every image is
grey-scale; all images must have one size. Order: class by class, files sorted by name inside a
class.

Class order: ``classes`` when given (the official order of a known dataset, e.g. CIFAR-10), else
the sorted folder names. The folder names must then be exactly those classes.

Cache: the decoded arrays go into an ``.npz`` (``allow_pickle=False``) next to the data
(``<archive stem>.robustgen.npz`` beside an archive, ``<root>/.robustgen.npz`` in a folder), or,
when that folder is read-only, into ``$XDG_CACHE_HOME/robustgen/`` (default
``~/.cache/robustgen/``). The cache is keyed on the source (size, modification time and SHA-256
of the archive; relative path, size and modification time of every image file of a folder), so
a changed source is decoded again. It is written atomically; a corrupt cache is named on stderr
and rebuilt.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plumbing.io import atomic_writer
from plumbing.progress import progress

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SPLITS = ("train", "test")
CACHE_VERSION = 1


class ImageFolderError(ValueError):
    """An image folder or archive is malformed (message names the file)."""


@dataclass
class ImageFolderData:
    """Decoded image folder: per split (images uint8, labels int64), the class names, whether
    any image was stored in a lossy format (JPEG/WebP), the source and the cache file used."""

    splits: dict
    classes: tuple
    lossy: bool
    source: Path
    cache_path: Path | None
    from_cache: bool


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def find_source(root: Path, exclude=("cifar-10-python.tar.gz",)) -> Path | None:
    """``root`` itself if it is an archive or holds ``train/``; else the single archive in
    ``root``; else None."""
    root = Path(root)
    if is_archive(root):
        return root
    if (root / "train").is_dir():
        return root
    if root.is_dir():
        archives = sorted(p for p in root.iterdir() if is_archive(p) and p.name not in exclude)
        if len(archives) == 1:
            return archives[0]
        if len(archives) > 1:
            raise ImageFolderError(f"{root}: several archives ({', '.join(p.name for p in archives)}); "
                                   f"pass the one to use as the data root")
    return None


def _split_class(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) of a member path ``[prefix/]split/class/file``, else None."""
    if len(parts) < 3 or parts[-3] not in SPLITS:
        return None
    return parts[-3], parts[-2]


def _list_folder(root: Path):
    out = []
    for split in SPLITS:
        d = root / split
        if not d.is_dir():
            continue
        for cdir in sorted(p for p in d.iterdir() if p.is_dir()):
            for f in sorted(cdir.iterdir()):
                if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS:
                    out.append((split, cdir.name, f.name, f))
    return out


def source_key(source: Path) -> str:
    """Identity of the source: size, mtime and SHA-256 of an archive; the list of image files
    with size and mtime for a folder."""
    source = Path(source).resolve()
    if source.is_file():
        st = source.stat()
        h = hashlib.sha256()
        with open(source, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return f"archive|{source}|{st.st_size}|{st.st_mtime_ns}|{h.hexdigest()}"
    h = hashlib.sha256()
    for split, cls, name, f in _list_folder(source):
        st = f.stat()
        h.update(f"{split}/{cls}/{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return f"folder|{source}|{h.hexdigest()}"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "robustgen"


def cache_paths(source: Path) -> tuple[Path, Path]:
    """(cache next to the data, cache in the user's cache folder) for ``source``."""
    source = Path(source).resolve()
    if source.is_file():
        name = source.name
        for suf in ARCHIVE_SUFFIXES:
            if name.lower().endswith(suf):
                name = name[: -len(suf)]
                break
        beside = source.parent / f"{name}.robustgen.npz"
    else:
        name = source.name
        beside = source / ".robustgen.npz"
    tag = hashlib.sha256(str(source).encode()).hexdigest()[:16]
    return beside, user_cache_dir() / f"{name}-{tag}.npz"


def _decode(data: bytes, where: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in ("L", "1"):                     # grey-scale stays (H, W)
                arr = np.asarray(im.convert("L"), dtype=np.uint8)
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageFolderError(f"{where}: not a readable image ({exc})") from None
    return arr


def _iter_sources(source: Path):
    """Yield the number of images first, then (split, class, file name, bytes, where) for each
    image in archive or folder order."""
    if source.is_file():
        try:
            tar = tarfile.open(source, "r:*")
            members = [m for m in tar.getmembers()
                       if m.isfile() and Path(m.name).suffix.lower() in IMG_EXTENSIONS
                       and _split_class(Path(m.name).parts) is not None]
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ImageFolderError(f"{source}: not a readable tar archive ({exc})") from None
        yield len(members)
        try:
            for m in members:
                split, cls = _split_class(Path(m.name).parts)
                try:
                    fh = tar.extractfile(m)
                    data = fh.read() if fh is not None else b""
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise ImageFolderError(f"{source}: member {m.name} cannot be read ({exc})") from None
                yield split, cls, Path(m.name).name, data, f"{source}:{m.name}"
        finally:
            tar.close()
    else:
        files = _list_folder(source)
        yield len(files)
        for split, cls, name, f in files:
            yield split, cls, name, f.read_bytes(), str(f)


def decode_source(source: Path, classes=None, desc: str = "decoding images") -> ImageFolderData:
    """Decode every image of ``source`` (archive or folder) into per-split uint8 arrays."""
    source = Path(source)
    it = _iter_sources(source)
    total = next(it)
    if total == 0:
        raise ImageFolderError(f"{source}: no images found in the layout train/<class>/<image> "
                               f"(extensions {', '.join(IMG_EXTENSIONS)})")
    items = []
    lossy = False
    shape = None
    for split, cls, name, data, where in progress(it, total=total, desc=desc, unit="img"):
        arr = _decode(data, where)
        if shape is None:
            shape = arr.shape[:2]
        elif arr.shape[:2] != shape:
            raise ImageFolderError(f"{where}: image size {arr.shape[1]}x{arr.shape[0]} differs from "
                                   f"the first image's {shape[1]}x{shape[0]}; all images must have one size")
        lossy = lossy or Path(name).suffix.lower() in LOSSY_EXTENSIONS
        items.append((split, cls, name, arr))
    found = sorted({cls for _, cls, _, _ in items})
    if classes is None:
        classes = tuple(found)
    else:
        classes = tuple(classes)
        if set(found) != set(classes):
            missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
            raise ImageFolderError(f"{source}: class folders {found} are not the expected classes "
                                   f"{list(classes)} (missing {missing}, unexpected {extra})")
    index = {c: i for i, c in enumerate(classes)}
    colour = any(a.ndim == 3 for *_, a in items)
    splits = {}
    for split in SPLITS:
        sel = sorted(((index[c], n, a) for s, c, n, a in items if s == split), key=lambda t: (t[0], t[1]))
        if not sel:
            continue
        arrs = [a if (a.ndim == 3 or not colour) else np.repeat(a[:, :, None], 3, axis=2) for _, _, a in sel]
        splits[split] = (np.stack(arrs).astype(np.uint8, copy=False),
                         np.array([i for i, _, _ in sel], dtype=np.int64))
    if "train" not in splits:
        raise ImageFolderError(f"{source}: no train/<class>/<image> files found")
    return ImageFolderData(splits, classes, lossy, source, None, False)


def _write_cache(path: Path, data: ImageFolderData, key: str) -> None:
    """Atomic .npz write (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"format_version": np.array(CACHE_VERSION), "source_key": np.array(key),
              "classes": np.array(list(data.classes), dtype=str), "lossy": np.array(bool(data.lossy))}
    for split, (x, y) in data.splits.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    with atomic_writer(path) as fh:
        np.savez(fh, **arrays)


class _Stale(Exception):
    pass


def _read_cache(path: Path, key: str, classes) -> ImageFolderData:
    """Read a cache; raises _Stale if it belongs to another source/version, ImageFolderError if
    it is corrupt."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != CACHE_VERSION or str(z["source_key"]) != key:
                raise _Stale()
            cached_classes = tuple(str(c) for c in z["classes"])
            if classes is not None and tuple(classes) != cached_classes:
                raise _Stale()
            splits = {}
            for split in SPLITS:
                if f"{split}_images" in z.files:
                    x, y = z[f"{split}_images"], z[f"{split}_labels"]
                    if x.dtype != np.uint8 or y.dtype != np.int64 or len(x) != len(y) or x.ndim not in (3, 4):
                        raise ImageFolderError(f"{path}: arrays of unexpected type or shape")
                    if len(y) and (y.min() < 0 or y.max() >= len(cached_classes)):
                        raise ImageFolderError(f"{path}: labels outside 0..{len(cached_classes) - 1}")
                    splits[split] = (x, y)
            if "train" not in splits:
                raise ImageFolderError(f"{path}: no train arrays")
            lossy = bool(z["lossy"])
    except _Stale:
        raise
    except ImageFolderError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ImageFolderError(f"{path}: {type(exc).__name__}: {exc}") from None
    return ImageFolderData(splits, cached_classes, lossy, Path(), path, True)


def _writable_dir(d: Path) -> bool:
    """A folder we may write a cache into: writable for this user AND not marked read-only by its
    mode bits (root may write anywhere; a shared data folder without write bits, as in CI, is
    still left untouched)."""
    return d.is_dir() and os.access(d, os.W_OK) and bool(d.stat().st_mode & 0o222)


def read_image_folder(root, classes=None, *, cache: bool = True) -> ImageFolderData:
    """Decoded image folder at ``root`` (an archive, a folder holding ``train/``, or a folder
    holding exactly one archive), from the cache when it is current.

    ``classes``: the class order (official order of a known dataset); default sorted names.
    """
    root = Path(root).expanduser()
    source = find_source(root)
    if source is None:
        raise FileNotFoundError(f"{root}: no image folder found (expected {root}/train/<class>/<image> "
                                f"or a .tar.gz holding train/<class>/<image>)")
    if not cache:
        return decode_source(source, classes)
    key = source_key(source)
    beside, fallback = cache_paths(source)
    for path in (beside, fallback):
        if not path.is_file():
            continue
        try:
            data = _read_cache(path, key, classes)
        except _Stale:
            continue
        except ImageFolderError as exc:
            print(f"robustgen: cache file {path} is corrupt ({exc}); decoding {source} again and "
                  f"rewriting the cache", file=sys.stderr)
            continue
        data.source = source
        return data
    data = decode_source(source, classes, desc=f"decoding {source.name} (once; cached)")
    for path in (beside, fallback):
        if not _writable_dir(path.parent) and path is beside:
            continue
        try:
            _write_cache(path, data, key)
            data.cache_path = path
            break
        except OSError as exc:
            if path is fallback:
                print(f"robustgen: could not write the cache {path} ({exc}); images will be decoded "
                      f"again next time", file=sys.stderr)
    return data
