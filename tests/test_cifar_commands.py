"""CIFAR-10 through every command that takes it, on a tiny CIFAR-shaped JPEG archive made here:
the fidelity fields ("approximate": true with a reason, "checksum_match") are printed and in each
command's JSON; the official python-batch layout keeps working; the deep experiments' JSON
carries the same fields."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from plumbing.datasets import CIFAR10_CLASSES


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture()
def cifar_jpeg(tmp_path):
    """cifar10-jpeg/cifar10-jpeg.tar.gz with 6 train and 3 test images per class."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10-jpeg"
    folder.mkdir()
    with tarfile.open(folder / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for split, n in (("train", 6), ("test", 3)):
            for k, c in enumerate(CIFAR10_CLASSES):
                for i in range(n):
                    arr = np.clip(rng.normal(25 * k, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                    buf = io.BytesIO()
                    Image.fromarray(arr).save(buf, format="JPEG", quality=75)
                    info = tarfile.TarInfo(f"{split}/{c}/{i:04d}.jpg")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    return folder


def _check_fidelity(d):
    assert d["approximate"] is True
    assert d["checksum_match"] is False
    assert "JPEG-approximate" in d["approximate_reason"]


def test_separation_cifar_jpeg_json_and_output(cifar_jpeg, tmp_path, capsys):
    from simulate.separation import main

    out = tmp_path / "sep.json"
    assert main(["--dataset", "cifar10", "--data-root", str(cifar_jpeg), "--norm", "inf",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "APPROXIMATE" in printed and "JPEG-approximate" in printed
    d = json.loads(out.read_text())
    _check_fidelity(d)
    assert d["n_train"] == 60 and d["n_test"] == 30


def test_separation_official_batch_layout_still_works(tmp_path):
    """The official cifar-10-batches-py layout (synthetic content, so its MD5s do not match)."""
    import pickle

    from simulate.separation import main

    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8),
                         b"labels": [0, 1, 2, 3]}, fh)
    out = tmp_path / "sep.json"
    assert main(["--dataset", "cifar10", "--data-root", str(tmp_path), "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["n_train"] == 20 and d["checksum_match"] is False and d["approximate"] is True
    assert "MD5" in d["approximate_reason"]


def test_separation_real_mnist_is_exact(mnist_root, tmp_path):
    """Real MNIST: checksums match, not approximate (the fields are not constant)."""
    from simulate.separation import main

    npz = tmp_path / "m.npz"
    from plumbing.datasets import load_dataset_with_fidelity
    _, _, fid = load_dataset_with_fidelity("mnist", "test", mnist_root)
    assert fid.as_json()["approximate"] is False and fid.as_json()["checksum_match"] is True
    # and an .npz input is "unknown", never claimed exact
    rng = np.random.default_rng(0)
    np.savez(npz, x_train=rng.integers(0, 256, (10, 4)).astype(np.uint8), y_train=np.arange(10) % 2)
    out = tmp_path / "s.json"
    assert main(["--dataset", "npz", "--data-root", str(npz), "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["checksum_match"] == "unknown" and d["approximate"] is False


def test_separation_hist_title_says_jpeg_approximate(cifar_jpeg, tmp_path, monkeypatch):
    import simulate.separation as sep

    titles = []
    monkeypatch.setattr(sep, "_hist_png", lambda row, args, path, title: titles.append(title))
    assert sep.main(["--dataset", "cifar10", "--data-root", str(cifar_jpeg),
                     "--hist", str(tmp_path / "h.png")]) == 0
    assert titles == ["CIFAR-10, JPEG-approximate"]


def test_distance_classifier_cifar_jpeg(cifar_jpeg, tmp_path, capsys):
    from simulate.distance_classifier import main

    out = tmp_path / "dc.json"
    assert main(["--dataset", "cifar10", "--data-root", str(cifar_jpeg), "--eps-inf", "0.0314",
                 "--eps-2", "0.5", "--json", str(out)]) == 0
    assert "APPROXIMATE" in capsys.readouterr().out
    _check_fidelity(json.loads(out.read_text()))


def test_nn_distance_scaling_cifar_jpeg(cifar_jpeg, tmp_path, capsys):
    from simulate.nn_distance_scaling import main

    out = tmp_path / "nn.json"
    assert main(["--dataset", "cifar10", "--data-root", str(cifar_jpeg), "--sizes", "8,16,32",
                 "--queries", "10", "--lb-points", "40", "--lb-k", "3,5", "--norm", "2",
                 "--json", str(out)]) == 0
    assert "APPROXIMATE" in capsys.readouterr().out
    d = json.loads(out.read_text())
    _check_fidelity(d)
    assert [r["n"] for r in d["rows"]] == [8, 16, 32]


def test_imagefolder_dataset_argument(cifar_jpeg, tmp_path):
    from simulate.separation import main

    out = tmp_path / "s.json"
    tar = cifar_jpeg / "cifar10-jpeg.tar.gz"
    assert main(["--dataset", f"imagefolder:{tar}", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["n_train"] == 60 and d["approximate"] is False and d["checksum_match"] == "unknown"


def test_bad_dataset_name_is_one_line_exit_2(capsys):
    from simulate.separation import main

    with pytest.raises(SystemExit) as exc:
        main(["--dataset", "imagenet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "imagefolder:<path>" in err[0]


def test_deep_result_json_carries_fidelity(cifar_jpeg, tmp_path):
    import torch

    import deep.data as dd
    from deep.experiments.experiment import write_result

    dd._FIDELITY.clear()
    x, y = dd.load_tensors("cifar10", "train", cifar_jpeg, subset=20, seed=0)
    assert tuple(x.shape) == (20, 3, 32, 32) and x.dtype == torch.float32
    path = write_result(tmp_path / "r.json", {"acc": 0.5}, seed=0, device=torch.device("cpu"),
                        started=0.0)
    _check_fidelity(json.loads(path.read_text()))
    _check_fidelity(dd.data_fidelity("cifar10", cifar_jpeg).as_json())
    dd._FIDELITY.clear()


def test_separation_fashion_on_mnist_files_exits_2_naming_both(mnist_root, tmp_path, capsys):
    from plumbing.cli import run_main
    from simulate.separation import main

    out = tmp_path / "s.json"
    with pytest.raises(SystemExit) as exc:
        run_main(main, ["--dataset", "fashion-mnist", "--data-root", str(mnist_root), "--json", str(out)],
                 prog="sep")
    assert exc.value.code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "official MNIST" in err[0] and "Fashion-MNIST" in err[0]
