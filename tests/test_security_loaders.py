"""Untrusted input files: dataset loaders and training checkpoints never run code from a file
(restricted unpickler for CIFAR-10 batches, ``weights_only`` checkpoints), cap what a file may
decode to (declared image sizes, gzip/tar/.mat contents checked before decompressing), refuse
silently-wrong inputs (stale caches, 16-bit/float images, several dataset roots in one archive,
empty class folders, non-integer labels, non-28x28 MNIST) and print file names with control
characters escaped. Stale temporary files of killed writers are cleaned up."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image, ImageFile

from plumbing import imagefolder
from plumbing.datasets import (DataCorruptError, load_dataset, read_cifar_batch, read_svhn_mat)
from plumbing.imagefolder import read_image_folder
from plumbing.io import CorruptFileError, atomic_write_bytes, load_checkpoint

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


class _Payload:
    """Unpickling this creates the file ``marker`` (stands for any command a pickle may run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _refused_without_running(fn, marker, exc_type, pattern):
    """fn() must raise exc_type matching pattern, and must not have run the payload."""
    try:
        fn()
        exc = None
    except Exception as e:  # noqa: BLE001 - checked below
        exc = e
    assert not marker.exists(), "the payload ran: unpickling executed code from the file"
    assert isinstance(exc, exc_type) and re.search(pattern, str(exc)), repr(exc)


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height 8-bit grey pixels (tiny file, no real data)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _tar(path, members: dict, dirs=()):
    with tarfile.open(path, "w:gz") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _folder(root, files: dict):
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _small_set(n=2, size=4):
    rng = np.random.default_rng(0)
    return {f"{s}/{c}/{i}.png": _png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            for s in ("train", "test") for c in ("a", "b") for i in range(n)}


def _count_pixel_loads(monkeypatch):
    """Number of Pillow pixel decodes (ImageFile.load calls) made from now on."""
    calls = []
    real = ImageFile.ImageFile.load

    def load(self, *a, **k):
        calls.append(self.size)
        return real(self, *a, **k)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def _peak_bytes(fn):
    """(exception raised or None, peak traced Python/numpy allocation in bytes) of fn()."""
    tracemalloc.start()
    try:
        try:
            fn()
            exc = None
        except Exception as e:  # noqa: BLE001 - returned to the test
            exc = e
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---- 1. no code runs from a data or checkpoint file ---------------------------------------------

def test_cifar_batch_with_code_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "data_batch_1"
    with open(p, "wb") as fh:
        pickle.dump({b"data": _Payload(marker), b"labels": [0]}, fh, protocol=2)
    _refused_without_running(lambda: read_cifar_batch(p), marker, DataCorruptError,
                             "data_batch_1.*refused")


def test_faithful_cifar_batch_still_loads(tmp_path):
    """The official batches: a protocol-2 pickle of a dict with bytes keys, a uint8 (N, 3072)
    array, a list of int labels, bytes file names and a bytes batch label."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (5, 3072), dtype=np.uint8)
    labels = [3, 0, 9, 1, 7]
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": labels, b"data": data,
             b"filenames": [b"leptodactylus_pentadactylus_s_000004.png"] * 5}
    for proto in (2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        p = tmp_path / f"data_batch_{proto}"
        p.write_bytes(pickle.dumps(batch, protocol=proto))
        x, y = read_cifar_batch(p)
        assert x.shape == (5, 32, 32, 3) and y.tolist() == labels
        assert x[2, 0, 1].tolist() == [data[2, 1], data[2, 1025], data[2, 2049]]


def test_checkpoint_with_code_payload_is_refused(tmp_path):
    import torch

    marker = tmp_path / "pwned"
    ck = tmp_path / "run.ckpt"
    torch.save({"model": _Payload(marker), "epoch": 0}, ck)
    _refused_without_running(lambda: load_checkpoint(ck), marker, CorruptFileError, f"{ck}.*refused")


def test_planted_checkpoint_in_stack_campaign_is_refused(tmp_path):
    import torch

    from deep.experiments.campaign_stack import Group, Schedule, train_group
    from deep.methods import parse_method_spec

    marker = tmp_path / "pwned"
    ck = tmp_path / "group.ckpt"
    torch.save({"plan": _Payload(marker)}, ck)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 10, (8,))
    _refused_without_running(
        lambda: train_group(Group("cnn1", "single", [parse_method_spec("natural")]), model, x, y,
                            epochs=1, batch_size=4, sched=Schedule(lr=0.1, momentum=0.0, milestones=()),
                            seed=0, checkpoint=ck),
        marker, ValueError, f"{ck}.*refused")


def test_planted_checkpoint_in_pl_campaign_is_refused(tmp_path, monkeypatch):
    import torch

    from deep.experiments import campaign_pl, pl_runs

    marker = tmp_path / "pwned"
    ck = tmp_path / "run.ckpt"
    torch.save({"model": _Payload(marker)}, ck)
    monkeypatch.setattr(pl_runs, "prepare_data", lambda cfg, root: {"x": torch.zeros(2, 3)})
    monkeypatch.setattr(pl_runs, "make_model", lambda cfg, shape, x: torch.nn.Linear(3, 2))
    _refused_without_running(lambda: campaign_pl._load_trained(None, {"checkpoint": ck}, None, "cpu"),
                             marker, ValueError, f"{ck}.*refused")


def test_stack_campaign_resume_through_weights_only_checkpoint(tmp_path):
    """Interrupted after 3 steps and resumed from the checkpoint == uninterrupted run."""
    import torch

    from deep.experiments.campaign_stack import Group, Schedule, train_group
    from deep.methods import parse_method_spec

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 4, 4, generator=g), torch.randint(0, 10, (24,), generator=g)
    kw = dict(epochs=2, batch_size=8, sched=Schedule(lr=0.1, momentum=0.9, milestones=(0.5,)), seed=0)
    group = Group("cnn1", "single", [parse_method_spec("natural")])
    full = model()
    train_group(group, full, x, y, **kw)
    ck = tmp_path / "g.ckpt"
    part = model()
    assert not train_group(group, part, x, y, checkpoint=ck, max_steps=4, **kw)["finished"]
    resumed = model()
    assert train_group(group, resumed, x, y, checkpoint=ck, **kw)["finished"]
    for p, q in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_trainer_checkpoint_with_numpy_metrics_resumes(tmp_path):
    """Metrics an evaluate() returns as numpy scalars are stored as plain numbers, so the
    weights-only checkpoint still loads and training resumes."""
    import torch

    from deep.trainer import TrainConfig, fit

    def loss(m, xb, yb):
        return torch.nn.functional.cross_entropy(m(xb), yb)

    def evaluate(m, epoch):
        return {"acc": np.float64(0.5), "per_class": np.array([1, 2]), "n": np.int64(3)}
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    cfg = TrainConfig(epochs=2, batch_size=4)
    ck = tmp_path / "run.ckpt"
    fit(torch.nn.Linear(4, 2), loss, x, y, cfg, evaluate=evaluate, checkpoint=ck, stop_after_epochs=1)
    hist = fit(torch.nn.Linear(4, 2), loss, x, y, cfg, evaluate=evaluate, checkpoint=ck)
    assert [h["epoch"] for h in hist] == [0, 1] and hist[0]["acc"] == 0.5
    assert hist[0]["per_class"] == [1, 2] and type(hist[0]["n"]) is int   # plain, JSON-ready


# ---- 2. memory bombs ------------------------------------------------------------------------------

def test_png_header_bomb_is_refused_naming_the_file(tmp_path):
    files = _small_set()
    files["train/a/big.png"] = _png_header_only(60000, 60000)
    root = _folder(tmp_path / "set", files)
    with pytest.raises(ValueError, match="big.png.*pixels.*refused before decoding"):
        read_image_folder(root)


def test_image_over_pixel_cap_refused_before_decoding(tmp_path, monkeypatch):
    """5000 x 5000 = 25 M pixels: under Pillow's own limit, over ours (2^24 per image)."""
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, format="PNG")
    root = _folder(tmp_path / "set", {"train/a/0.png": buf.getvalue(), "train/b/0.png": buf.getvalue()})
    loads = _count_pixel_loads(monkeypatch)
    with pytest.raises(ValueError, match="0.png.*5000x5000"):
        read_image_folder(root)
    assert loads == []


