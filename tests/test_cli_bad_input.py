"""Command lines under bad input, as a new user meets them: every case exits 2 with exactly one
line on stderr naming the option, and does so at once (before any long computation); corrupt
files are named with what to do; earlier results are never silently replaced; Ctrl-C says
whether there is anything to resume from."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
FAST = 25.0   # seconds: imports (torch, numba) on a loaded 2-core machine; the work refused takes minutes


def run(module: str, *args, timeout: float = 90):
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=ENV,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{module} {' '.join(map(str, args))}: still running after {timeout} s")
    return r, time.perf_counter() - t0


def run_inproc(module: str, *args):
    """The command's main() through plumbing.cli.run_main in this process (torch is imported
    once for all deep commands): (CompletedProcess-like result, seconds)."""
    import contextlib
    import importlib
    import io

    from plumbing.cli import run_main

    mod = importlib.import_module(module if not module.startswith("deep.") or ".experiments." in module
                                  else module.replace("deep.", "deep.experiments.", 1))
    err, out = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = run_main(mod.main, [str(a) for a in args], prog=module)
        except SystemExit as ex:
            rc = ex.code
    return subprocess.CompletedProcess(module, rc, out.getvalue(), err.getvalue()), \
        time.perf_counter() - t0


def assert_refused(r, seconds, *must_contain):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, f"rc={r.returncode}\n{r.stderr[-2000:]}"
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for m in must_contain:
        assert m in lines[0], lines[0]
    assert seconds < FAST, f"took {seconds:.1f} s: the check must come before the work"
    return lines[0]


@pytest.fixture
def paths(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    adir = tmp_path / "adir"
    adir.mkdir()
    return {"FILE": afile, "DIR": adir, "UNDER": afile / "sub" / "x.json",
            "UNWRITABLE": "/proc/robustgen-test/x.json"}


# ---- 1. output paths -------------------------------------------------------------------------

OUTPUT_CASES = [
    ("simulate.no_free_robustness", ["--json", "DIR"], "--json"),
    ("simulate.no_free_robustness", ["--json", "UNDER"], "--json"),
    ("simulate.no_free_robustness", ["--json", "UNWRITABLE"], "--json"),
    ("simulate.nn_covering", ["--json", "DIR"], "--json"),
    ("simulate.nn_covering", ["--json", "UNDER"], "--json"),
    ("simulate.nn_distance_scaling", ["--json", "UNDER"], "--json"),
    ("simulate.distance_classifier", ["--json", "DIR"], "--json"),
    ("simulate.staircase", ["--json", "UNDER"], "--json"),
    ("simulate.nn_exact_robustness", ["--out", "FILE"], "--out"),
    ("simulate.separation", ["--dataset", "mnist", "--hist", "UNDER"], "--hist"),
    ("simulate.separation", ["--dataset", "mnist", "--json", "DIR"], "--json"),
    ("deep.scaling_law", ["--tiny", "--out", "FILE"], "--out"),
    ("deep.scaling_law", ["--tiny", "--summary", "DIR"], "--summary"),
    ("deep.robust_overfitting", ["--tiny", "--out", "UNWRITABLE"], "--out"),
    ("deep.tradeoff_table", ["--tiny", "--out", "UNDER"], "--out"),
    ("deep.throughput", ["--out", "DIR"], "--out"),
    ("paper_checks", ["--json", "DIR"], "--json"),
    ("figures", ["--out", "FILE"], "--out"),
    ("bench.bench_attacks", ["--out", "UNDER"], "--out"),
]


SUBPROCESS = {("deep.scaling_law", "FILE"), ("simulate.no_free_robustness", "DIR")}


@pytest.mark.parametrize("module,args,option", OUTPUT_CASES,
                         ids=[f"{m}:{' '.join(a)}" for m, a, _ in OUTPUT_CASES])
def test_bad_output_path_refused_up_front(paths, module, args, option):
    """A few as real subprocesses, the rest in-process (same run_main path, torch imported once)."""
    sub = (module, args[-1]) in SUBPROCESS or not module.startswith("deep.")
    args = [str(paths.get(a, a)) for a in args]
    r, sec = (run if sub else run_inproc)(module, *args)
    assert_refused(r, sec, option)
    assert paths["FILE"].read_text() == "keep me\n"


def test_existing_result_is_kept_unless_force(paths, tmp_path):
    out = tmp_path / "thm1.json"
    first = '{"seed": 0, "note": "an earlier result"}\n'
    out.write_text(first)
    small = ["--n", "16", "--trials", "2", "--test-size", "20", "--learners", "bayes", "--seed", "1"]
    r, sec = run("simulate.no_free_robustness", *small, "--json", out)
    assert_refused(r, sec, "--json", "already exists", "--force")
    assert out.read_text() == first                                   # nothing lost
    r, _ = run("simulate.no_free_robustness", *small, "--json", out, "--force")
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["seed"] == 1                   # replaced on request


def test_check_output_file_and_dir_library(tmp_path):
    from plumbing.io import OutputPathError, check_output_dir, check_output_file

    f = tmp_path / "r.json"
    assert check_output_file(f, "--json") == f and not f.exists()      # nothing created
    assert check_output_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    f.write_text("{}")
    with pytest.raises(OutputPathError, match="--json .* already exists"):
        check_output_file(f, "--json")
    assert check_output_file(f, "--json", force=True) == f
    assert check_output_file(f, "--summary", existing="replace") == f
    with pytest.raises(OutputPathError, match="--out .*is a file"):
        check_output_dir(f, "--out")
    with pytest.raises(OutputPathError, match="--hist .*is a directory"):
        check_output_file(tmp_path, "--hist")
    with pytest.raises(OutputPathError, match=r"--json .*r\.json is a file, not a folder"):
        check_output_file(f / "x" / "y.json", "--json")
    with pytest.raises(OutputPathError, match="cannot write"):
        check_output_dir("/proc/robustgen-test", "--out")
    assert check_output_file(None, "--json") is None


# ---- 2. sizes that cannot fit ----------------------------------------------------------------

def _available_gib():
    from plumbing.memory import GIB, available_bytes
    a = available_bytes()
    return None if a is None else a / GIB


SIZE_CASES = [
    ("simulate.no_free_robustness", ["--test-size", "1e12"], "--test-size"),
    ("simulate.nn_covering", ["--n-test", "1e12"], "--n-test"),
    ("simulate.nn_distance_scaling", ["--sizes", "64,1e10"], "--sizes"),
    ("simulate.nn_distance_scaling", ["--sizes", "64,1e30"], "--sizes"),
    ("simulate.nn_distance_scaling", ["--queries", "1e12"], "--queries"),
]


@pytest.mark.parametrize("module,args,option", SIZE_CASES,
                         ids=[f"{m}:{' '.join(a)}" for m, a, _ in SIZE_CASES])
def test_size_that_cannot_fit_is_refused_with_the_figure(module, args, option):
    r, sec = run(module, *args)
    line = assert_refused(r, sec, option, "GiB of memory", "GiB available")
    assert "Maximum allowed dimension" not in line


def test_no_free_robustness_n_1e9_refused_where_it_does_not_fit():
    from plumbing.memory import GIB, no_free_robustness_bytes
    avail = _available_gib()
    if avail is not None and avail * GIB > no_free_robustness_bytes(10 ** 9, 2000):
        pytest.skip(f"this machine has {avail:.0f} GiB available: --n 1e9 fits")
    r, sec = run("simulate.no_free_robustness", "--n", "1e9")
    assert_refused(r, sec, "--n 1000000000", "GiB available")


def test_memory_estimate_grows_with_the_sizes():
    from plumbing.memory import nn_covering_bytes, nn_distance_bytes, no_free_robustness_bytes
    assert no_free_robustness_bytes(10 ** 6, 2000) < no_free_robustness_bytes(10 ** 7, 2000)
    assert no_free_robustness_bytes(10 ** 4, 10 ** 5) < no_free_robustness_bytes(10 ** 4, 10 ** 6)
    assert nn_covering_bytes(1000, 500, 4, 2) < nn_covering_bytes(1000, 5000, 4, 2)
    # 10^30 points of 32 float64 values plus the (1000 x n) float64 distance block
    assert nn_distance_bytes(10 ** 30, 1000, 32) == pytest.approx(1e30 * 8 * (32 + 1000), rel=0.01)
    # the default runs fit a small machine (< 2 GiB)
    assert no_free_robustness_bytes(10 ** 4, 2000) < 2 * 1024 ** 3
    assert nn_distance_bytes(2 ** 15, 1000, 784, itemsize=4, angular=True) < 2 * 1024 ** 3


def test_huge_halvings_return_at_once_with_the_same_grid():
    from simulate.nn_covering import size_grid
    t0 = time.perf_counter()
    big = size_grid(2, 0.2, 10 ** 30)
    assert time.perf_counter() - t0 < 1.0
    assert big == size_grid(2, 0.2, 64) and big[0] == 1 and big[-1] == 37 * 25
    r, sec = run("simulate.nn_covering", "--halvings", "1e30", "--d", "1", "--delta", "0.2",
                 "--trials", "2", "--n-test", "20")
    assert r.returncode == 0, r.stderr
    assert sec < FAST


def test_scaling_law_refuses_sizes_beyond_the_dataset():
    r, sec = run_inproc("deep.scaling_law", "--sizes", "64,1e30")
    assert_refused(r, sec, "--sizes", "60000", "mnist")
    r, sec = run_inproc("deep.robust_overfitting", "--train-size", "60001")
    assert_refused(r, sec, "--train-size", "60000")
    r, sec = run_inproc("deep.tradeoff_table", "--dataset", "svhn", "--test-size", "30000")
    assert_refused(r, sec, "--test-size", "26032")


def test_tradeoff_table_empty_methods():
    r, sec = run_inproc("deep.tradeoff_table", "--methods", "")
    assert_refused(r, sec, "--methods")


# ---- 3. corrupt files --------------------------------------------------------------------------

def test_garbage_npz_named_without_pickle_advice(tmp_path):
    bad = tmp_path / "data.npz"
    bad.write_text("x_train,y_train\n1,2\n")
    r, sec = run("simulate.separation", "--dataset", "npz", "--data-root", bad)
    line = assert_refused(r, sec, "not a valid .npz file", str(bad))
    assert "pickle" not in line


def test_truncated_sweep_checkpoint_named(tmp_path):
    ck = tmp_path / "sweep"
    small = ["--sweep", "--d", "4", "--sweep-n", "1,2", "--trials", "2", "--test-size", "10",
             "--learners", "bayes", "--checkpoint", ck]
    r, _ = run("simulate.no_free_robustness", *small)
    assert r.returncode == 0, r.stderr
    files = sorted(ck.glob("*.json"))
    assert len(files) == 2
    files[0].write_text(files[0].read_text()[:25])                   # truncated
    r, sec = run("simulate.no_free_robustness", *small)
    assert_refused(r, sec, str(files[0]), "not valid JSON", "delete it")


def test_garbage_covering_checkpoint_named(tmp_path, monkeypatch):
    from simulate.nn_covering import main
    from theory import box_covering

    ck = tmp_path / "cov"
    small = ["--d", "1", "--delta", "0.2", "--trials", "2", "--n-test", "10", "--halvings", "2",
             "--checkpoint", str(ck)]
    real, calls = box_covering.simulate_theorem2, []

    def interrupted_after_one(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(box_covering, "simulate_theorem2", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        main(small)
    files = sorted(ck.glob("*.json"))
    assert len(files) == 1
    files[0].write_bytes(b"\x00\x01garbage")
    r, sec = run("simulate.nn_covering", *small)
    assert_refused(r, sec, str(files[0]), "delete it")


def test_garbage_nn_distance_checkpoint_named(tmp_path):
    ck = tmp_path / "nn.ckpt"
    ck.write_text('{"fingerprint": "x", "rows": {')
    r, sec = run("simulate.nn_distance_scaling", "--sizes", "64,128", "--queries", "20",
                 "--lb-points", "0", "--centre-trials", "10", "--checkpoint", ck)
    assert_refused(r, sec, str(ck), "delete it")


def _saved(obj) -> bytes:
    import io

    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", b"not a checkpoint at all",
                                     "list", "no-model"])
def test_corrupt_training_checkpoint_named(tmp_path, content):
    import torch

    from deep.trainer import TrainConfig, fit

    ck = tmp_path / "run.ckpt"
    if content == "list":
        content = _saved([1, 2])
    elif content == "no-model":   # the right configuration, but no weights
        from dataclasses import asdict
        content = _saved({"config": asdict(TrainConfig(epochs=1, batch_size=4)), "epoch": 0})
    ck.write_bytes(content)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))

    def loss(m, xb, yb):
        return torch.nn.functional.cross_entropy(m(xb), yb)

    with pytest.raises(ValueError, match=f"checkpoint {ck}.*delete it"):
        fit(model, loss, x, y, TrainConfig(epochs=1, batch_size=4), checkpoint=ck)


def test_truncated_run_json_named(tmp_path):
    from deep.experiments.experiment import existing_result

    p = tmp_path / "run.json"
    p.write_text('{"name": "x", "final": {')
    with pytest.raises(ValueError, match=f"{p} is corrupt: not valid JSON.*delete it"):
        existing_result(p)
    p.write_text('"just a string"')
    with pytest.raises(ValueError, match=f"{p} does not hold a run result.*delete it"):
        existing_result(p)


def test_one_bad_result_file_does_not_stop_the_other_figures(tmp_path, monkeypatch, capsys):
    import paper_checks.registry as reg
    from figures.__main__ import main

    results = tmp_path / "results"
    (results / "separation").mkdir(parents=True)
    (results / "separation" / "mnist_inf.json").write_text('{"train_train_hist": [[1, 2')
    monkeypatch.setattr(reg, "RESULTS_DIR", results)
    out = tmp_path / "figs"
    rc = main(["--out", str(out), "--only", "separation_mnist_hist,spiral_distance_function"])
    text = capsys.readouterr()
    assert rc == 1
    assert (out / "spiral_distance_function.png").is_file()           # the other figure is written
    assert not (out / "separation_mnist_hist.png").exists()
    failed = [ln for ln in text.out.splitlines() if ln.startswith("separation_mnist_hist")]
    assert failed and "FAILED" in failed[0] and "mnist_inf.json" in failed[0], text.out
    assert "separation_mnist_hist" in text.err


# ---- 4. Ctrl-C ---------------------------------------------------------------------------------

def _interrupt(cmd: list[str], ready) -> subprocess.CompletedProcess:
    """Start ``python -m cmd``, wait until ``ready(lines_of_stdout)``, send SIGINT, collect."""
    import threading

    # a shell's background job ignores SIGINT and children inherit that: restore the default so
    # that Python installs its KeyboardInterrupt handler, as in an interactive terminal
    p = subprocess.Popen([sys.executable, "-m", *cmd], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(p.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        t0 = time.perf_counter()
        while not ready(lines) and p.poll() is None and time.perf_counter() - t0 < 60:
            time.sleep(0.05)
        assert p.poll() is None, "finished before it could be interrupted"
        p.send_signal(signal.SIGINT)
        err = p.stderr.read()
        p.wait(timeout=30)
        reader.join(timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
    return subprocess.CompletedProcess(p.args, p.returncode, "".join(lines), err)


def test_sigint_on_figures_does_not_promise_a_checkpoint(tmp_path):
    out = tmp_path / "figs"
    r = _interrupt(["figures", "--out", str(out)], lambda _: out.is_dir() and any(out.glob("*.png")))
    assert r.returncode == 130, r.stderr
    assert "checkpoint" not in r.stderr.replace("no checkpoint", "")
    assert r.stderr.strip().splitlines()[-1].startswith("interrupted")


def test_sigint_on_throughput_does_not_promise_a_checkpoint():
    r = _interrupt(["deep.throughput", "--model", "aol_mlp", "--shape", "mnist", "--width", "16",
                    "--batch-size", "2", "--batches", "1e9", "--warmup", "0"],
                   lambda lines: any(ln.startswith("timing") for ln in lines))
    assert r.returncode == 130, r.stderr
    assert "resume from the last checkpoint" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("interrupted")


def test_run_main_interrupt_message_follows_the_command(capsys):
    from plumbing.cli import RESUME_MESSAGE, run_main

    def main(argv):
        raise KeyboardInterrupt

    for resumable, expect in ((True, RESUME_MESSAGE), (False, "keeps no checkpoint"),
                              ("custom line", "custom line")):
        with pytest.raises(SystemExit) as ex:
            run_main(main, [], resumable=resumable)
        assert ex.value.code == 130
        assert expect in capsys.readouterr().err


# ---- 5. newcomer items -------------------------------------------------------------------------

def test_tiny_runs_say_they_are_smoke_runs(tmp_path, capsys):
    import argparse

    from deep.experiments.experiment import parse_common
    from plumbing.cli import TINY_BANNER

    ns = argparse.Namespace(dataset="mnist", data_root=None, device="cpu", epochs=None,
                            out=str(tmp_path / "o"), seed=0, tiny=True, summary=None)
    parse_common(ns)
    assert TINY_BANNER == "TINY smoke run: numbers are not results"
    assert TINY_BANNER in capsys.readouterr().out
    ns.tiny = False
    parse_common(ns)
    assert TINY_BANNER not in capsys.readouterr().out


def test_separation_says_when_it_compiles(tmp_path, monkeypatch):
    import theory.separation as sep
    from simulate.separation import search_kernels_cold

    src = tmp_path / "separation.py"
    src.write_text("# copy\n")
    monkeypatch.setattr(sep, "__file__", str(src))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert search_kernels_cold()
    (tmp_path / "__pycache__").mkdir()
    idx = tmp_path / "__pycache__" / "separation._blocked_dist-148.py311.nbi"
    idx.write_bytes(b"")
    os.utime(src, (time.time() - 100, time.time() - 100))
    assert not search_kernels_cold()


def test_paper_checks_data_root(tmp_path):
    r, sec = run("paper_checks", "--data-root", tmp_path / "missing", "--list")
    assert_refused(r, sec, "--data-root")
    # an empty data root reaches the data-loading claim: it reports NEEDS-DATA at once instead of
    # recomputing the full MNIST search from the default root
    r, sec = run("paper_checks", "--data-root", tmp_path, "--only", "yrzsc-mnist-train-train-min")
    assert "NEEDS-DATA" in r.stdout, r.stdout + r.stderr
    assert sec < FAST


def test_load_npz_and_read_json_name_the_file(tmp_path):
    from plumbing.io import CorruptFileError, load_npz, read_json

    good = tmp_path / "good.npz"
    np.savez(good, a=np.arange(3))
    assert load_npz(good)["a"].tolist() == [0, 1, 2]
    obj = tmp_path / "obj.npz"
    np.savez(obj, a=np.array([{"x": 1}], dtype=object))
    for bad in (obj, tmp_path / "text.npz"):
        if bad.name == "text.npz":
            bad.write_text("hello\n")
        with pytest.raises(CorruptFileError, match=f"not a valid .npz file: {bad}") as ex:
            load_npz(bad)
        assert "allow_pickle" not in str(ex.value)
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")
    j = tmp_path / "r.json"
    j.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(CorruptFileError, match=f"{j} is corrupt: not a JSON text file"):
        read_json(j)


def test_int_sci_upper_bound():
    import argparse

    from plumbing.cli import int_sci

    assert int_sci(0, "--k", max_value=64)("1e1") == 10
    with pytest.raises(argparse.ArgumentTypeError, match=r"--k must be an integer in \[0, 64\]"):
        int_sci(0, "--k", max_value=64)("65")
