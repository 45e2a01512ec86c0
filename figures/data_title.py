"""Figure titles that carry the data's fidelity: a result computed on approximate data (the JPEG
copy of CIFAR-10) is titled "CIFAR-10, JPEG-approximate"."""
from __future__ import annotations

from plumbing.fidelity import display_name


def data_title(result: dict, dataset: str | None = None) -> str:
    """"CIFAR-10", "CIFAR-10, JPEG-approximate" or "<name>, approximate" from a result JSON."""
    name = display_name(dataset or result.get("dataset") or "")
    if dataset is None and not name:
        name = "data"
    approx = result.get("approximate")
    if approx is None and (dataset or result.get("dataset")) == "cifar10":
        approx = True   # CIFAR-10 results without a fidelity record are not trusted as exact
    if not approx:
        return name
    reason = result.get("approximate_reason") or ""
    return f"{name}, JPEG-approximate" if ("JPEG" in reason or not reason) else f"{name}, approximate"
