"""Figure registry. Modules ``figures/fig_*.py`` decorate a function ``make(out_dir) -> Path`` with
:func:`figure`; ``python -m figures`` imports them all and renders each to PNG.

A figure function computes its data with our code (small, fast settings) or reads committed JSON
under ``results/``; if a needed result is missing it raises ``paper_checks.NeedsData`` and the
figure is reported as skipped, never faked. A figure that fails (e.g. a corrupt result file) is
reported as FAILED with the reason and the other figures are still written.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class FigureSpec:
    name: str
    description: str
    make: Callable[[Path], Path]
    paper_ref: str = ""


_FIGURES: dict[str, FigureSpec] = {}
_LOADED = False


def figure(name: str, description: str, paper_ref: str = ""):
    """Register ``make(out_dir: Path) -> Path`` as figure ``name`` (PNG written under out_dir)."""

    def deco(fn):
        if name in _FIGURES and _FIGURES[name].make is not fn:
            raise ValueError(f"figure {name!r} is registered twice")
        _FIGURES[name] = FigureSpec(name, description, fn, paper_ref)
        return fn

    return deco


def figures() -> list[FigureSpec]:
    global _LOADED
    if not _LOADED:
        pkg_dir = Path(__file__).resolve().parent
        for info in sorted(pkgutil.iter_modules([str(pkg_dir)]), key=lambda m: m.name):
            if info.name.startswith("fig_"):
                importlib.import_module(f"figures.{info.name}")
        _LOADED = True
    return list(_FIGURES.values())


def render(out_dir: str | Path, only: list[str] | None = None) -> list[tuple[str, str, str]]:
    """Render the figures; returns (name, status, path-or-reason) per figure, status one of
    ``written``, ``skipped`` (a needed result is missing) or ``FAILED`` (any other error: the
    reason names it, and the remaining figures are still rendered)."""
    return list(iter_render(out_dir, only))


def iter_render(out_dir: str | Path, only: list[str] | None = None):
    """:func:`render`, yielding each figure's row as soon as it is done."""
    import matplotlib

    matplotlib.use("Agg")
    from paper_checks.registry import NeedsData

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = figures()
    if only:
        known = {f.name for f in specs}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise ValueError(f"unknown figure(s): {', '.join(unknown)}; see `python -m figures --list`")
        specs = [f for f in specs if f.name in only]
    for spec in specs:
        try:
            path = spec.make(out)
            yield (spec.name, "written", str(path))
        except NeedsData as exc:
            yield (spec.name, "skipped", str(exc))
        except Exception as exc:  # noqa: BLE001 - one broken figure must not stop the others
            import matplotlib.pyplot as plt

            plt.close("all")
            reason = " ".join(str(exc).split()) or type(exc).__name__
            yield (spec.name, "FAILED", f"{type(exc).__name__}: {reason}")


def save_png(fig, out_dir: Path, name: str) -> Path:
    """Save a matplotlib figure atomically as ``out_dir/name.png`` and close it."""
    import io

    import matplotlib.pyplot as plt

    from plumbing.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(Path(out_dir) / f"{name}.png", buf.getvalue())
