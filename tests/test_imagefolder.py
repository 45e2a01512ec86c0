"""Image-folder datasets (plumbing.imagefolder): tiny PNG/JPEG folders and .tar.gz archives made
here; pixel round trip, class order, cache reuse / invalidation / read-only fallback / corrupt
cache; the CIFAR-10 image-folder route and its approximate fidelity."""
from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from plumbing import imagefolder
from plumbing.datasets import (CIFAR10_CLASSES, DataCorruptError, image_folder_classes,
                               load_dataset, load_dataset_with_fidelity, load_image_folder)
from plumbing.imagefolder import cache_paths, read_image_folder


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _img_bytes(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _make_set(classes, n_train=3, n_test=2, size=8, seed=0):
    """{(split, class, name): uint8 HxWx3 array}: distinct smooth images (a random colour plus a
    random gradient, so that JPEG keeps them close) with a few random pixels on top."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for c in classes:
            for i in range(n):
                base = rng.uniform(40, 200, 3) + rng.uniform(-40, 40, 3) * ramp[:, None, None] \
                    + rng.uniform(-40, 40, 3) * ramp[None, :, None]
                img = np.clip(np.round(base), 0, 255).astype(np.uint8)
                img[rng.integers(0, size, 2)[0], rng.integers(0, size, 2)[1]] = rng.integers(0, 256, 3)
                out[(split, c, f"{i:04d}")] = img
    return out


def _write_folder(root, images, fmt="PNG"):
    ext = ".png" if fmt == "PNG" else ".jpg"
    for (split, c, name), arr in images.items():
        d = root / split / c
        d.mkdir(parents=True, exist_ok=True)
        (d / (name + ext)).write_bytes(_img_bytes(arr, fmt))
    return root


def _write_tar(path, images, fmt="PNG", prefix=""):
    ext = ".png" if fmt == "PNG" else ".jpg"
    with tarfile.open(path, "w:gz") as tar:
        for (split, c, name), arr in sorted(images.items(), reverse=True):  # archive order != sorted
            data = _img_bytes(arr, fmt)
            info = tarfile.TarInfo(f"{prefix}{split}/{c}/{name}{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _expected(images, split, classes):
    keys = sorted((k for k in images if k[0] == split), key=lambda k: (classes.index(k[1]), k[2]))
    return np.stack([images[k] for k in keys]), np.array([classes.index(k[1]) for k in keys])


def test_png_folder_round_trip_and_sorted_class_order(tmp_path):
    classes = ["zebra", "apple", "mango"]
    images = _make_set(classes)
    root = _write_folder(tmp_path / "set", images)
    x, y = load_image_folder(root, "train")
    order = sorted(classes)
    ex, ey = _expected(images, "train", order)
    assert x.dtype == np.uint8 and x.shape == (9, 8, 8, 3)
    assert np.array_equal(x, ex) and y.tolist() == ey.tolist()       # PNG is lossless
    assert image_folder_classes(root) == tuple(order)
    xt, yt = load_image_folder(root, "test")
    assert np.array_equal(xt, _expected(images, "test", order)[0])


def test_tar_gz_read_directly_with_prefix_and_jpeg(tmp_path):
    classes = ["b", "a"]
    images = _make_set(classes, seed=1)
    tar = _write_tar(tmp_path / "set.tar.gz", images, fmt="JPEG", prefix="top/")
    x, y = load_image_folder(tar, "train")
    ex, ey = _expected(images, "train", ["a", "b"])
    assert y.tolist() == ey.tolist()
    err = np.abs(x.astype(int) - ex.astype(int))
    assert 0 < err.mean() < 20          # JPEG: close to, but not equal to, the source pixels
    x2, _ = load_dataset(f"imagefolder:{tmp_path}", "train")   # folder holding one archive
    assert np.array_equal(x2, x)
    _, _, fid = load_dataset_with_fidelity(f"imagefolder:{tar}", "train")
    assert fid.checksum_match == "unknown" and "lossy" in fid.reason


def test_grey_png_gives_3d_array(tmp_path):
    rng = np.random.default_rng(2)
    for c in ("x", "y"):
        (tmp_path / "g" / "train" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (5, 6), dtype=np.uint8)).save(tmp_path / "g" / "train" / c / f"{i}.png")
    x, y = load_image_folder(tmp_path / "g", "train")
    assert x.shape == (4, 5, 6) and y.tolist() == [0, 0, 1, 1]


def test_mixed_sizes_and_bad_image_named(tmp_path):
    images = _make_set(["a", "b"], n_test=0)
    root = _write_folder(tmp_path / "s", images)
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(root / "train" / "b" / "odd.png")
    with pytest.raises(DataCorruptError, match="odd.png"):
        load_image_folder(root, "train")
    (root / "train" / "b" / "odd.png").write_bytes(b"not an image")
    with pytest.raises(DataCorruptError, match="odd.png"):
        load_image_folder(root, "train")


def test_cache_reused_then_invalidated_when_source_changes(tmp_path, monkeypatch):
    images = _make_set(["a", "b"])
    tar = _write_tar(tmp_path / "d.tar.gz", images)
    calls = []
    real = imagefolder.decode_source
    monkeypatch.setattr(imagefolder, "decode_source", lambda *a, **k: calls.append(1) or real(*a, **k))
    x1, _ = load_image_folder(tar, "train")
    beside, _ = cache_paths(tar)
    assert beside.is_file() and len(calls) == 1
    with np.load(beside, allow_pickle=False) as z:
        assert np.array_equal(z["train_images"], x1)
    x2, _ = load_image_folder(tar, "train")
    assert len(calls) == 1 and np.array_equal(x1, x2)                # from the cache
    images[("train", "a", "0000")] = np.full((8, 8, 3), 7, np.uint8)
    _write_tar(tar, images)
    os.utime(tar, ns=(1, 1))  # even with an old mtime, size or sha changes the key
    x3, _ = load_image_folder(tar, "train")
    assert len(calls) == 2 and np.array_equal(x3[0], images[("train", "a", "0000")])


def test_folder_cache_invalidated_by_new_file(tmp_path):
    images = _make_set(["a", "b"])
    root = _write_folder(tmp_path / "f", images)
    x1, _ = load_image_folder(root, "train")
    assert (root / ".robustgen.npz").is_file()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "b" / "9999.png")
    x2, y2 = load_image_folder(root, "train")
    assert len(x2) == len(x1) + 1 and y2[-1] == 1 and x2[-1].max() == 0


def test_read_only_data_folder_uses_user_cache(tmp_path):
    """A data folder without write bits is never written into, even by root (who could)."""
    images = _make_set(["a", "b"])
    (tmp_path / "ro").mkdir()
    tar = _write_tar(tmp_path / "ro" / "d.tar.gz", images)
    os.chmod(tmp_path / "ro", 0o555)
    try:
        x, _ = load_image_folder(tar, "train")
        beside, fallback = cache_paths(tar)
        assert not beside.exists() and fallback.is_file()
        assert str(fallback).startswith(str(tmp_path / "xdg" / "robustgen"))
        data = read_image_folder(tar)
        assert data.from_cache and data.cache_path == fallback
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_unwritable_beside_falls_back(tmp_path, monkeypatch):
    """Same fallback, independent of the user id: the folder next to the data reports
    not-writable."""
    images = _make_set(["a", "b"])
    tar = _write_tar(tmp_path / "d.tar.gz", images)
    beside, fallback = cache_paths(tar)
    monkeypatch.setattr(imagefolder, "_writable_dir", lambda d: d != beside.parent)
    load_image_folder(tar, "train")
    assert not beside.exists() and fallback.is_file()
    assert read_image_folder(tar).cache_path == fallback


def test_corrupt_cache_is_named_and_rebuilt(tmp_path, capsys):
    images = _make_set(["a", "b"])
    tar = _write_tar(tmp_path / "d.tar.gz", images)
    x1, _ = load_image_folder(tar, "train")
    beside, _ = cache_paths(tar)
    beside.write_bytes(b"garbage, not a zip file")
    x2, _ = load_image_folder(tar, "train")
    err = capsys.readouterr().err
    assert str(beside) in err and "corrupt" in err
    assert np.array_equal(x1, x2)
    with np.load(beside, allow_pickle=False) as z:                    # rewritten, valid again
        assert np.array_equal(z["train_images"], x1)


def _cifar_like(tmp_path, fmt):
    images = _make_set(list(CIFAR10_CLASSES), n_train=2, n_test=1, size=32, seed=3)
    (tmp_path / "cifar10-jpeg").mkdir()
    return images, _write_tar(tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar.gz", images, fmt=fmt)


def test_cifar10_image_folder_official_class_order_and_approximate(tmp_path):
    images, _ = _cifar_like(tmp_path, "JPEG")
    x, y, fid = load_dataset_with_fidelity("cifar10", "train", tmp_path)     # finds cifar10-jpeg/
    assert x.shape == (20, 32, 32, 3)
    # official order (airplane=0 ... truck=9); the alphabetical order of these names happens to
    # be the same, so the order is checked separately below with a permuted class tuple
    assert y.tolist() == [i for i in range(10) for _ in range(2)]
    ex, _ = _expected(images, "train", list(CIFAR10_CLASSES))
    assert np.abs(x.astype(int) - ex.astype(int)).mean() < 20
    assert fid.approximate is True and fid.checksum_match is False and "JPEG-approximate" in fid.reason
    assert fid.as_json()["approximate"] is True


def test_cifar10_image_folder_wrong_classes_refused(tmp_path):
    images = _make_set(["cat", "dog"], size=32)
    _write_folder(tmp_path / "cifar10", images)
    with pytest.raises(DataCorruptError, match="airplane"):
        load_dataset("cifar10", "train", tmp_path)


def test_cifar10_png_folder_is_approximate_unknown(tmp_path):
    images = _make_set(list(CIFAR10_CLASSES), n_train=1, n_test=1, size=32)
    _write_folder(tmp_path, images)
    x, y, fid = load_dataset_with_fidelity("cifar10", "test", tmp_path)
    assert np.array_equal(x, _expected(images, "test", list(CIFAR10_CLASSES))[0])
    assert fid.checksum_match == "unknown" and fid.approximate is True


def test_given_class_order_is_used(tmp_path):
    images = _make_set(["a", "b", "c"], n_test=0)
    root = _write_folder(tmp_path / "s", images)
    x, y = load_image_folder(root, "train", classes=("c", "a", "b"))
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.array_equal(x[0], images[("train", "c", "0000")])
    assert np.array_equal(x[3], images[("train", "a", "0000")])
