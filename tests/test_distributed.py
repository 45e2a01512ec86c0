"""Scale-out: the sweep runner (plumbing.sweep) on the local engine and on a local Ray with 2
workers. The Ray engine must give the local engine's numbers bit for bit (Theorem 1 sweep, MNIST
separation, a tiny scaling-law grid), lose nothing when a worker dies mid-sweep, and a restarted
sweep must skip finished runs. One Ray instance is started for the whole module."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from plumbing.cli import UsageError
from plumbing.experiment import ConfigMixin, Experiment, config_key
from plumbing.sweep import load_finished, run_sweep

REPO = Path(__file__).resolve().parent.parent
HERE = str(Path(__file__).resolve().parent)


# ---- experiments used by the tests (module level: Ray workers import them) -------------------

@dataclass(frozen=True)
class CountConfig(ConfigMixin):
    """Sum of squares 0..steps-1 plus a seeded draw; ``die_at``: step at which the first attempt
    kills its own worker process (os._exit), once per ``marker`` file."""
    name: str
    steps: int = 6
    die_at: int = -1
    marker: str = ""

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError("steps must be >= 1")


def count_run(config: CountConfig, workdir=None) -> dict:
    """Checkpoints after every step in ``workdir/state.json``; resumes from it."""
    state = {"step": 0, "total": 0, "resumed_from": None}
    ck = None if workdir is None else Path(workdir) / "state.json"
    if ck is not None and ck.is_file():
        state = json.loads(ck.read_text())
        state["resumed_from"] = state["step"]
    while state["step"] < config.steps:
        s = state["step"]
        if s == config.die_at and config.marker and not Path(config.marker).exists():
            Path(config.marker).write_text("died")
            os._exit(1)                      # the worker process dies without cleaning up
        state["total"] += s * s
        state["step"] = s + 1
        if ck is not None:
            ck.write_text(json.dumps(state))
    draw = float(np.random.default_rng(len(config.name)).random())
    return {"name": config.name, "total": state["total"], "draw": draw,
            "resumed_from": state["resumed_from"]}


COUNT = Experiment("count", run=count_run)


def flaky_thm1_run(config, workdir=None, *, marker: str, die_n: int) -> dict:
    """The Theorem 1 point, except that the first attempt at n = ``die_n`` kills its worker."""
    from simulate.sweeps import thm1_run

    if config.n == die_n and not Path(marker).exists():
        Path(marker).write_text("died")
        os._exit(1)
    return thm1_run(config, workdir)


FLAKY_THM1 = Experiment("thm1", run=flaky_thm1_run)


# ---- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    """One local Ray with 2 worker CPUs for the whole module (start-up takes seconds)."""
    ray = pytest.importorskip("ray", reason='Ray not installed: pip install -e ".[ray]"')
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    old = os.environ.get("PYTHONPATH")
    # workers inherit the environment: they import this checkout and this test module
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), HERE] + parts)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def _strip(res: dict) -> dict:
    res = dict(res)
    res.pop("provenance", None)
    res.pop("seconds", None)
    return res


THM1_ARGS = ["--sweep", "--d", "6", "--sweep-n", "2,8,32,128", "--trials", "3",
             "--test-size", "200", "--learners", "memoriser,1nn,knn,bayes"]


# ---- local engine: keys, restart, bad input (no Ray needed) ----------------------------------

def test_config_key_is_stable_and_distinguishes_configs():
    a, b = CountConfig("a"), CountConfig("a", steps=7)
    assert a.key() == CountConfig("a").key()              # same config, same file name
    assert a.key() != b.key()
    assert a.key().startswith("countconfig-")
    assert CountConfig.from_dict(a.asdict()) == a
    with pytest.raises(ValueError, match="prefix"):
        config_key(a, "../x")


def test_interrupted_local_sweep_restarts_where_it_stopped(tmp_path):
    """A sweep interrupted after two runs, rerun with the same folder, computes only the rest,
    and the gathered results equal an uninterrupted sweep."""
    configs = [CountConfig(f"r{i}", steps=3 + i) for i in range(4)]
    calls = []

    def run(config, workdir=None):
        calls.append(config.name)
        if config.name == "r2" and len(calls) == 3:
            raise KeyboardInterrupt
        return count_run(config, workdir)

    exp = Experiment("count", run=run)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(exp, configs, state_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(
        f"{exp.key(c)}.json" for c in configs[:2])
    calls.clear()
    again = run_sweep(exp, configs, state_dir=tmp_path)
    assert calls == ["r2", "r3"]                            # r0, r1 skipped
    assert again == run_sweep(COUNT, configs)                # nothing lost, same numbers


def test_result_file_of_another_config_is_refused(tmp_path):
    cfg = CountConfig("a")
    run_sweep(COUNT, [cfg], state_dir=tmp_path)
    path = tmp_path / f"{COUNT.key(cfg)}.json"
    rec = json.loads(path.read_text())
    rec["config"]["steps"] = 99
    path.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="does not belong"):
        load_finished(tmp_path, COUNT, cfg)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        run_sweep(COUNT, [cfg], state_dir=tmp_path)


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch, capsys):
    from plumbing.cli import run_main
    from simulate.no_free_robustness import main

    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    with pytest.raises(SystemExit) as exc:
        run_main(main, THM1_ARGS + ["--engine", "ray"], prog="p")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[ray]"' in err[0]


def test_engine_options_need_ray_engine():
    from simulate.no_free_robustness import main

    with pytest.raises(UsageError, match="--engine ray"):
        main(THM1_ARGS + ["--workers", "2"])


def test_thm1_checkpoint_folder_resumes_and_names_corrupt_files(tmp_path):
    from plumbing.cli import run_main
    from simulate.no_free_robustness import main

    ck = tmp_path / "ck"
    main(THM1_ARGS + ["--checkpoint", str(ck), "--json", str(tmp_path / "a.json")])
    files = sorted(ck.glob("thm1-*.json"))
    assert len(files) == 4                                  # one per n
    main(THM1_ARGS + ["--checkpoint", str(ck), "--json", str(tmp_path / "b.json")])
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert _strip(a) == _strip(b)
    files[0].write_text("{")
    with pytest.raises(SystemExit) as exc:
        run_main(main, THM1_ARGS + ["--checkpoint", str(ck)], prog="p")
    assert exc.value.code == 2
    (tmp_path / "f").write_text("{}")
    with pytest.raises(UsageError, match="folder"):
        main(THM1_ARGS + ["--checkpoint", str(tmp_path / "f")])


def test_core_commands_do_not_import_ray():
    code = ("import sys; from simulate.no_free_robustness import main; "
            f"main({THM1_ARGS!r}); assert 'ray' not in sys.modules, 'ray imported'")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


# ---- Ray engine ------------------------------------------------------------------------------

def test_thm1_sweep_ray_equals_local(ray_local, tmp_path):
    from simulate.no_free_robustness import main

    main(THM1_ARGS + ["--json", str(tmp_path / "local.json")])
    main(THM1_ARGS + ["--engine", "ray", "--workers", "2", "--json", str(tmp_path / "ray.json")])
    local = json.loads((tmp_path / "local.json").read_text())
    ray_ = json.loads((tmp_path / "ray.json").read_text())
    assert [p["n"] for p in ray_["points"]] == [2, 8, 32, 128]
    assert _strip(ray_) == _strip(local)                    # bit for bit, every trial


def test_separation_mnist_ray_equals_single_process(ray_local, mnist_train, mnist_test, tmp_path):
    """A few thousand MNIST images: the sharded search (queries split over 2 workers, 5 shards
    per side, references in the object store) equals the single-process search exactly,
    distances and minimiser indices, and the command's JSON is the same."""
    from simulate.separation import main
    from simulate.sweeps import separation_row_sharded
    from theory.separation import separation_row

    xtr, ytr = mnist_train[0][:3000], mnist_train[1][:3000]
    xte, yte = mnist_test[0][:1000], mnist_test[1][:1000]
    one = separation_row(xtr, ytr, xte, yte, "inf")
    sharded = separation_row_sharded(xtr, ytr, xte, yte, "inf", engine="ray", workers=2,
                                     shards=5)
    for f in ("train_train", "train_train_index", "test_train", "test_train_index"):
        assert np.array_equal(getattr(sharded, f), getattr(one, f)), f
    assert sharded.scale == one.scale == 255.0

    npz = tmp_path / "mnist_small.npz"
    np.savez(npz, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    for engine, extra in (("local", []), ("ray", ["--engine", "ray", "--workers", "2"])):
        main(["--dataset", "npz", "--data-root", str(npz), "--norm", "inf",
              "--json", str(tmp_path / f"{engine}.json")] + extra)
    a = json.loads((tmp_path / "local.json").read_text())
    b = json.loads((tmp_path / "ray.json").read_text())
    assert _strip(a) == _strip(b)


def test_worker_killed_mid_sweep_loses_nothing(ray_local, tmp_path):
    """One task of a Theorem 1 sweep kills its worker process on its first attempt, and a
    checkpointing run dies half-way: Ray retries both, the checkpointing run resumes from its own
    checkpoint, every run's file is written, and the numbers equal the local engine's."""
    from simulate.sweeps import THM1, thm1_sweep_configs
    from theory.hypercube_simulation import Thm1Config

    base = Thm1Config(n=1, d=6, trials=3, test_size=200, learners=("memoriser", "1nn", "bayes"))
    configs = thm1_sweep_configs(base, (2, 8, 32, 128))
    local = run_sweep(THM1, configs)
    marker = tmp_path / "died"
    state = tmp_path / "state"
    got = run_sweep(FLAKY_THM1, configs, engine="ray", workers=2, state_dir=state,
                    shared={"marker": str(marker), "die_n": 32})
    assert marker.exists()                                  # the worker did die
    assert json.loads(json.dumps(local)) == got
    assert len(list(state.glob("thm1-*.json"))) == 4 and not list(state.glob("*.work"))

    cmarker = tmp_path / "count_died"
    cfg = [CountConfig("a", steps=8, die_at=5, marker=str(cmarker)), CountConfig("bb", steps=4)]
    res = run_sweep(COUNT, cfg, engine="ray", workers=2, state_dir=tmp_path / "count")
    assert cmarker.exists()
    assert res[0]["resumed_from"] == 5                      # resumed from its checkpoint
    assert res[0]["total"] == sum(s * s for s in range(8))
    assert [r["total"] for r in res] == [r["total"] for r in run_sweep(COUNT, cfg)]
    again = run_sweep(COUNT, cfg, engine="ray", workers=2, state_dir=tmp_path / "count")
    assert again == res                                      # restarted sweep: all skipped


def _strip_run(rec: dict) -> dict:
    """A run's JSON without wall-clock fields (provenance, per-epoch seconds)."""
    rec = _strip(rec)
    rec["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in rec["history"]]
    return rec


def _cli(ray, module: str, argv: list[str]) -> None:
    """Run a command as a user does, in a fresh process (CPU float sums depend on process-wide
    threading state that earlier tests in this process may have changed); with ``--engine ray`` it
    joins this module's local Ray cluster."""
    import subprocess
    import sys

    if "--engine" in argv:
        argv = argv + ["--address", ray.get_runtime_context().gcs_address]
    p = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                       env=os.environ.copy(), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


def test_tiny_scaling_law_grid_ray_equals_local(ray_local, mnist_root, tmp_path):
    """A 2-run scaling-law grid (aol_mlp at n = 32 and 64, --tiny): one Ray task per run, MNIST
    put in the object store once; every run's JSON (history, CRA, accuracies) equals the local
    engine's exactly."""
    common = ["--tiny", "--models", "aol_mlp", "--sizes", "32,64", "--data-root", str(mnist_root)]
    _cli(ray_local, "deep.scaling_law", common + ["--out", str(tmp_path / "local")])
    _cli(ray_local, "deep.scaling_law", common + ["--out", str(tmp_path / "ray"), "--engine", "ray"])
    names = sorted(p.name for p in (tmp_path / "local").glob("mnist_*[0-9a-f].json"))
    assert len(names) == 2
    assert names == sorted(p.name for p in (tmp_path / "ray").glob("mnist_*[0-9a-f].json"))
    for nm in names:
        a = json.loads((tmp_path / "local" / nm).read_text())
        b = json.loads((tmp_path / "ray" / nm).read_text())
        assert _strip_run(a) == _strip_run(b), nm
    sa = json.loads((tmp_path / "local" / "summary.json").read_text())["runs"]
    sb = json.loads((tmp_path / "ray" / "summary.json").read_text())["runs"]
    assert [{k: v for k, v in r.items() if k != "wall_seconds"} for r in sa] == \
           [{k: v for k, v in r.items() if k != "wall_seconds"} for r in sb]


def test_tiny_tradeoff_table_ray_equals_local_with_data_fidelity(ray_local, mnist_root, tmp_path):
    """One YRZSC table row (--tiny, natural) on Ray equals the local run, and its per-run JSON
    records the data's fidelity (checksum match, approximate) although the worker never loaded
    the data itself."""
    common = ["--tiny", "--methods", "natural", "--data-root", str(mnist_root)]
    _cli(ray_local, "deep.tradeoff_table", common + ["--out", str(tmp_path / "local")])
    _cli(ray_local, "deep.tradeoff_table", common + ["--out", str(tmp_path / "ray"), "--engine", "ray"])
    runs = sorted(p.name for p in (tmp_path / "local" / "runs").glob("*natural.json"))
    assert runs and runs == sorted(p.name for p in (tmp_path / "ray" / "runs").glob("*natural.json"))
    for nm in runs:
        a = json.loads((tmp_path / "local" / "runs" / nm).read_text())
        b = json.loads((tmp_path / "ray" / "runs" / nm).read_text())
        assert b["checksum_match"] is True and b["approximate"] is False
        assert _strip_run_any(a) == _strip_run_any(b), nm


def _strip_run_any(rec: dict) -> dict:
    """A run's JSON without wall-clock fields (provenance, any 'seconds' at any depth)."""
    if isinstance(rec, dict):
        return {k: _strip_run_any(v) for k, v in rec.items()
                if k not in ("provenance", "seconds", "wall_seconds")}
    if isinstance(rec, list):
        return [_strip_run_any(v) for v in rec]
    return rec


def _fails(config, workdir=None):
    raise ValueError(f"bad setting in {config.name}")


FAILS = Experiment("fails", run=_fails)


def test_error_in_a_ray_task_is_the_runs_own_error(ray_local):
    """A run that raises ValueError on a worker surfaces as that ValueError (so the command's
    one-line error names it), not as a wrapped Ray traceback."""
    with pytest.raises(ValueError, match="^bad setting in x$"):
        run_sweep(FAILS, [CountConfig("x")], engine="ray", workers=2, max_retries=0)


# ---- exact 1-NN radii (simulate.nn_exact_robustness) sharded over test points ----------------

NN_EXACT_ARGS = ["--dataset", "mnist", "--n-train", "2000", "--n-test", "200", "--chunk", "64",
                 "--norm", "both"]


def _nn_exact(ray, mnist_root, out, *extra, one_blas_thread=False) -> dict:
    """Run the command in a fresh process; with ``--engine ray`` it joins the module's Ray."""
    argv = NN_EXACT_ARGS + ["--data-root", str(mnist_root), "--out", str(out), *extra]
    if "--engine" in argv:
        argv += ["--address", ray.get_runtime_context().gcs_address]
    env = os.environ.copy()
    if one_blas_thread:       # what a 1-CPU Ray task runs with (Ray sets OMP_NUM_THREADS=1)
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "simulate.nn_exact_robustness", *argv],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return {n: (json.loads((out / f"mnist_{n}_box_reduced.json").read_text()),
                np.load(out / f"mnist_{n}_box_reduced.npz")) for n in ("inf", "l2")}


def test_nn_exact_ray_equals_local_and_resumes(ray_local, mnist_root, tmp_path):
    """Chunks as Ray tasks sharing one prepared index (object store) give the local engine's
    per-point radii bit for bit when both use one BLAS thread, and within 1e-10 relative of a
    local run on threaded BLAS (the bulk product's rounding); robust accuracies are equal. A run
    that finds part of the checkpoint (the first 128 points, written by a local --first-test run)
    computes only the remaining chunks on Ray and gives the same numbers."""
    loc1 = _nn_exact(ray_local, mnist_root, tmp_path / "local1", one_blas_thread=True)
    loc = _nn_exact(ray_local, mnist_root, tmp_path / "local")
    ray_ = _nn_exact(ray_local, mnist_root, tmp_path / "ray", "--engine", "ray", "--workers", "2")
    for n in ("inf", "l2"):
        (ja, a), (jr, r), (_, t) = loc1[n], ray_[n], loc[n]
        for k in a.files:
            assert np.array_equal(a[k], r[k]), (n, k)
        fin = np.isfinite(t["radius"]) & (t["radius"] > 0)
        assert np.array_equal(fin, np.isfinite(r["radius"]) & (r["radius"] > 0))
        assert np.allclose(t["radius"][fin], r["radius"][fin], rtol=1e-10, atol=0)
        assert ja["grid"] == jr["grid"] and ja["paper_radii"] == jr["paper_radii"]
        assert jr["engine"] == "ray" and jr["workers"] == 2 and jr["chunks_computed"] == 4

    # a run interrupted after its first two chunks: their records are in the checkpoint
    from simulate.json_checkpoint import Checkpoint
    from simulate.nn_exact_robustness import Config, load
    from simulate.sweeps import nn_exact_chunk
    from theory.nn_exact import build_index

    out = tmp_path / "resumed"
    cfg = Config(dataset="mnist", data_root=str(mnist_root), n_train=2000, n_test=200, chunk=64,
                 norms=["inf"], out=str(out))
    xtr, ytr, xte, yte, *_ = load(cfg)
    index = build_index(xtr / 255.0, ytr, "inf", (0.0, 1.0))
    first = [nn_exact_chunk(index, xte, yte, c0, c0 + 64, "inf") for c0 in (0, 64)]
    first[1]["radius"][0] = 123.0          # a marker: a reused chunk is taken as stored
    ck = Checkpoint(cfg.paths("inf")[2], cfg.settings("inf"))
    ck.put("0", first[0])
    ck.put("64", first[1])
    res = _nn_exact(ray_local, mnist_root, out, "--engine", "ray", "--workers", "2")
    j, z = res["inf"]     # (--norm both: the l2 run has no checkpoint and computes all 4 chunks)
    assert (j["chunks_reused"], j["chunks_computed"]) == (2, 2)
    assert res["l2"][0]["chunks_computed"] == 4
    assert z["radius"][64] == 123.0
    assert np.array_equal(z["radius"][:64], first[0]["radius"])
    for k in z.files:                      # the chunks computed on Ray: as the local engine's
        assert np.array_equal(z[k][128:], loc1["inf"][1][k][128:]), k
    assert not list(out.glob("*.ckpt"))    # a finished full run removes its checkpoint


def test_nn_exact_shard_refuses_an_index_of_another_threat_model():
    from simulate.sweeps import NnExactShard, nn_exact_shard_run
    from theory.nn_exact import build_index

    rng = np.random.default_rng(0)
    x, y = rng.random((20, 4)), np.arange(20) % 2
    ix = build_index(x, y, "inf", None)
    xt = (rng.random((5, 4)) * 255).astype(np.uint8)
    with pytest.raises(ValueError, match="another norm or threat model"):
        nn_exact_shard_run(NnExactShard(0, 5, "inf", True), index=ix, test_x=xt, test_y=y[:5])
    with pytest.raises(ValueError, match="another norm or threat model"):
        nn_exact_shard_run(NnExactShard(0, 5, "2", False), index=ix, test_x=xt, test_y=y[:5])
    with pytest.raises(ValueError, match="stop"):
        NnExactShard(5, 5, "inf", True)