def test_many_images_over_memory_refused_before_decoding(tmp_path, monkeypatch):
    """A small archive of 40 PNGs, each 1000 x 1000 (3 MB decoded): 120 MB in all, more than the
    (patched) 64 MiB of memory available; refused from the headers, nothing decoded, no cache."""
    import plumbing.memory

    monkeypatch.setattr(plumbing.memory, "available_bytes", lambda: 64 * MIB)
    img = _png(np.zeros((1000, 1000, 3), np.uint8))
    tar = _tar(tmp_path / "d.tar.gz", {f"train/{c}/{i}.png": img for c in "ab" for i in range(20)})
    assert tar.stat().st_size < 100_000
    loads = _count_pixel_loads(monkeypatch)
    with pytest.raises(ValueError, match=r"d\.tar\.gz.*memory"):
        read_image_folder(tar)
    assert loads == []
    assert not list(tmp_path.glob("*.npz")) and not (tmp_path / "xdg").exists()


def test_cifar_image_folder_wrong_size_refused_before_decoding(tmp_path, monkeypatch):
    from plumbing.datasets import CIFAR10_CLASSES

    img = _png(np.zeros((64, 64, 3), np.uint8))
    files = {f"train/{c}/{i}.png": img for c in CIFAR10_CLASSES for i in range(2)}
    _tar(tmp_path / "cifar10-jpeg.tar.gz", files)
    loads = _count_pixel_loads(monkeypatch)
    with pytest.raises(DataCorruptError, match="32x32"):
        load_dataset("cifar10", "train", tmp_path)
    assert loads == []


