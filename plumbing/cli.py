"""Command-line plumbing shared by every ``python -m`` entry point.

Contract (project standards): bad input exits with status 2 and prints exactly one line saying
what is wrong (no usage dump, no traceback). Library errors (ValueError, TypeError,
FileNotFoundError) raised while validating or loading are turned into that one line too, and so are
operating-system errors (OSError: a full disk, a permission, a refused connection). A run that
could not produce a result (:class:`RunFailed`, e.g. diverged training) is one line with exit
status 1. Integer options are parsed exactly and within :data:`INT_OPTION_MAXIMA`.

Every option shows its help text and default in ``--help`` (:class:`HelpFormatter`); the usage
examples of a module docstring keep their line breaks.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, Sequence


class UsageError(Exception):
    """Raised by a command for bad input; reported as one line with exit status 2."""


class RunFailed(Exception):
    """A run that could not produce a result (e.g. training diverged); reported as one line with
    exit status 1 (the input was accepted, the computation failed)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks (usage examples stay on their own lines)
    and appends "(default: X)" to every option's help unless the text already names its
    default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if text == argparse.SUPPRESS:
            return text
        if "default" in text.lower() or action.default is argparse.SUPPRESS or action.required:
            return text
        if action.option_strings and action.nargs != 0 and action.default is None:
            return (text + " " if text else "") + "(default: not set)"
        if action.option_strings and action.nargs != 0:
            return (text + " " if text else "") + "(default: %(default)s)"
        return text


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as a single line and exits 2, with :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def die(message: str, prog: str | None = None) -> None:
    prog = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "robustgen")
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


RESUME_MESSAGE = "interrupted; rerun the same command to resume from the last checkpoint"
NO_RESUME_MESSAGE = ("interrupted; this command keeps no checkpoint: rerun it to start again "
                     "(files it finished writing are complete)")


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and what to do."""
    import errno

    what = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = ("; files already written are complete (writes are atomic): free some space and "
                "rerun the same command")
    return f"{what}{where}{hint}"


def run_main(main: Callable[[Sequence[str] | None], int | None], argv=None, prog: str | None = None,
             *, resumable: bool | str | None = None) -> int:
    """Run ``main(argv)`` and turn input errors into one line on stderr plus exit status 2.

    ``resumable`` picks the line printed on Ctrl-C (exit 130): True for commands that checkpoint
    and resume, False for those that do not, or a message of the command's own. None (default):
    the ``RESUMABLE`` attribute of the module defining ``main`` (so ``python -m`` aliases agree
    with the module they run), else False."""
    if resumable is None:
        resumable = getattr(sys.modules.get(getattr(main, "__module__", ""), None), "RESUMABLE", False)
    try:
        rc = main(argv)
    except (UsageError, ValueError, TypeError, FileNotFoundError, argparse.ArgumentTypeError) as exc:
        die(str(exc) or type(exc).__name__, prog)
    except RunFailed as exc:
        prog = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "robustgen")
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        raise SystemExit(1)
    except OSError as exc:            # full disk, permissions, a connection refused, ...
        die(os_error_line(exc), prog)
    except KeyboardInterrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the exit below is not interrupted again
        msg = resumable if isinstance(resumable, str) else (
            RESUME_MESSAGE if resumable else NO_RESUME_MESSAGE)
        print(msg, file=sys.stderr)
        raise SystemExit(130)
    return 0 if rc is None else int(rc)


TINY_BANNER = "TINY smoke run: numbers are not results"


def add_force_arg(ap: argparse.ArgumentParser) -> None:
    """``--force``: allow replacing an existing result file (refused otherwise, before any work)."""
    ap.add_argument("--force", action="store_true",
                    help="replace an existing output file (default: refuse, so a finished result "
                         "is never overwritten by accident)")


# ---- argparse "type=" helpers: each raises ArgumentTypeError with the allowed range ---------

#: Upper limits of integer options, by option name (documented in docs/cli.md, "Data safety"):
#: far above any run of the papers, low enough that a typo such as ``1e30`` is refused before any
#: work instead of failing (or running for ever) later. Other integer options have no upper limit
#: here (some are meant to take huge values, e.g. ``--halvings 1e30`` of nn_covering, or are
#: checked against memory or the data set by their command), beyond 40 digits.
INT_OPTION_MAXIMA = {
    "--seed": 2 ** 63 - 1,          # derived seeds (seed + rank, seed + k) stay below 2^64
    "--epochs": 100_000,
    "--trials": 1_000_000,
    "--attack-steps": 10_000,
    "--k": 1_000_000,
    "--classes": 1_000_000,
    "--centre-trials": 1_000_000,
    "--width": 16_384,
    "--depth": 1_000,
    "--batch-size": 1_000_000,
    "--workers": 10_000,
    "--threads": 10_000,
}
_MAX_DIGITS = 40          # longer integers are refused before any big-number arithmetic


def parse_exact_int(text: str) -> int | None:
    """The integer written in ``text`` ("12", "1e4", "2.0e1", "1_000"), computed exactly with
    :class:`decimal.Decimal` (never through a float, so 2^53 + 1 stays 2^53 + 1), or None when
    ``text`` is not an integer (a fraction, NaN, infinity, not a number) or has more than
    40 digits."""
    from decimal import Decimal, InvalidOperation

    t = str(text).strip()
    try:
        d = Decimal(t)
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite():
        return None
    if d.is_zero():
        return 0
    if d.adjusted() >= _MAX_DIGITS:          # decimal exponent of the leading digit
        return None
    if d != d.to_integral_value():
        return None
    return int(d)


def int_sci(min_value: int = 1, name: str = "value", max_value: int | None = None) -> Callable[[str], int]:
    """Integer that may be written in scientific notation ("1e4"), in [min_value, max_value],
    parsed exactly (:func:`parse_exact_int`). ``max_value`` defaults to the option's entry of
    :data:`INT_OPTION_MAXIMA` (None: no upper limit)."""
    if max_value is None:
        max_value = INT_OPTION_MAXIMA.get(name)
    rng = f">= {min_value}" if max_value is None else f"in [{min_value}, {max_value}]"

    def parse(text: str) -> int:
        val = parse_exact_int(text)
        if val is None:
            raise argparse.ArgumentTypeError(f"{name} must be an integer {rng} "
                                             f"(scientific notation allowed, at most "
                                             f"{_MAX_DIGITS} digits), got {text!r}")
        if val < min_value or (max_value is not None and val > max_value):
            raise argparse.ArgumentTypeError(f"{name} must be an integer {rng}, got {text!r}")
        return val

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
