"""Command line of the nearest-neighbour distance scaling (simulate.nn_distance_scaling,
P&L Section 12 / Fig. 13): synthetic run recovers d* and passes Eq. (26); MNIST subset run; bad
input exits 2 with one line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from simulate.nn_distance_scaling import main


def test_synthetic_run(tmp_path, capsys):
    out = tmp_path / "syn.json"
    assert main(["--dataset", "synthetic", "--d-star", "3", "--ambient", "10", "--sizes", "64,256,1024,4096",
                 "--queries", "300", "--lb-points", "1000", "--centre-trials", "200", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "d* from slope" in text and "Eq. (26)" in text
    data = json.loads(out.read_text())
    s = data["summary"][0]
    assert s["d_star_true"] == 3
    assert abs(s["d_star_slope"] - 3) <= 0.45 and abs(s["d_star_levina_bickel"] - 3) <= 0.45
    assert data["eq26"] and all(e["within_bounds"] for e in data["eq26"])
    assert [r["n"] for r in data["rows"]] == [64, 256, 1024, 4096]
    assert "provenance" in data and data["provenance"]["seed"] == 0


def test_mnist_subset_run(mnist_root, tmp_path):
    out = tmp_path / "m.json"
    assert main(["--dataset", "mnist", "--data-root", str(mnist_root), "--sizes", "64,256,1024",
                 "--queries", "100", "--lb-points", "500", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for norm in ("2", "angular"):
        med = [r["median"] for r in data["rows"] if r["norm"] == norm]
        assert len(med) == 3 and med[0] > med[1] > med[2] > 0
    assert all(s["reference_cifar10_d_star"] == 28 for s in data["summary"])
    assert all(s["d_star_slope"] > 3 for s in data["summary"])


@pytest.mark.parametrize("args", [
    ["--sizes", "100,50"], ["--sizes", "100,100"], ["--sizes", "100"], ["--norm", "1"],
    ["--dataset", "mnist", "--data-root", "/nonexistent/robustgen"], ["--dataset", "cifar"],
    ["--sizes", "0,10"], ["--d-star", "5", "--ambient", "3"],
])
def test_bad_input_exits_2_with_one_line(args, capsys):
    """In process (fast): run_main turns the error into one line and exit status 2."""
    from plumbing.cli import run_main

    with pytest.raises(SystemExit) as exc:
        run_main(main, args, prog="python -m simulate.nn_distance_scaling")
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error" in lines[0], lines


@pytest.mark.parametrize("args", [["--sizes", "100,50"], ["--dataset", "mnist", "--data-root", "/nonexistent/robustgen"]])
def test_bad_input_subprocess(args):
    p = subprocess.run([sys.executable, "-m", "simulate.nn_distance_scaling", *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
