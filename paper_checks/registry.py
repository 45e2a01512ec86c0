"""Registry of the papers' checkable claims.

Each claim is one :class:`Claim`. Claim modules live in ``paper_checks/claims_*.py`` and call
:func:`register` at import time; :func:`claims` imports them all. The *claimed* value is the
number printed in the paper (this is the only place paper numbers may appear); *measured* comes
from the claim's ``measure`` function, which computes it or reads a committed result under
``results/``.

Comparators (``compare``):
  "approx" |measured − claimed| ≤ tolerance      "le"  measured ≤ claimed + tolerance
  "ge"     measured ≥ claimed − tolerance        "lt"  measured < claimed
  "gt"     measured > claimed                    "true" measured is True (a property holds)
Verdicts: PASS, FAIL, NEEDS-DATA (a dataset or committed result is missing), NEEDS-GPU
(a "gpu" claim without its committed result), ERROR (the measurement raised). A measurement made
on approximate data (``Measured(..., approximate=True)``, e.g. the JPEG re-encoding of CIFAR-10)
never gets a plain PASS/FAIL against a published number: APPROX-AGREES / APPROX-DIFFERS. A
measurement from a run below the paper's protocol (``Measured(..., reduced="why")``, e.g. 2 of
160 epochs) gets REDUCED-AGREES / REDUCED-DIFFERS, never PASS/FAIL; both together give
APPROX-REDUCED-AGREES / APPROX-REDUCED-DIFFERS. A claim that only means something after full
training (``Claim(..., full_training_only=True)``: train-test gaps, memorisation) is not compared
on a reduced run: REDUCED-NOT-JUDGED ("needs full training"), counted apart and never a FAIL.
``Measured.mismatch`` (non-empty) makes the comparison fail whatever the value (e.g. a gap
between accuracies that are not the paper's); ``Measured.tolerance`` replaces the claim's
tolerance for one measurement (e.g. one that depends on the run's evaluation subset).

Cells: a claim that is one printed cell of a paper table (or one numbered statement) names it in
``cell`` (row, column); :func:`register` refuses a second claim for the same (paper, location,
cell), so a cell is judged once whatever result files can answer it.

Kinds (``kind``, a required keyword of every claim): "reproduction", a measured number that could
disagree with the paper; "identity", a check of the project's own algebra (an identity, a
constant, a tautology, a property that holds by construction), reported apart and never counted
as a reproduction. :func:`summarise` gives the counts: reproductions by verdict (APPROX-* counted
apart from PASS/FAIL) and identities (hold / do not hold).
"""
from __future__ import annotations

import importlib
import pkgutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PAPERS = {
    "P&L": "000_6d1c56aef91f0f7e.txt",
    "YRZSC": "001_78cfe8be019d299b.txt",
}
COMPARATORS = ("approx", "le", "ge", "lt", "gt", "true")
COSTS = ("fast", "slow", "gpu")
KINDS = ("reproduction", "identity")
RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


class NeedsData(Exception):
    """Raised by a measure function when a dataset or committed result is not available."""


@dataclass
class Measured:
    """A measurement with optional detail text (e.g. the interval or the source file)."""
    value: object
    detail: str = ""
    approximate: bool = False   # measured on approximate data (e.g. CIFAR-10, JPEG-approximate)
    reduced: str = ""           # non-empty: the run is below the paper's protocol, and why
    tolerance: float | None = None   # replaces the claim's tolerance for this measurement
    mismatch: str = ""          # non-empty: the comparison fails whatever the value, and why


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str                 # key of PAPERS
    location: str              # e.g. "Thm 1", "Table 1", "Eq. (26)"
    claim: str                 # the claim in words
    claimed: object            # the paper's value (number, or True for a property)
    measure: Callable[[], object]
    compare: str = "approx"
    tolerance: float = 0.0
    cost: str = "fast"
    units: str = ""
    kind: str = field(default=None, kw_only=True)   # required: "reproduction" or "identity"
    full_training_only: bool = field(default=False, kw_only=True)  # judged only at full training
    cell: tuple | None = field(default=None, kw_only=True)        # (row, column) of a printed cell
    sources: tuple[str, ...] = field(default=(), kw_only=True)    # result families it reads

    def __post_init__(self):
        if self.paper not in PAPERS:
            raise ValueError(f"paper must be one of {', '.join(PAPERS)}; got {self.paper!r}")
        if self.compare not in COMPARATORS:
            raise ValueError(f"compare must be one of {', '.join(COMPARATORS)}; got {self.compare!r}")
        if self.cost not in COSTS:
            raise ValueError(f"cost must be one of {', '.join(COSTS)}; got {self.cost!r}")
        if self.kind is None:
            raise TypeError(f"claim {self.id!r}: kind is required (kind=\"reproduction\" for a "
                            f"measured number that could disagree with the paper, "
                            f"kind=\"identity\" for a check of our own algebra)")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be >= 0; got {self.tolerance}")


