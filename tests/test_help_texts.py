"""What a newcomer reads: every option of every command has help text that shows its default,
usage examples keep their own lines, and no user-facing text speaks of anything but the project
(no "issue 5", "the issue asks", "the developers' guide")."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plumbing.cli import OneLineArgumentParser

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}

COMMANDS = [
    "simulate.distance_classifier", "simulate.nn_covering", "simulate.nn_distance_scaling",
    "simulate.no_free_robustness", "simulate.separation", "simulate.staircase",
    "simulate.nn_exact_robustness",
    "deep.experiments.scaling_law", "deep.experiments.robust_overfitting",
    "deep.experiments.pca_features", "deep.experiments.tradeoff",
    "deep.experiments.tradeoff_table", "deep.experiments.throughput",
    "figures.__main__", "paper_checks.__main__",
    "bench.bench_attacks", "bench.bench_no_free_robustness", "bench.bench_separation",
]
HIDDEN = {"--stop-after-epochs"}   # a test hook of deep.tradeoff_table, deliberately not shown


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def parser_of(module: str) -> argparse.ArgumentParser:
    """The parser a command's main() builds (caught at parse_args, before any work)."""
    mod = importlib.import_module(module)
    orig = OneLineArgumentParser.parse_args

    def capture(self, *a, **k):
        raise _Captured(self)

    OneLineArgumentParser.parse_args = capture
    try:
        mod.main([])
    except _Captured as c:
        return c.parser
    finally:
        OneLineArgumentParser.parse_args = orig
    raise AssertionError(f"{module}.main did not parse arguments with OneLineArgumentParser")


@pytest.mark.parametrize("module", COMMANDS)
def test_every_option_has_help_showing_its_default(module):
    ap = parser_of(module)
    fmt = ap._get_formatter()
    bad = []
    for act in ap._actions:
        if not act.option_strings or isinstance(act, argparse._HelpAction):
            continue
        name = act.option_strings[-1]
        if name in HIDDEN:
            continue
        text = fmt._get_help_string(act) if act.help else ""
        if not act.help or act.help == argparse.SUPPRESS:
            bad.append(f"{name}: no help")
        elif act.nargs != 0 and not act.required and "default" not in (text % {"default": act.default}).lower():
            bad.append(f"{name}: help does not show the default")
    assert not bad, f"{module}: " + "; ".join(bad)


@pytest.mark.parametrize("module,example", [
    ("simulate.separation", "python -m simulate.separation --dataset mnist --data-root DIR"),
    ("simulate.distance_classifier", "python -m simulate.distance_classifier --dataset mnist"),
])
def test_usage_example_keeps_its_own_line(module, example):
    r = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert any(line.strip().startswith(example) for line in r.stdout.splitlines()), r.stdout


def test_tradeoff_table_help_shows_tiny_values_and_out_default():
    r = subprocess.run([sys.executable, "-m", "deep.tradeoff_table", "--help"], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=60)
    flat = " ".join(r.stdout.split()).replace("- ", "-")   # argparse wraps after hyphens
    assert r.returncode == 0
    assert "train-size 256" in flat and "epochs 1" in flat, flat
    assert "default runs/tradeoff_table" in flat, flat


PHRASES = re.compile(r"\bissues? ?\d|the issue|developers'? guide", re.IGNORECASE)


def test_sources_and_docs_speak_of_the_project_only():
    hits = []
    files = [p for d in ("plumbing", "theory", "simulate", "deep", "figures", "paper_checks", "bench")
             for p in (REPO / d).rglob("*.py")] + list((REPO / "docs").glob("*.md"))
    for p in files:
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if PHRASES.search(line):
                hits.append(f"{p.relative_to(REPO)}:{i}: {line.strip()[:80]}")
    assert not hits, "\n".join(hits)
