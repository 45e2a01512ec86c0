"""Command line of the Theorem 2 Monte Carlo (simulate.nn_covering): JSON rows, bad input exits 2
with one line, same seed same result, resume from the checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from simulate.nn_covering import main

SMALL = ["--d", "1,2", "--delta", "0.2", "--trials", "2", "--n-test", "100", "--halvings", "4"]


def test_json_rows_and_summary(tmp_path, capsys):
    out = tmp_path / "cov.json"
    assert main(SMALL + ["--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "CRA(d/2)" in text and "x looser" in text
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {r["d"] for r in rows} == {1, 2}
    for r in rows:
        for key in ("d", "delta", "n", "certified_robust_accuracy", "coverage", "coverage_bound"):
            assert key in r
        assert 0.0 <= r["certified_robust_accuracy"] <= 1.0
    top = [r for r in rows if r["n"] == 37 * 5 ** r["d"]]
    assert len(top) == 2 and all(r["certified_robust_accuracy"] >= 0.99 for r in top)
    assert all(s["n_thm2"] == 37 * 5 ** s["d"] for s in data["summary"])
    assert data["provenance"]["seed"] == 0
    assert not (tmp_path / "cov.json.ckpt").exists()


def test_same_seed_same_rows_and_resume_after_interruption(tmp_path, monkeypatch):
    from theory import box_covering as mod      # the rows call it at run time

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(SMALL + ["--json", str(a)]) == 0
    real = mod.simulate_theorem2
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "simulate_theorem2", flaky)
    with pytest.raises(KeyboardInterrupt):
        main(SMALL + ["--json", str(b)])
    ckpt = tmp_path / "b.json.ckpt"
    assert ckpt.is_dir() and len(list(ckpt.glob("*.json"))) == 3   # one file per finished row
    monkeypatch.setattr(mod, "simulate_theorem2", real)
    assert main(SMALL + ["--json", str(b)]) == 0
    assert not ckpt.exists()
    assert json.loads(a.read_text())["rows"] == json.loads(b.read_text())["rows"]


@pytest.mark.parametrize("args", [
    ["--delta", "0"], ["--delta", "1"], ["--delta", "-0.1"], ["--delta", "1.5"], ["--d", "0"],
    ["--delta", "0.3", "--cells", "2"],  # grid construction needs delta < 1/(2*cells)
    ["--trials", "1"], ["--d", "x"],
])
def test_bad_input_exits_2_with_one_line(args, capsys):
    """In process (fast): run_main turns the error into one line and exit status 2."""
    from plumbing.cli import run_main

    with pytest.raises(SystemExit) as exc:
        run_main(main, args, prog="python -m simulate.nn_covering")
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error" in lines[0], lines


@pytest.mark.parametrize("args", [["--delta", "0"], ["--d", "0"]])
def test_bad_input_subprocess(args):
    p = subprocess.run([sys.executable, "-m", "simulate.nn_covering", *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