_REGISTRY: dict[str, Claim] = {}
_CELLS: dict[tuple, str] = {}
_LOADED = False


def register(claim: Claim) -> Claim:
    if claim.id in _REGISTRY and _REGISTRY[claim.id] is not claim:
        raise ValueError(f"claim id {claim.id!r} is registered twice")
    if claim.cell is not None:
        key = (claim.paper, claim.location, tuple(claim.cell))
        other = _CELLS.get(key)
        if other is not None and other != claim.id:
            raise ValueError(f"claims {other!r} and {claim.id!r} are the same cell {key}: "
                             f"register one claim per cell")
        _CELLS[key] = claim.id
    _REGISTRY[claim.id] = claim
    return claim


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    pkg_dir = Path(__file__).resolve().parent
    for info in sorted(pkgutil.iter_modules([str(pkg_dir)]), key=lambda m: m.name):
        if info.name.startswith("claims_"):
            importlib.import_module(f"paper_checks.{info.name}")
    _LOADED = True


def claims() -> list[Claim]:
    _load_all()
    return list(_REGISTRY.values())


def verdict(claim: Claim, value, tolerance: float | None = None) -> str:
    if claim.compare == "true":
        return "PASS" if value is True or value == 1 else "FAIL"
    try:
        v, c = float(value), float(claim.claimed)
        t = claim.tolerance if tolerance is None else float(tolerance)
    except (TypeError, ValueError):
        return "ERROR"
    ok = {
        "approx": abs(v - c) <= t,
        "le": v <= c + t,
        "ge": v >= c - t,
        "lt": v < c,
        "gt": v > c,
    }[claim.compare]
    return "PASS" if ok else "FAIL"


def run_claim(claim: Claim) -> dict:
    t0 = time.perf_counter()
    row = {"id": claim.id, "paper": claim.paper, "location": claim.location, "claim": claim.claim,
           "claimed": claim.claimed, "compare": claim.compare, "tolerance": claim.tolerance,
           "cost": claim.cost, "kind": claim.kind}
    try:
        m = claim.measure()
        if not isinstance(m, Measured):
            m = Measured(m)
        detail = m.detail
        if m.tolerance is not None:
            row["tolerance"] = m.tolerance
        v = verdict(claim, m.value, m.tolerance)
        if m.mismatch and v == "PASS":
            v = "FAIL"
        if m.mismatch:
            detail = f"{m.mismatch}; {detail}" if detail else m.mismatch
        v = compose_verdict(v, approximate=m.approximate, reduced=bool(m.reduced),
                            full_training_only=claim.full_training_only)
        if v == NOT_JUDGED:
            detail = f"needs full training ({m.reduced}); not compared" + (f"; {detail}" if detail else "")
        elif m.reduced and m.reduced not in detail:
            detail = f"REDUCED: {m.reduced}" + (f"; {detail}" if detail else "")
        row.update(measured=m.value, detail=detail, verdict=v, approximate=bool(m.approximate),
                   reduced=m.reduced or None)
    except NeedsData as exc:
        row.update(measured=None, detail=str(exc),
                   verdict="NEEDS-GPU" if claim.cost == "gpu" else "NEEDS-DATA")
    except Exception as exc:  # a broken measurement is reported, never hidden
        row.update(measured=None, detail=f"{type(exc).__name__}: {exc}", verdict="ERROR",
                   traceback=traceback.format_exc())
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def run_claims(*, include_slow: bool = False, only: list[str] | None = None) -> list[dict]:
    """Run the fast claims (plus slow and gpu ones with ``include_slow``) or exactly ``only``."""
    all_claims = claims()
    if only:
        known = {c.id for c in all_claims}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise ValueError(f"unknown claim id(s): {', '.join(unknown)}; "
                             f"see `python -m paper_checks --list`")
        selected = [c for c in all_claims if c.id in only]
    else:
        selected = [c for c in all_claims if c.cost == "fast" or include_slow]
    return [run_claim(c) for c in selected]


