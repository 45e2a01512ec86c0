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
``~/.cache/robustgen/``). The cache is keyed on the source's content (size, modification time
and SHA-256 of the archive; relative path, size and SHA-256 of every image file of a folder, so
a copy that keeps sizes and times, as ``cp -p`` or ``rsync -a`` do, is still noticed). It is
written atomically; a corrupt cache is named on stderr and rebuilt.

Untrusted files (refused with :class:`ImageFolderError` naming the file; names in every message
have control characters escaped, :func:`plumbing.printable.printable`):

* sizes are checked from the image headers before any pixel is decoded: at most
  :data:`MAX_IMAGE_PIXELS` pixels per image, one size for all images (or the size the caller
  expects, e.g. 32x32 for CIFAR-10), and the whole decoded set must fit in the available memory;
  an image file or archive member may hold at most :data:`MAX_IMAGE_FILE_BYTES`;
* only 8-bit images are read (Pillow modes 1, L, LA, P, PA, RGB, RGBA, RGBX, CMYK, YCbCr):
  16-bit and floating-point images (modes I;16, I, F) are refused, not truncated;
* an archive holds one data set: member names that are absolute or contain ``..``, image
  members under two different top folders and duplicate members are refused;
* an empty class folder is refused (its class would silently vanish from the labels).
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import sys
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plumbing.io import atomic_writer
from plumbing.printable import printable
from plumbing.progress import progress

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SPLITS = ("train", "test")
CACHE_VERSION = 2          # 2: caches decoded under the size, mode and layout checks above
MAX_IMAGE_PIXELS = 1 << 24                 # per image (16.7 M pixels, e.g. 4096 x 4096)
MAX_IMAGE_FILE_BYTES = 64 << 20            # per image file or archive member
MAX_ARCHIVE_MEMBERS = 2_000_000
EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


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
            raise ImageFolderError(f"{_p(root)}: several archives ({', '.join(_p(p.name) for p in archives)}); "
                                   f"pass the one to use as the data root")
    return None


