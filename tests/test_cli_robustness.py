"""Command lines that must not hang, lose results or print tracebacks:

* Ray addresses are checked up front (format, port range, something answering, Ray Client
  installed) and the connection is bounded in time and honours SIGTERM;
* a checkpoint, result or archive that is there is never silently dropped, replaced or packed
  truncated; a diverged training run is recorded as such and never taken for a finished one;
* integer options are parsed exactly (no float rounding) and within stated limits;
* a full disk, a corrupt or incomplete checkpoint and absurd sizes give one line and exit 2.

Every test runs in seconds."""
from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def run_main_inproc(main, argv, prog="cmd"):
    """(exit status, stdout, stderr) of ``main(argv)`` through ``plumbing.cli.run_main``."""
    from plumbing.cli import run_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = run_main(main, [str(a) for a in argv], prog=prog)
        except SystemExit as ex:
            rc = ex.code
    return rc, out.getvalue(), err.getvalue()


def one_line(rc, err, *must, status=2):
    lines = err.strip().splitlines()
    assert rc == status, (rc, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err
    for m in must:
        assert m in lines[0], lines[0]
    return lines[0]


def engine_ns(address, engine="ray", workers=None):
    return argparse.Namespace(engine=engine, address=address, workers=workers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- 1. Ray addresses ------------------------------------------------------------------------

@pytest.mark.parametrize("address,must", [
    ("127.0.0.1:99999", "port"), ("127.0.0.1:0", "port"), ("127.0.0.1:abc", "port"),
    (":6379", "host"), ("ray://h", "port"), ("localhost", "host:port")])
def test_bad_ray_address_format_refused(address, must):
    from plumbing.cli import UsageError
    from plumbing.sweep import check_engine_args

    with pytest.raises(UsageError, match=must):
        check_engine_args(engine_ns(address))


def test_ray_address_with_nothing_listening_refused_at_once():
    from plumbing.cli import UsageError
    from plumbing.sweep import check_engine_args

    port = free_port()
    t0 = time.perf_counter()
    with pytest.raises(UsageError, match=f"127.0.0.1:{port}"):
        check_engine_args(engine_ns(f"127.0.0.1:{port}"))
    assert time.perf_counter() - t0 < 10


def test_ray_address_auto_without_cluster_is_one_line(monkeypatch):
    """``auto`` with no cluster: Ray raises ConnectionError; the command says so in one line."""
    import ray

    from plumbing.sweep import Engine

    def no_cluster(*a, **k):
        raise ConnectionError("Could not find any running Ray instance. Please specify one")

    monkeypatch.setattr(ray, "init", no_cluster)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr("plumbing.sweep._resolve_auto", lambda: None, raising=False)

    def main(argv):
        with Engine("ray", "auto"):
            pass

    rc, _, err = run_main_inproc(main, [])
    one_line(rc, err, "--address auto")


def test_ray_client_address_without_grpc_is_one_line(monkeypatch):
    import importlib.util

    from plumbing.cli import UsageError
    from plumbing.sweep import check_engine_args

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(UsageError, match=r"ray\[client\]"):
        check_engine_args(engine_ns("ray://127.0.0.1:10001"))


def test_ray_extras_include_the_client():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in ("ray", "test"):
        assert any(d.replace(" ", "").startswith("ray[client]") for d in extras[name]), extras[name]


_HANG = textwrap.dedent("""
    import socket, sys, time
    import ray
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(5)
    port = srv.getsockname()[1]
    def hang(*a, **k):               # a listener that is not a Ray cluster: init never returns
        time.sleep(600)
    ray.init = hang
    from plumbing.cli import run_main
    from plumbing.sweep import Engine
    def main(argv):
        with Engine("ray", f"127.0.0.1:{port}"):
            pass
    print("connecting", flush=True)
    sys.exit(run_main(main, [], prog="cmd"))
""")


def _hang_proc(timeout_s: str):
    env = {**ENV, "ROBUSTGEN_RAY_CONNECT_TIMEOUT_S": timeout_s}
    return subprocess.Popen([sys.executable, "-c", _HANG], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_ray_connection_is_bounded_in_time():
    p = _hang_proc("2")
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("still connecting after 60 s")
    one_line(p.returncode, err, "no Ray cluster answered", "2 s")


def test_sigterm_while_connecting_ends_the_command():
    p = _hang_proc("300")
    try:
        assert p.stdout.readline().strip() == "connecting"
        time.sleep(1.5)
        t0 = time.perf_counter()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("SIGTERM ignored while connecting")
    assert time.perf_counter() - t0 < 10
    assert p.returncode == 143, (p.returncode, err)
    assert len(err.strip().splitlines()) == 1 and "SIGTERM" in err, err


# ---- 2. data loss ----------------------------------------------------------------------------

def test_checkpoint_of_other_settings_is_refused_and_kept(tmp_path):
    from simulate.json_checkpoint import Checkpoint

    path = tmp_path / "run.ckpt"
    Checkpoint(path, {"trials": 10}).put("a", {"x": 1})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="run.ckpt.*--force"):
        Checkpoint(path, {"trials": 11})
    assert path.read_bytes() == before
    fresh = Checkpoint(path, {"trials": 11}, force=True)    # --force: start afresh
    assert fresh.get("a") is None


def test_staircase_refuses_checkpoint_of_other_settings(tmp_path):
    from simulate import staircase
    from simulate.json_checkpoint import Checkpoint

    ck = tmp_path / "s.ckpt"
    Checkpoint(ck, {"other": 1}).put("20|0", {"x": []})
    rc, _, err = run_main_inproc(staircase.main, ["--n-grid", "20", "--trials", "2",
                                                  "--checkpoint", ck])
    one_line(rc, err, str(ck), "--force")
    assert ck.is_file()


def test_campaign_prepare_refuses_existing_out(tmp_path):
    from deep.experiments import campaign

    out = tmp_path / "c.npz"
    out.write_bytes(b"precious")
    rc, _, err = run_main_inproc(campaign.main, ["prepare", "--cifar-root", tmp_path,
                                                 "--out", out])
    one_line(rc, err, "--out", "already exists", "--force")
    assert out.read_bytes() == b"precious"


def test_campaign_refuses_foreign_archive(tmp_path):
    from deep.experiments import campaign

    arch = tmp_path / "mine.tar.gz"
    arch.write_bytes(b"precious")
    rc, _, err = run_main_inproc(campaign.main, ["pl", "--budget-s", "1", "--out", tmp_path / "o",
                                                 "--archive", arch])
    one_line(rc, err, "--archive", "already exists", "--force")
    assert arch.read_bytes() == b"precious"


def test_pack_archive_leaves_out_and_reports_a_truncated_json(tmp_path, capsys):
    from deep.experiments.campaign_common import pack_archive

    out = tmp_path / "o"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "good.json").write_text('{"a": 1}')
    (out / "runs" / "bad.json").write_text('{"a": [1, 2')
    arch = pack_archive(out, tmp_path / "a.tar.gz")
    with tarfile.open(arch, "r:gz") as tar:
        names = set(tar.getnames())
    assert "runs/good.json" in names and "runs/bad.json" not in names
    assert "bad.json" in capsys.readouterr().err


def _tiny_fit(tmp_path, lr):
    import torch

    from deep.trainer import TrainConfig, fit

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    cfg = TrainConfig(epochs=3, batch_size=8, lr=lr, schedule="constant")
    # squared loss: with a far too large learning rate the weights blow up to inf, the loss to NaN
    return fit(model, lambda m, xb, yb: ((m(xb) - yb[:, None].float()) ** 2).mean(), x, y, cfg,
               checkpoint=tmp_path / "r.ckpt", metrics_path=tmp_path / "r.metrics.json")


def test_diverged_training_is_recorded_and_not_finished(tmp_path):
    from deep.experiments.experiment import existing_result
    from deep.trainer import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="diverged at epoch"):
        _tiny_fit(tmp_path, 1e30)
    rec = json.loads((tmp_path / "r.metrics.json").read_text())
    assert rec["status"] == "diverged" and isinstance(rec["diverged"]["epoch"], int)
    assert rec["diverged"]["train_loss"] in ("nan", "inf", None) or rec["diverged"]["train_loss"] > 1e30
    # a rerun does not take the run for finished: it refuses before loading any data
    with pytest.raises(ValueError, match="diverged.*lower --lr"):
        existing_result(tmp_path / "r.json")


