"""The documented device command of the GPU campaign runs on the device machine, which has
``python3`` and may have no ``python`` (fails if docs/gpu_campaign.md or the README's GPU section
tells the device to run ``python -m deep.campaign``)."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _device_lines(text: str) -> list[str]:
    """Lines that start the campaign on the device (``--device cuda`` or writing to ``$OUT``)."""
    return [ln for ln in text.splitlines()
            if "deep.campaign" in ln and ("--device cuda" in ln or "$OUT" in ln)]


def test_device_commands_use_python3():
    found = 0
    for doc in ("docs/gpu_campaign.md", "README.md"):
        lines = _device_lines((REPO / doc).read_text(encoding="utf-8"))
        assert lines, f"{doc}: no device command of deep.campaign found"
        for ln in lines:
            assert re.search(r"\bpython3 -m deep\.campaign\b", ln), f"{doc}: {ln.strip()}"
            assert not re.search(r"\bpython -m deep\.campaign\b", ln), f"{doc}: {ln.strip()}"
        found += len(lines)
    assert found >= 3