def test_tar_member_over_size_cap_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefolder, "MAX_IMAGE_FILE_BYTES", 1 * MIB, raising=False)
    files = _small_set()
    files["train/a/zzz.png"] = b"\0" * (8 * MIB)
    tar = _tar(tmp_path / "d.tar.gz", files)
    exc, peak = _peak_bytes(lambda: read_image_folder(tar, cache=False))
    assert isinstance(exc, ValueError) and "zzz.png" in str(exc), exc
    assert peak < 4 * MIB, f"read {peak / MIB:.1f} MiB before refusing"


def _idx(shape, body: bytes) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + b"".join(int(s).to_bytes(4, "big") for s in shape) + body


def _gzip_stream(head: bytes, zeros: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(head)]
    block = b"\0" * MIB
    for _ in range(zeros // MIB):
        out.append(c.compress(block))
    out.append(c.flush())
    return b"".join(out)


def test_mnist_gzip_bomb_stops_at_the_declared_size(tmp_path):
    """Header: 10 images of 28 x 28; the gzip stream expands to 64 MiB. Refused after reading
    about the declared 7840 bytes, not the whole stream."""
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(_gzip_stream(_idx((10, 28, 28), b""), 64 * MIB))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx((10,), bytes(10))))
    assert (tmp_path / "train-images-idx3-ubyte.gz").stat().st_size < 200_000
    exc, peak = _peak_bytes(lambda: load_dataset("mnist", "train", tmp_path))
    assert isinstance(exc, DataCorruptError) and "train-images-idx3-ubyte.gz" in str(exc), exc
    assert peak < 8 * MIB, f"decompressed {peak / MIB:.1f} MiB before refusing"


def test_mnist_header_declaring_huge_count_refused_unread(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx((2 ** 31, 28, 28), b"")))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx((10,), bytes(10))))
    with pytest.raises(DataCorruptError, match="train-images-idx3-ubyte.gz.*2147483648"):
        load_dataset("mnist", "train", tmp_path)