def test_diverged_training_prints_one_line_exit_1(tmp_path):
    def main(argv):
        _tiny_fit(tmp_path, 1e30)

    rc, _, err = run_main_inproc(main, [])
    one_line(rc, err, "diverged", status=1)


# ---- 3. integer options are exact ------------------------------------------------------------

def test_integer_options_are_parsed_exactly():
    from plumbing.cli import int_sci

    seed = int_sci(0, "--seed")
    assert seed("9007199254740993") == 2 ** 53 + 1
    assert seed("1e4") == 10000 and seed("2.0e1") == 20 and seed("1_000") == 1000
    assert seed("12345678901234567890e-1") == 1234567890123456789
    for bad in ("1.5", "1e-3", "nan", "inf", "-1", "", "0x10", "1e999999999"):
        with pytest.raises(argparse.ArgumentTypeError, match="--seed"):
            seed(bad)


@pytest.mark.parametrize("name,limit", [("--epochs", 100000), ("--trials", 1000000),
                                        ("--attack-steps", 10000), ("--seed", 2 ** 63 - 1),
                                        ("--width", 16384), ("--batch-size", 1000000),
                                        ("--k", 1000000), ("--classes", 1000000),
                                        ("--centre-trials", 1000000)])
def test_integer_options_have_stated_limits(name, limit):
    from plumbing.cli import int_sci

    parse = int_sci(0, name)
    assert parse(str(limit)) == limit
    with pytest.raises(argparse.ArgumentTypeError, match=f"{name} must be an integer in .*{limit}"):
        parse(str(limit + 1))
    with pytest.raises(argparse.ArgumentTypeError, match=str(limit)):
        parse("1e30")


