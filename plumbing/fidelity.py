"""Data fidelity: is the loaded data byte-identical to the official dataset?

Every result computed from a dataset records a :class:`Fidelity`: whether the files matched the
official content checksums (``checksum_match``: True, False or "unknown"), and whether the data
is *approximate* (not byte-identical to the official data: a lossy re-encoding such as the
JPEG copy of CIFAR-10, or a checksum mismatch), with a one-line reason.

Checksums are of the *decompressed* content where the project knows it, so a re-compressed copy
still matches:

* MNIST: SHA-256 of the four decompressed IDX files, computed from the official MNIST
  distribution (the IDX files of yann.lecun.com, as mirrored by torchvision); the same values are
  listed in the ``SHA256SUMS.raw`` that ships with the project's CI data.
* Fashion-MNIST: only the MD5 of the published ``.gz`` files is known (Zalando Research,
  github.com/zalandoresearch/fashion-mnist, README "Get the data"; the same values are in
  ``torchvision.datasets.FashionMNIST.resources``). A re-compressed or unpacked copy is
  therefore "unknown", not a mismatch.
* MNIST ``.gz``: MD5 of the published archives (``torchvision.datasets.MNIST.resources``), used
  to recognise an MNIST file offered as Fashion-MNIST and vice versa.
* CIFAR-10: MD5 of each file of ``cifar-10-batches-py`` (the unpacked content of the official
  ``cifar-10-python.tar.gz``), as listed in ``torchvision.datasets.CIFAR10.train_list`` /
  ``test_list``.

A file whose checksum is that of *another* known dataset is refused with a ValueError naming
both (Fashion-MNIST requested, official MNIST found).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

# SHA-256 of the decompressed official MNIST IDX files (computed from the official files).
MNIST_IDX_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# MD5 of the published MNIST .gz archives (torchvision.datasets.MNIST.resources).
MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
# MD5 of the published Fashion-MNIST .gz files (github.com/zalandoresearch/fashion-mnist README,
# "Get the data"; torchvision.datasets.FashionMNIST.resources lists the same values).
FASHION_MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
# MD5 of the files of the official cifar-10-batches-py (torchvision.datasets.CIFAR10.train_list,
# test_list).
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}

DISPLAY_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                 "svhn": "SVHN"}

# digest -> (dataset, file stem); for recognising a file of another known dataset
_KNOWN = {}
for _stem, _h in MNIST_IDX_SHA256.items():
    _KNOWN[("sha256-raw", _h)] = ("mnist", _stem)
for _stem, _h in MNIST_GZ_MD5.items():
    _KNOWN[("md5-gz", _h)] = ("mnist", _stem)
for _stem, _h in FASHION_MNIST_GZ_MD5.items():
    _KNOWN[("md5-gz", _h)] = ("fashion-mnist", _stem)
for _stem, _h in CIFAR10_BATCH_MD5.items():
    _KNOWN[("md5-raw", _h)] = ("cifar10", _stem)


def display_name(dataset: str) -> str:
    return DISPLAY_NAMES.get(dataset, dataset)


@dataclass(frozen=True)
class Fidelity:
    """How the loaded data relates to the official dataset.

    checksum_match: True (every file matched an official checksum), False (some file did not, or
    the layout is lossy), or "unknown" (no official checksum known for this form of the data).
    approximate: True when the data is known not to be byte-identical to the official data.
    reason: one line saying why (empty when checksum_match is True).
    """

    dataset: str
    checksum_match: bool | str
    approximate: bool
    reason: str = ""
    source: str = ""

    def as_json(self) -> dict:
        """The fields every result JSON carries."""
        return {"data_fidelity": {"dataset": self.dataset, "checksum_match": self.checksum_match,
                                  "source": self.source},
                "checksum_match": self.checksum_match, "approximate": bool(self.approximate),
                "approximate_reason": self.reason if self.approximate else None}

    def line(self) -> str:
        """One printed line for command output."""
        name = display_name(self.dataset)
        if self.approximate:
            return f"data: {name}, APPROXIMATE ({self.reason})"
        if self.checksum_match is True:
            return f"data: {name}, matches the official checksums"
        return f"data: {name}, checksums {self.checksum_match}" + (f" ({self.reason})" if self.reason else "")

    def title_suffix(self) -> str:
        """For figure titles: ", JPEG-approximate" / ", approximate" or ""."""
        if not self.approximate:
            return ""
        return ", JPEG-approximate" if "JPEG" in self.reason else ", approximate"


def combine(*parts: Fidelity) -> Fidelity:
    """Fidelity of several loads of one dataset (train and test): approximate if any is; the
    checksum matches only if all do; False beats "unknown"."""
    if not parts:
        raise ValueError("parts must hold at least one Fidelity")
    matches = [p.checksum_match for p in parts]
    match = False if False in matches else (True if all(m is True for m in matches) else "unknown")
    reasons = []
    for p in parts:
        if p.reason and p.reason not in reasons:
            reasons.append(p.reason)
    sources = []
    for p in parts:
        if p.source and p.source not in sources:
            sources.append(p.source)
    return Fidelity(parts[0].dataset, match, any(p.approximate for p in parts), "; ".join(reasons),
                    ", ".join(sources))


def unknown(dataset: str, source: str = "", reason: str = "") -> Fidelity:
    return Fidelity(dataset, "unknown", False,
                    reason or f"no official checksums known for {display_name(dataset)}", source)


def _refuse(requested: str, found: str, path: Path, stem: str, how: str) -> ValueError:
    return ValueError(f"{path} is the official {display_name(found)} file {stem} ({how}), but the "
                      f"dataset requested is {display_name(requested)}: point --data-root at the "
                      f"{display_name(requested)} files")


def check_idx_file(requested: str, stem: str, path: Path, raw: bytes, decompressed: bytes) -> Fidelity:
    """Fidelity of one MNIST-format file (``raw``: bytes on disk, ``decompressed``: IDX bytes).
    Raises ValueError if the file is the official file of another known dataset."""
    sha_raw = hashlib.sha256(decompressed).hexdigest()
    md5_gz = hashlib.md5(raw).hexdigest() if raw is not decompressed else None
    hits = []
    if ("sha256-raw", sha_raw) in _KNOWN:
        hits.append((_KNOWN[("sha256-raw", sha_raw)], "SHA-256 of the decompressed content"))
    if md5_gz is not None and ("md5-gz", md5_gz) in _KNOWN:
        hits.append((_KNOWN[("md5-gz", md5_gz)], "MD5 of the published .gz"))
    for (found, found_stem), how in hits:
        if found != requested:
            raise _refuse(requested, found, path, found_stem, how)
    if any(found_stem == stem for (_, found_stem), _ in hits):
        return Fidelity(requested, True, False, "", str(path))
    if hits:  # right dataset, another file (e.g. test images named train)
        (found, found_stem), how = hits[0]
        return Fidelity(requested, False, True,
                        f"{path.name} holds the official {display_name(found)} {found_stem}, not {stem}",
                        str(path))
    if requested == "mnist":
        return Fidelity(requested, False, True,
                        f"{path.name}: decompressed content differs from the official MNIST "
                        f"(SHA-256 mismatch)", str(path))
    return unknown(requested, str(path),
                   f"{path.name}: not the published {display_name(requested)} .gz and no checksum "
                   f"of its decompressed content is known, so it cannot be verified")


def check_cifar_batch(path: Path) -> Fidelity:
    """Fidelity of one official-format CIFAR-10 python batch file (MD5 of the file)."""
    md5 = hashlib.md5(Path(path).read_bytes()).hexdigest()
    expected = CIFAR10_BATCH_MD5.get(Path(path).name)
    if expected is not None and md5 == expected:
        return Fidelity("cifar10", True, False, "", str(path))
    return Fidelity("cifar10", False, True,
                    f"{Path(path).name}: MD5 differs from the official CIFAR-10 python batch", str(path))