def test_svhn_mat_with_compressed_junk_variable_not_expanded(tmp_path):
    X = np.zeros((32, 32, 3, 2), np.uint8)
    p = tmp_path / "train_32x32.mat"
    scipy.io.savemat(p, {"X": X, "y": np.array([[1], [2]], np.uint8),
                         "junk": np.zeros(64 * MIB, np.uint8)}, do_compression=True)
    assert p.stat().st_size < 1 * MIB
    exc, peak = _peak_bytes(lambda: read_svhn_mat(p))
    assert exc is None, exc
    assert peak < 16 * MIB, f"expanded {peak / MIB:.1f} MiB for a 6 KB data set"


def test_svhn_mat_wrong_declared_shape_refused(tmp_path):
    p = tmp_path / "train_32x32.mat"
    scipy.io.savemat(p, {"X": np.zeros((64, 64, 3, 2), np.uint8), "y": np.array([[1], [2]], np.uint8)},
                     do_compression=True)
    with pytest.raises(DataCorruptError, match="train_32x32.mat.*32, 32, 3"):
        read_svhn_mat(p)


def test_command_line_exits_2_naming_the_bomb(tmp_path):
    files = _small_set()
    files["train/a/big.png"] = _png_header_only(60000, 60000)
    root = _folder(tmp_path / "set", files)
    r = subprocess.run([sys.executable, "-m", "simulate.separation", "--dataset", f"imagefolder:{root}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert "big.png" in lines[0] and "Traceback" not in r.stderr


# ---- 3. silently wrong input ----------------------------------------------------------------------

def _bmp(value) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buf, format="BMP")
    return buf.getvalue()


def test_folder_cache_notices_changed_pixels_with_same_size_and_mtime(tmp_path):
    """cp -p / rsync -a keep size and modification time; the pixels must still be new."""
    root = _folder(tmp_path / "set", {f"train/{c}/0.bmp": _bmp(10) for c in "ab"})
    f = root / "train" / "a" / "0.bmp"
    st = f.stat()
    x1, _ = read_image_folder(root).splits["train"]
    assert x1[0].max() == 10
    f.write_bytes(_bmp(200))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    x2, _ = read_image_folder(root).splits["train"]
    assert x2[0].max() == 200


@pytest.mark.parametrize("mode,arr,fmt", [
    ("I;16", np.full((4, 4), 40000, np.uint16), "PNG"),
    ("I", np.full((4, 4), 70000, np.int32), "TIFF"),
    ("F", np.full((4, 4), 0.5, np.float32), "TIFF"),
])
def test_16bit_and_float_images_refused(tmp_path, mode, arr, fmt):
    buf = io.BytesIO()
    im = Image.fromarray(arr)
    assert im.mode == mode
    im.save(buf, format=fmt)
    ext = ".png" if fmt == "PNG" else ".tif"
    files = {f"train/{c}/0{ext}": buf.getvalue() for c in "ab"}
    root = _folder(tmp_path / "set", files)
    with pytest.raises(ValueError, match=f"0{ext}.*{mode}.*8-bit"):
        read_image_folder(root)


def test_archive_with_two_dataset_roots_refused(tmp_path):
    files = {f"one/{k}": v for k, v in _small_set().items()}
    files.update({f"two/{k}": v for k, v in _small_set().items()})
    tar = _tar(tmp_path / "d.tar.gz", files)
    with pytest.raises(ValueError, match=r"d\.tar\.gz.*one.*two"):
        read_image_folder(tar)


@pytest.mark.parametrize("bad", ["../train/a/x.png", "/train/a/x.png", "d/../../train/b/y.png"])
def test_archive_with_escaping_member_names_refused(tmp_path, bad):
    files = _small_set()
    files[bad] = files["train/a/0.png"]
    tar = _tar(tmp_path / "d.tar.gz", files)
    with pytest.raises(ValueError, match=r"d\.tar\.gz"):
        read_image_folder(tar)


def test_empty_class_folder_refused(tmp_path):
    root = _folder(tmp_path / "set", _small_set())
    (root / "train" / "c").mkdir()
    with pytest.raises(ValueError, match="train/c.*no image"):
        read_image_folder(root)
    tar = _tar(tmp_path / "d.tar.gz", _small_set(), dirs=["train/c"])
    with pytest.raises(ValueError, match="train/c.*no image"):
        read_image_folder(tar)


def test_control_characters_in_names_are_escaped(tmp_path):
    evil = "x\x1b]0;owned\x07\x1b[2J.png"
    files = _small_set()
    files[f"train/a/{evil}"] = b"not an image"
    root = _folder(tmp_path / "set", files)
    with pytest.raises(ValueError) as exc:
        read_image_folder(root)
    msg = str(exc.value)
    assert "\x1b" not in msg and "\x07" not in msg and "\\x1b]0;owned" in msg
    tar = _tar(tmp_path / "d.tar.gz", files)
    with pytest.raises(ValueError) as exc:
        read_image_folder(tar)
    assert "\x1b" not in str(exc.value) and "\\x1b" in str(exc.value)


def test_mnist_images_must_be_28x28(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx((2, 32, 32), bytes(2 * 32 * 32)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx((2,), bytes(2)))
    with pytest.raises(DataCorruptError, match="train-images-idx3-ubyte.*28x28.*32x32"):
        load_dataset("mnist", "train", tmp_path)


@pytest.mark.parametrize("bad,pattern", [(1.5, "integer.*1.5"), (float("inf"), "integer.*inf"),
                                         (float("nan"), "integer.*nan"), (True, "integer.*True"),
                                         (2 + 1j, "refused.*complex")])
def test_cifar_non_integer_labels_refused(tmp_path, bad, pattern):
    """1.5 used to become label 1, inf crashed while formatting the message; complex numbers are
    Python objects the restricted unpickler does not build."""
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, bad]}, protocol=2))
    with pytest.raises(DataCorruptError, match=rf"data_batch_1.*{pattern}"):
        read_cifar_batch(p)