def _split_class(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) of a member path ``[prefix/]split/class/file``, else None."""
    if len(parts) < 3 or parts[-3] not in SPLITS:
        return None
    return parts[-3], parts[-2]


def _p(text) -> str:
    return printable(text)


def _check_file_bytes(size: int, where: str) -> None:
    if size > MAX_IMAGE_FILE_BYTES:
        raise ImageFolderError(f"{where}: {size} bytes, more than an image file may hold "
                               f"({MAX_IMAGE_FILE_BYTES} bytes); refused unread")


def _list_folder(root: Path):
    """(split, class, file name, path) of every image of a folder, class folders sorted, files
    sorted by name; an empty class folder is refused."""
    out = []
    for split in SPLITS:
        d = root / split
        if not d.is_dir():
            continue
        for cdir in sorted(p for p in d.iterdir() if p.is_dir()):
            files = [f for f in sorted(cdir.iterdir()) if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS]
            if not files:
                raise ImageFolderError(f"{_p(cdir)}: class folder {_p(split + '/' + cdir.name)} holds no "
                                       f"image ({', '.join(IMG_EXTENSIONS)}); remove it or add its images")
            out.extend((split, cdir.name, f.name, f) for f in files)
    return out


def _archive_members(source: Path, tar: tarfile.TarFile):
    """Image members of an archive as (split, class, member), after the layout checks: names
    neither absolute nor containing '..', every member within the size cap, one dataset root
    (common leading folder), no duplicate and no empty class folder."""
    where = _p(source)
    members, roots, class_dirs, seen = [], set(), set(), set()
    count = 0
    for m in tar:
        count += 1
        if count > MAX_ARCHIVE_MEMBERS:
            raise ImageFolderError(f"{where}: more than {MAX_ARCHIVE_MEMBERS} archive members; refused")
        name = m.name
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts or ".." in name.split("\\"):
            raise ImageFolderError(f"{where}: member {_p(name)} points outside the archive (absolute "
                                   f"name or '..'); refused")
        if m.isfile():
            _check_file_bytes(m.size, f"{where}: member {_p(name)}")
        parts = tuple(q for q in parts if q not in ("", "."))
        if m.isdir() and len(parts) >= 2 and parts[-2] in SPLITS:
            class_dirs.add(parts)
        if not (m.isfile() and Path(name).suffix.lower() in IMG_EXTENSIONS):
            continue
        sc = _split_class(parts)
        if sc is None:
            continue
        key = parts
        if key in seen:
            raise ImageFolderError(f"{where}: member {_p(name)} appears twice; refused")
        seen.add(key)
        roots.add(parts[:-3])
        members.append((sc[0], sc[1], m))
    if len(roots) > 1:
        shown = ", ".join(_p("/".join(r) or "(top level)") for r in sorted(roots))
        raise ImageFolderError(f"{where}: images under several top folders ({shown}); an archive "
                               f"must hold one data set (<folder>/train/<class>/<image>)")
    root = next(iter(roots)) if roots else ()
    with_images = {parts[:-1] for parts in seen}
    for d in sorted(class_dirs):
        if d[:-2] == root and d not in with_images:
            raise ImageFolderError(f"{where}: class folder {_p('/'.join(d))} holds no image "
                                   f"({', '.join(IMG_EXTENSIONS)}); remove it or add its images")
    return members


def source_key(source: Path) -> str:
    """Identity of the source: size, mtime and SHA-256 of an archive; the list of image files
    with size and SHA-256 of their content for a folder (copies that keep times are noticed)."""
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
        fh_hash = hashlib.sha256()
        size = 0
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                fh_hash.update(block)
                size += len(block)
        h.update(f"{split}/{cls}/{name}|{size}|{fh_hash.hexdigest()}\n".encode("utf-8", "surrogateescape"))
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
    return beside, user_cache_dir() / f"{name}-{tag}.v{CACHE_VERSION}.npz"


def _open_image(data: bytes, where: str):
    """The Pillow image of ``data`` with only its header read (no pixels decoded); refuses a
    header declaring more than :data:`MAX_IMAGE_PIXELS` pixels or a mode other than 8-bit."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # checked below
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageFolderError(f"{where}: image header declares more than {2 * Image.MAX_IMAGE_PIXELS} "
                               f"pixels (at most {MAX_IMAGE_PIXELS} pixels per image are read); "
                               f"refused before decoding") from None
    except UnidentifiedImageError:
        raise ImageFolderError(f"{where}: not a readable image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageFolderError(f"{where}: not a readable image ({_p(exc)})") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS or w < 1 or h < 1:
        im.close()
        raise ImageFolderError(f"{where}: image header declares {w}x{h} pixels, more than the "
                               f"{MAX_IMAGE_PIXELS} pixels per image read; refused before decoding")
    if im.mode not in EIGHT_BIT_MODES:
        mode = im.mode
        im.close()
        raise ImageFolderError(f"{where}: pixel mode {_p(mode)} (16-bit or floating-point samples) is "
                               f"not read: only 8-bit images are supported (refused rather than "
                               f"clipped); convert the files to 8-bit")
    return im


def _decode_image(im, where: str):
    """Decode an image opened by :func:`_open_image` into uint8 (H, W) or (H, W, 3)."""
    from PIL import Image

    try:
        with im:
            im.load()
            if im.mode in ("L", "1"):                     # grey-scale stays (H, W)
                arr = np.asarray(im.convert("L"), dtype=np.uint8)
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageFolderError(f"{where}: not a readable image ({_p(exc)})") from None
    return arr


def _decode(data: bytes, where: str):
    return _decode_image(_open_image(data, where), where)


def _iter_sources(source: Path):
    """Yield the (split, class) of every image first (a list), then (split, class, file name,
    bytes, where) for each image in archive or folder order; names in ``where`` are escaped."""
    if source.is_file():
        try:
            tar = tarfile.open(source, "r:*")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ImageFolderError(f"{_p(source)}: not a readable tar archive ({_p(exc)})") from None
        try:
            try:
                members = _archive_members(source, tar)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ImageFolderError(f"{_p(source)}: not a readable tar archive ({_p(exc)})") from None
            yield [(split, cls) for split, cls, _ in members]
            for split, cls, m in members:
                where = f"{_p(source)}:{_p(m.name)}"
                try:
                    fh = tar.extractfile(m)
                    data = fh.read(MAX_IMAGE_FILE_BYTES + 1) if fh is not None else b""
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise ImageFolderError(f"{where}: cannot be read ({_p(exc)})") from None
                _check_file_bytes(len(data), where)
                yield split, cls, Path(m.name).name, data, where
        finally:
            tar.close()
    else:
        files = _list_folder(source)
        yield [(split, cls) for split, cls, _, _ in files]
        for split, cls, name, f in files:
            where = _p(f)
            _check_file_bytes(f.stat().st_size, where)
            with open(f, "rb") as fh:
                data = fh.read(MAX_IMAGE_FILE_BYTES + 1)
            _check_file_bytes(len(data), where)
            yield split, cls, name, data, where


def _check_classes(source: Path, found, classes):
    found = sorted(set(found))
    if classes is None:
        return tuple(found)
    classes = tuple(classes)
    if set(found) != set(classes):
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise ImageFolderError(f"{_p(source)}: class folders {_p(found)} are not the expected classes "
                               f"{_p(list(classes))} (missing {_p(missing)}, unexpected {_p(extra)})")
    return classes


def decode_source(source: Path, classes=None, desc: str = "decoding images", *,
                  image_size: tuple[int, int] | None = None) -> ImageFolderData:
    """Decode every image of ``source`` (archive or folder) into per-split uint8 arrays.

    ``image_size`` (height, width): the size every image must have (else the first image's).
    Sizes, modes and the memory the decoded set needs are checked from the headers before the
    pixels of any image are decoded."""
    from plumbing.memory import check_fits

    source = Path(source)
    it = _iter_sources(source)
    listing = next(it)
    total = len(listing)
    if total == 0:
        raise ImageFolderError(f"{_p(source)}: no images found in the layout train/<class>/<image> "
                               f"(extensions {', '.join(IMG_EXTENSIONS)})")
    classes = _check_classes(source, [c for _, c in listing], classes)
    if "train" not in {s for s, _ in listing}:
        raise ImageFolderError(f"{_p(source)}: no train/<class>/<image> files found")
    items = []
    lossy = False
    shape = tuple(image_size) if image_size is not None else None
    checked = False
    for split, cls, name, data, where in progress(it, total=total, desc=desc, unit="img"):
        im = _open_image(data, where)
        size = (im.size[1], im.size[0])
        if shape is None:
            shape = size
        if size != shape:
            im.close()
            first = "expected" if image_size is not None else "the first image's"
            raise ImageFolderError(f"{where}: image size {size[1]}x{size[0]} differs from {first} "
                                   f"{shape[1]}x{shape[0]}; all images must have one size")
        if not checked:     # decoded arrays, then their stacked copy: 2 x N x H x W x 3 bytes
            try:
                check_fits(2.0 * total * shape[0] * shape[1] * 3,
                           f"{_p(source)}: {total} images of {shape[1]}x{shape[0]} pixels",
                           "use a smaller image set")
            except ValueError as exc:
                im.close()
                raise ImageFolderError(str(exc)) from None
            checked = True
        arr = _decode_image(im, where)
        lossy = lossy or Path(name).suffix.lower() in LOSSY_EXTENSIONS
        items.append((split, cls, name, arr))
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


def read_image_folder(root, classes=None, *, cache: bool = True,
                      image_size: tuple[int, int] | None = None) -> ImageFolderData:
    """Decoded image folder at ``root`` (an archive, a folder holding ``train/``, or a folder
    holding exactly one archive), from the cache when it is current.

    ``classes``: the class order (official order of a known dataset); default sorted names.
    ``image_size``: (height, width) every image must have (checked before decoding).
    """
    root = Path(root).expanduser()
    source = find_source(root)
    if source is None:
        raise FileNotFoundError(f"{_p(root)}: no image folder found (expected {_p(root)}/train/<class>/"
                                f"<image> or a .tar.gz holding train/<class>/<image>)")
    if not cache:
        return decode_source(source, classes, image_size=image_size)
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
            print(f"robustgen: cache file {_p(path)} is corrupt ({_p(exc)}); decoding {_p(source)} "
                  f"again and rewriting the cache", file=sys.stderr)
            continue
        data.source = source
        return data
    data = decode_source(source, classes, desc=f"decoding {_p(source.name)} (once; cached)",
                         image_size=image_size)
    for path in (beside, fallback):
        if not _writable_dir(path.parent) and path is beside:
            continue
        try:
            _write_cache(path, data, key)
            data.cache_path = path
            break
        except OSError as exc:
            if path is fallback:
                print(f"robustgen: could not write the cache {_p(path)} ({_p(exc)}); images will be "
                      f"decoded again next time", file=sys.stderr)
    return data
