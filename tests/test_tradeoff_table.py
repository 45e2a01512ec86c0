"""python -m deep.tradeoff_table (YRZSC Tables 2-4, 9-14; Appendix B) on a tiny MNIST subset."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from deep.experiments.tradeoff_table import COLUMNS, PROG, main
from plumbing.cli import UsageError, run_main

SMALL = ["--tiny", "--train-size", "64", "--test-size", "64", "--eval-size", "32",
         "--lip-size", "16", "--attack-steps", "2", "--batch-size", "32"]


def _args(root, out, *extra):
    return ["--data-root", str(root), "--out", str(out), *SMALL, *extra]


def test_tiny_end_to_end_writes_json_md_csv_with_all_columns(mnist_root, tmp_path):
    assert main(_args(mnist_root, tmp_path, "--methods", "natural,trades:1")) == 0
    name = "tradeoff_table_mnist_cnn1"
    table = json.loads((tmp_path / f"{name}.json").read_text())
    assert table["columns"] == list(COLUMNS)
    assert [r["method"] for r in table["rows"]] == ["natural", "trades:1"]
    assert table["provenance"]["seed"] == 0 and "wall_seconds" in table["provenance"]
    for r in table["rows"]:
        for c in ("train_acc", "test_acc", "adv_train_acc", "adv_test_acc"):
            assert 0.0 <= r[c] <= 100.0
        assert r["adv_test_acc"] <= r["test_acc"] and r["test_lipschitz"] >= 0.0
        assert r["gap"] == pytest.approx(r["train_acc"] - r["test_acc"])
        assert r["adv_gap"] == pytest.approx(r["adv_train_acc"] - r["adv_test_acc"])
        run = json.loads((tmp_path / r["run_json"]).read_text())
        assert run["provenance"]["device"] == "cpu" and run["config"]["method"] == r["method"]
        rep = run["attack_reports"]["test"]
        assert rep["max_perturbation"] <= 0.1 + 1e-6 and rep["nan_count"] == 0
        assert 0.0 <= rep["adv_min"] and rep["adv_max"] <= 1.0
    md = (tmp_path / f"{name}.md").read_text()
    assert "| TRADES(β=1) |" in md and "test lipschitz" in md and "adv gap" in md
    rows = list(csv.DictReader((tmp_path / f"{name}.csv").open()))
    assert [r["method"] for r in rows] == ["natural", "trades:1"]
    assert set(COLUMNS) <= set(rows[0])
    # a finished run is skipped on rerun: identical per-run files
    before = (tmp_path / "runs" / "mnist_cnn1_natural.json").read_text()
    assert main(_args(mnist_root, tmp_path, "--methods", "natural")) == 0
    assert (tmp_path / "runs" / "mnist_cnn1_natural.json").read_text() == before
    # ... but not with a different configuration under the same --out
    with pytest.raises(UsageError, match="different configuration"):
        main(_args(mnist_root, tmp_path, "--methods", "natural", "--eps", "0.2"))


def test_interrupted_run_resumes_to_the_uninterrupted_result(mnist_root, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ("--methods", "at", "--epochs", "2")
    assert main(_args(mnist_root, a, *common, "--stop-after-epochs", "1")) == 0
    assert (a / "runs" / "mnist_cnn1_at.ckpt").is_file()
    assert not (a / "runs" / "mnist_cnn1_at.json").exists()
    assert main(_args(mnist_root, a, *common)) == 0
    assert main(_args(mnist_root, b, *common)) == 0
    ra = json.loads((a / "runs" / "mnist_cnn1_at.json").read_text())
    rb = json.loads((b / "runs" / "mnist_cnn1_at.json").read_text())
    assert len(ra["history"]) == 2
    for c in COLUMNS:
        assert ra[c] == pytest.approx(rb[c], abs=1e-9), c
    assert ra["history"][-1]["train_loss"] == pytest.approx(rb["history"][-1]["train_loss"], rel=1e-6)


def test_proof_of_concept_trains_on_train_plus_test(mnist_root, tmp_path):
    assert main(_args(mnist_root, tmp_path, "--proof-of-concept", "--model", "cnn2")) == 0
    table = json.loads((tmp_path / "tradeoff_table_mnist_cnn2_poc.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["rst:2"]        # Appendix B: RST lambda = 2
    run = json.loads((tmp_path / table["rows"][0]["run_json"]).read_text())
    assert run["config"]["proof_of_concept"] is True and run["n_train"] == 64 + 64
    assert run["config"]["batch_size"] == 32                      # explicit flag beats Table 7


@pytest.mark.parametrize("argv, needle", [
    (["--methods", "tradez:1"], "method must be one of"),
    (["--methods", "trades:x"], "must be a number"),
    (["--methods", "at:2"], "takes no parameter"),
    (["--methods", "at,at"], "twice"),
    (["--dropout", "1.5"], "--dropout"),
    (["--attack", "fgsm"], "--attack"),
    (["--device", "tpu"], "--device"),
])
def test_bad_input_is_one_line_and_status_2(argv, needle, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        run_main(main, ["--out", str(tmp_path), *argv], prog=PROG)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and needle in err[0], err


def test_bad_input_from_the_command_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "deep.tradeoff_table", "--methods", "strades:6",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "method must be one of" in lines[0], p.stderr