@pytest.mark.parametrize("bad", [1.5, np.inf, np.nan])
def test_svhn_non_integer_labels_refused(tmp_path, bad):
    p = tmp_path / "train_32x32.mat"
    scipy.io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1.0], [bad]])})
    with pytest.raises(DataCorruptError, match="train_32x32.mat.*integer"):
        read_svhn_mat(p)
    scipy.io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1.0], [10.0]])})
    assert read_svhn_mat(p)[1].tolist() == [1, 0]


# ---- 4. temporary files of killed writers ---------------------------------------------------------

def _temps(folder: Path, name: str):
    return sorted(p.name for p in folder.iterdir() if p.name != name and name in p.name)


def test_temp_file_of_killed_writer_cleaned_on_next_write(tmp_path):
    target = tmp_path / "result.json"
    code = ("import sys, time; from plumbing.io import atomic_writer\n"
            f"with atomic_writer({str(target)!r}) as fh:\n"
            "    fh.write(b'half'); fh.flush(); print('ready', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(_temps(tmp_path, "result.json")) == 1
    finally:
        proc.kill()
        proc.wait()
    atomic_write_bytes(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert _temps(tmp_path, "result.json") == []


def test_live_and_unrelated_temp_files_are_kept(tmp_path):
    from plumbing.io import atomic_writer

    target = tmp_path / "r.json"
    other = tmp_path / ".other.json.1.tmp"
    other.write_bytes(b"x")
    old_style = tmp_path / ".r.json.abc12345.tmp"          # an older naming: removed only when old
    old_style.write_bytes(b"x")
    with atomic_writer(target) as fh:                     # this process is alive: its temp stays
        fh.write(b"1")
        atomic_write_bytes(target, b"2")
        assert old_style.exists()
        fh.write(b"1")
    assert target.read_bytes() == b"11" and other.exists()
    day_ago = time.time() - 2 * 86400
    os.utime(old_style, (day_ago, day_ago))
    atomic_write_bytes(target, b"3")
    assert not old_style.exists() and other.exists()