def load_result(relpath: str):
    """Read a committed JSON result under ``results/``; NeedsData if it is not there."""
    from plumbing.io import read_json

    p = RESULTS_DIR / relpath
    if not p.is_file():
        raise NeedsData(f"no committed result {p.relative_to(RESULTS_DIR.parent)}; "
                        f"produce it with the command named in the claim")
    return read_json(p)


APPROX_VERDICTS = ("APPROX-AGREES", "APPROX-DIFFERS")
REDUCED_VERDICTS = ("REDUCED-AGREES", "REDUCED-DIFFERS", "APPROX-REDUCED-AGREES",
                    "APPROX-REDUCED-DIFFERS")
NOT_JUDGED = "REDUCED-NOT-JUDGED"
#: verdicts of a comparison that was made (in the order of the summary line)
JUDGED_VERDICTS = ("PASS", "FAIL") + APPROX_VERDICTS + REDUCED_VERDICTS


def compose_verdict(v: str, *, approximate: bool, reduced: bool, full_training_only: bool) -> str:
    """PASS/FAIL of the comparison -> the verdict for the data and protocol it was made on:
    reduced + full_training_only -> REDUCED-NOT-JUDGED; reduced -> REDUCED-AGREES/-DIFFERS;
    approximate -> APPROX-...; both -> APPROX-REDUCED-AGREES/-DIFFERS. Other verdicts pass."""
    if v not in ("PASS", "FAIL"):
        return v
    if reduced and full_training_only:
        return NOT_JUDGED
    tail = "AGREES" if v == "PASS" else "DIFFERS"
    if reduced:
        return ("APPROX-REDUCED-" if approximate else "REDUCED-") + tail
    if approximate:
        return "APPROX-" + tail
    return v


def summarise(rows: list[dict]) -> dict:
    """Counts for the summary line: ``reproductions`` (verdict -> count over rows of kind
    "reproduction"; APPROX-AGREES/APPROX-DIFFERS are their own verdicts, never PASS/FAIL) and
    ``identities`` (verdict -> count over rows of kind "identity"). Identities never enter the
    reproduction counts."""
    out: dict[str, dict[str, int]] = {k: {} for k in KINDS}
    for r in rows:
        kind = r.get("kind")
        if kind not in KINDS:
            raise ValueError(f"row {r.get('id')!r} has no valid kind: {kind!r}")
        out[kind][r["verdict"]] = out[kind].get(r["verdict"], 0) + 1
    return {"reproductions": out["reproduction"], "identities": out["identity"]}


def summary_line(rows: list[dict]) -> str:
    """"reproductions: 5 PASS, 0 FAIL, 2 APPROX-AGREES, ..., 3 REDUCED-DIFFERS, ...,
    4 REDUCED-NOT-JUDGED, ... | identities: 7 hold, 0 fail, ..." (approximate-data, reduced-run and
    not-judged verdicts counted apart from PASS/FAIL)."""
    s = summarise(rows)
    rep, ide = dict(s["reproductions"]), dict(s["identities"])
    head = [f"{rep.pop('PASS', 0)} PASS", f"{rep.pop('FAIL', 0)} FAIL"]
    head += [f"{rep.pop(v)} {v}" for v in APPROX_VERDICTS + REDUCED_VERDICTS + (NOT_JUDGED,)
             if v in rep]
    head += [f"{n} {v}" for v, n in sorted(rep.items())]
    tail = [f"{ide.pop('PASS', 0)} hold", f"{ide.pop('FAIL', 0)} fail"]
    tail += [f"{n} {v}" for v, n in sorted(ide.items())]
    return "reproductions: " + ", ".join(head) + " | identities: " + ", ".join(tail)
