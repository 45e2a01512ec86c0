"""Command-line plumbing shared by every ``python -m`` entry point.

Contract (developers' guide, Standards): bad input exits with status 2 and prints exactly one line
saying what is wrong (no usage dump, no traceback). Library errors (ValueError, TypeError,
FileNotFoundError) raised while validating or loading are turned into that one line too.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, Sequence


class UsageError(Exception):
    """Raised by a command for bad input; reported as one line with exit status 2."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as a single line and exits 2."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def die(message: str, prog: str | None = None) -> None:
    prog = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "robustgen")
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv=None, prog: str | None = None) -> int:
    """Run ``main(argv)`` and turn input errors into one line on stderr plus exit status 2."""
    try:
        rc = main(argv)
    except (UsageError, ValueError, TypeError, FileNotFoundError) as exc:
        die(str(exc) or type(exc).__name__, prog)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        raise SystemExit(130)
    return 0 if rc is None else int(rc)


# ---- argparse "type=" helpers: each raises ArgumentTypeError with the allowed range ---------

def int_sci(min_value: int = 1, name: str = "value") -> Callable[[str], int]:
    """Integer that may be written in scientific notation ("1e4"), at least ``min_value``."""

    def parse(text: str) -> int:
        try:
            val = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {min_value} "
                                             f"(scientific notation allowed), got {text!r}") from None
        if not math.isfinite(val) or val != int(val) or val < min_value:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {min_value}, got {text!r}")
        return int(val)

    return parse


def float_range(low: float | None = None, high: float | None = None, *, low_open=False,
                high_open=False, name: str = "value") -> Callable[[str], float]:
    """Finite float inside an interval; the error names the interval."""
    lo_br, hi_br = ("(" if low_open else "["), (")" if high_open else "]")
    rng = f"{lo_br}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_br}"

    def parse(text: str) -> float:
        try:
            val = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number in {rng}, got {text!r}") from None
        bad = (not math.isfinite(val)
               or (low is not None and (val < low or (low_open and val == low)))
               or (high is not None and (val > high or (high_open and val == high))))
        if bad:
            raise argparse.ArgumentTypeError(f"{name} must be in {rng}, got {text!r}")
        return val

    return parse


def csv_list(item: Callable[[str], object] = str, name: str = "list") -> Callable[[str], list]:
    """Comma-separated list; each item parsed by ``item``."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"{name} must be a non-empty comma-separated list")
        return [item(p) for p in parts]

    return parse
