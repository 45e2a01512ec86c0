"""Dataset loaders: real MNIST (counts, label histogram) and tiny files written in the real
CIFAR-10 python-batch and SVHN .mat formats; header/shape/label validation."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import scipy.io

from plumbing.datasets import (DataCorruptError, DataMissingError, load_dataset, read_cifar_batch,
                             read_idx, read_svhn_mat)


def test_real_mnist_counts_and_labels(mnist_train, mnist_test):
    (x, y), (xt, yt) = mnist_train, mnist_test
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert xt.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert x.max() == 255 and x.min() == 0


def _write_cifar(folder, n_per=4, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per, 3072)).astype(np.uint8)
        labels = rng.integers(0, 10, n_per).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n_per}, fh)
        batches[name] = (data, labels)
    return batches


def test_cifar10_python_batches(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    x, y = load_dataset("cifar10", "train", tmp_path)
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (20,)
    d0, l0 = batches["data_batch_1"]
    # channel-first rows -> HWC: pixel (0, 1) red/green/blue are entries 1, 1025, 2049
    assert x[0, 0, 1].tolist() == [d0[0, 1], d0[0, 1025], d0[0, 2049]]
    assert y[:4].tolist() == l0
    xt, yt = load_dataset("cifar10", "test", tmp_path)
    assert xt.shape == (4, 32, 32, 3)


def test_cifar10_bad_batches(tmp_path):
    p = tmp_path / "bad"
    with open(p, "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataCorruptError, match="3072"):
        read_cifar_batch(p)
    with open(p, "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, fh)
    with pytest.raises(DataCorruptError, match="0..9"):
        read_cifar_batch(p)
    p.write_bytes(b"not a pickle")
    with pytest.raises(DataCorruptError):
        read_cifar_batch(p)
    with pytest.raises(DataMissingError, match="data_batch_1"):
        load_dataset("cifar10", "train", tmp_path / "nowhere")


def test_svhn_mat(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (32, 32, 3, 5)).astype(np.uint8)
    y = np.array([[1], [10], [5], [10], [9]], dtype=np.uint8)
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(tmp_path / "svhn" / "train_32x32.mat", {"X": X, "y": y})
    x, lab = load_dataset("svhn", "train", tmp_path)
    assert x.shape == (5, 32, 32, 3) and lab.tolist() == [1, 0, 5, 0, 9]
    assert np.array_equal(x[2], X[:, :, :, 2])
    scipy.io.savemat(tmp_path / "bad.mat", {"X": X, "y": np.array([[0], [1], [2], [3], [4]])})
    with pytest.raises(DataCorruptError, match="1..10"):
        read_svhn_mat(tmp_path / "bad.mat")
    scipy.io.savemat(tmp_path / "bad2.mat", {"X": X[:, :, :2], "y": y})
    with pytest.raises(DataCorruptError, match="shape"):
        read_svhn_mat(tmp_path / "bad2.mat")
    with pytest.raises(DataMissingError, match="test_32x32.mat"):
        load_dataset("svhn", "test", tmp_path)


def test_idx_header_validation(tmp_path):
    good = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    (tmp_path / "a.gz").write_bytes(gzip.compress(good))
    assert read_idx(tmp_path / "a.gz").tolist() == [1, 2, 3]
    (tmp_path / "b").write_bytes(good[:-1])
    with pytest.raises(DataCorruptError, match="holds 2 bytes"):
        read_idx(tmp_path / "b")
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("imagenet")


# ---- fidelity: official content checksums ------------------------------------------------------

def test_real_mnist_matches_official_checksums(mnist_root):
    from plumbing.datasets import load_dataset_with_fidelity

    _, _, fid = load_dataset_with_fidelity("mnist", "test", mnist_root)
    assert fid.checksum_match is True and fid.approximate is False
    assert fid.as_json()["approximate"] is False and fid.as_json()["checksum_match"] is True


def test_fashion_mnist_requested_on_real_mnist_is_refused(mnist_root):
    from plumbing.datasets import load_dataset_with_fidelity

    with pytest.raises(ValueError, match="official MNIST.*Fashion-MNIST"):
        load_dataset("fashion-mnist", "test", mnist_root)
    with pytest.raises(ValueError, match="Fashion-MNIST"):
        load_dataset_with_fidelity("fashion-mnist", "train", mnist_root)


def test_recompressed_mnist_still_matches_and_changed_pixel_is_approximate(mnist_root, tmp_path):
    from plumbing.datasets import load_dataset_with_fidelity

    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        raw = gzip.decompress((mnist_root / f"{stem}.gz").read_bytes())
        (tmp_path / stem).write_bytes(raw)                     # uncompressed copy: same content
    _, _, fid = load_dataset_with_fidelity("mnist", "test", tmp_path)
    assert fid.checksum_match is True and not fid.approximate
    raw = bytearray((tmp_path / "t10k-images-idx3-ubyte").read_bytes())
    raw[1000] ^= 1                                             # one pixel changed by one grey level
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes(raw))
    x, _, fid = load_dataset_with_fidelity("mnist", "test", tmp_path)
    assert fid.checksum_match is False and fid.approximate is True
    assert "t10k-images-idx3-ubyte" in fid.reason and "SHA-256" in fid.reason


def test_unknown_fashion_copy_is_unknown_not_exact(tmp_path):
    from plumbing.datasets import load_dataset_with_fidelity

    img = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(2 * 784)
    lab = bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([3, 4])
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(img)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(lab)
    _, y, fid = load_dataset_with_fidelity("fashion-mnist", "test", tmp_path)
    assert y.tolist() == [3, 4]
    assert fid.checksum_match == "unknown" and fid.approximate is False


def test_synthetic_cifar_batches_do_not_match_official_md5(tmp_path):
    from plumbing.datasets import load_dataset_with_fidelity
    from plumbing.fidelity import CIFAR10_BATCH_MD5

    _write_cifar(tmp_path / "cifar-10-batches-py")
    _, _, fid = load_dataset_with_fidelity("cifar10", "test", tmp_path)
    assert fid.checksum_match is False and fid.approximate and "test_batch" in fid.reason
    assert set(CIFAR10_BATCH_MD5) == {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch"}


def test_real_cifar10_jpeg_copy_from_cache(mnist_root):
    """The shared JPEG copy of CIFAR-10, only when its decoded cache already exists (decoding the
    60,000 JPEGs takes about half a minute; the cache makes this test about a second)."""
    from plumbing.datasets import load_dataset_with_fidelity
    from plumbing.imagefolder import cache_paths

    tar = mnist_root.parent / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
    if not tar.is_file() or not any(p.is_file() for p in cache_paths(tar)):
        pytest.skip("CIFAR-10 JPEG copy or its decoded cache not present")
    x, y, fid = load_dataset_with_fidelity("cifar10", "train", tar.parent)
    xt, yt, _ = load_dataset_with_fidelity("cifar10", "test", tar.parent)
    assert x.shape == (50000, 32, 32, 3) and xt.shape == (10000, 32, 32, 3)
    assert np.bincount(y).tolist() == [5000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    # channel means as measured in the copy's README (official: 0.4914, 0.4822, 0.4465)
    means = x.reshape(-1, 3).sum(0, dtype=np.int64) / (255 * 50000 * 1024)
    assert np.allclose(means, [0.4913, 0.4821, 0.4465], atol=6e-5)
    assert fid.approximate is True and fid.checksum_match is False
