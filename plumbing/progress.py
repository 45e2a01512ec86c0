"""Progress bars: tqdm when stderr is a terminal, silent otherwise (project standards: long work shows progress)."""
from __future__ import annotations

import sys


def progress(iterable=None, *, total=None, desc=None, disable: bool | None = None, **kwargs):
    """Wrap ``iterable`` in a tqdm bar that is off when stderr is not a terminal."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, **kwargs)