def test_other_integer_options_stay_exact_without_a_limit():
    from plumbing.cli import int_sci

    assert int_sci(0, "--halvings")("1e30") == 10 ** 30          # meant to take huge values
    with pytest.raises(argparse.ArgumentTypeError, match="40 digits"):
        int_sci(0, "--halvings")("1e40")


# ---- 4. one line instead of a traceback ------------------------------------------------------

def test_full_disk_is_one_line(tmp_path, monkeypatch):
    import plumbing.io
    from simulate import staircase

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(plumbing.io, "atomic_write_bytes", full)
    rc, _, err = run_main_inproc(staircase.main, ["--n-grid", "2", "--trials", "2",
                                                  "--json", tmp_path / "s.json"])
    one_line(rc, err, "No space left on device", str(tmp_path))


def test_staircase_checkpoint_with_missing_keys_is_named(tmp_path):
    from dataclasses import asdict

    from simulate import staircase
    from simulate.json_checkpoint import Checkpoint
    from theory.staircase import StaircaseSpec

    ck = tmp_path / "s.ckpt"
    settings = {"n_grid": [2], "trials": 2, "seed": 0, "spec": asdict(StaircaseSpec()),
                "lam_sweep": []}
    Checkpoint(ck, settings).put("2|0", {"x": [0.0, 1.0]})      # well-formed, rows incomplete
    rc, _, err = run_main_inproc(staircase.main, ["--n-grid", "2", "--trials", "2",
                                                  "--checkpoint", ck])
    one_line(rc, err, str(ck), "delete it")


def test_sweep_result_with_missing_keys_is_named(tmp_path):
    from plumbing.experiment import config_dict
    from plumbing.sweep import load_finished, result_path
    from simulate.sweeps import THM2, Thm2Config

    cfg = Thm2Config(d=2, delta=0.5, n=4)
    p = result_path(tmp_path, THM2, cfg)
    p.write_text(json.dumps({"config": config_dict(cfg), "result": {"d": 2}}))
    with pytest.raises(ValueError, match=f"{p.name}.*certified_robust_accuracy"):
        load_finished(tmp_path, THM2, cfg)


def test_truncated_campaign_checkpoint_is_named(tmp_path):
    import torch

    from deep.experiments.campaign_stack import Group, Schedule, train_group
    from deep.methods import parse_method_spec
    from deep.models_yang import CNN1

    ck = tmp_path / "g.ckpt"
    ck.write_bytes(b"PK\x03\x04 truncated")
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
    group = Group("cnn1", "single", [parse_method_spec("at", steps=1)])
    with pytest.raises(ValueError, match="g.ckpt"):
        train_group(group, CNN1(image_size=16, dropout=0.0), x, y, epochs=1, batch_size=8,
                    sched=Schedule(lr=0.05, momentum=0.9, milestones=(0.5,)), seed=0,
                    checkpoint=ck)


def _cli(module, *args, timeout=60):
    r = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("module,args,must", [
    ("simulate.no_free_robustness", ["--k", "1e30"], "--k"),
    ("simulate.nn_distance_scaling", ["--centre-trials", "1e15"], "--centre-trials"),
    ("simulate.nn_covering", ["--classes", "1e30"], "--classes"),
    ("deep.scaling_law", ["--tiny", "--width", 2 ** 53 + 1], "--width"),
    ("deep.scaling_law", ["--tiny", "--batch-size", 2 ** 53 + 1], "--batch-size"),
    ("deep.scaling_law", ["--tiny", "--seed", 2 ** 64], "--seed"),
    ("deep.scaling_law", ["--tiny", "--epochs", "1e30"], "--epochs"),
    ("deep.tradeoff_table", ["--tiny", "--attack-steps", "1e30"], "--attack-steps"),
    ("simulate.staircase", ["--trials", "1e30"], "--trials"),
])
def test_absurd_sizes_refused_up_front(module, args, must, tmp_path):
    rc, out, err = _cli(module, *args, "--out" if module.startswith("deep.") else "--json",
                        tmp_path / ("o" if module.startswith("deep.") else "o.json"))
    one_line(rc, err, must)
    assert "data:" not in out       # refused before any data set is loaded
