"""P&L network experiments (Prach & Lampert) as one prioritised list inside a wall budget.

In order of priority (each later item gets the time the earlier ones left):

1. ``throughput`` - training throughput of the AOL and CPL ConvNets (Sec. 4.1) at CIFAR-10 shape
   against the 8.6 s per CIFAR-10 epoch of the XS models in the 1-Lipschitz layer comparison the
   paper cites (``deep.experiments.throughput.measure``), in float32 with and without TF32.
2. ``scaling_law_mnist`` - the MNIST scaling law (Sec. 4.2 / 9.3, Fig. 7): AOL MLP and CPL ConvNet
   (Sec. 9.3 sizes: MLP width 1024, ConvNet base 16, 32x32 inputs) on class-balanced training sets
   of 2^5 ... 2^15 and 60000 examples at fixed compute (``pl_runs.epochs_for_size``), certified
   robust accuracy at 36/255.
3. ``pca_features_cifar10`` (Table 1) and ``tradeoff_cifar10`` (Self-Normalizing CE, Table 3,
   t = 0 and 10) on the JPEG-approximate CIFAR-10 copy: every such result carries
   ``"approximate": true`` and its reason.
4. ``robust_overfitting_cifar10`` (Sec. 4.3, Fig. 2): offset sqrt(2), no augmentation.

The epochs of an item are chosen from a short timing of its models (seconds per training
example) so that the item fits its share of the budget; they are printed in every result.

Certificates (P&L Eq. 3) are computed by ``pl_runs`` in float32 with the models' exact Lipschitz
bound 1; this campaign turns TF32 off (``torch.backends.*.allow_tf32 = False``) so no reduced
precision enters a certified margin, and uses no autocast. After every run each certified test
point (margin > sqrt(2) * 36/255) is attacked (``deep.attacks.pgd``, l2, margin loss) at its own
certified radius (radii bucketed downward, so every attack ball lies inside the certified ball);
a misclassified adversarial point is a *broken certificate*. The count, which must be 0, is in
every result and in the summary.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from deep.experiments import pl_runs
from deep.experiments.campaign_common import Budget, finished, log, sync, write_manifest
from deep.experiments.experiment import write_result
from deep.trainer import TrainConfig
from plumbing.io import atomic_write_bytes, atomic_write_json, read_json
from plumbing.validation import check_int
from theory.constants import EPS_L2_DEFAULT, ROBUST_OVERFIT_OFFSET

CAMPAIGN = "pl"
#: seconds per CIFAR-10 epoch of XS-AOL / XS-CPL in the 1-Lipschitz layer comparison that P&L
#: cite for their training-time argument (their GPU, not ours: a reference, not a target)
THROUGHPUT_ANCHOR_S = 8.6
APPROX_REASON = ("CIFAR-10, JPEG-approximate: trained and evaluated on the JPEG re-encoding "
                 "(quality 75) of CIFAR-10, not the official pixels")
SCALING_SIZES = tuple(2 ** k for k in range(5, 16)) + (60000,)
#: order in which the sizes run, so that a cut-off run still spans the whole range
SCALING_ORDER = (32, 1024, 60000, 256, 8192, 64, 4096, 128, 16384, 512, 2048, 32768)
PCA_ROWS = ("1-16", "1-512", "513-3072", "2049-3072", "1-16&513-3072")
SNCE_TS = (0.0, 10.0)
#: priority weights of the items after the throughput (share of the time left)
WEIGHTS = {"scaling_law_mnist": 0.45, "pca_features_cifar10": 0.2, "tradeoff_cifar10": 0.15,
           "robust_overfitting_cifar10": 0.2}
TINY = {"sizes": (32, 64), "width": 16, "test_size": 40, "eval_train_size": 20,
        "batch_size": 16, "throughput_batches": 1, "attack_steps": 2, "attack_size": 16,
        "cifar_train_size": 40, "max_ref_epochs": 1, "pca_rows": ("1-16",), "snce_ts": (0.0,),
        "throughput_width": 4, "max_cifar_epochs": 1}


@dataclass
class PlConfig:
    """The P&L campaign (validated)."""
    out: Path
    device: str = "cpu"
    data_root: str | None = None
    cifar_root: str | None = None
    seed: int = 0
    tiny: bool = False
    sizes: tuple[int, ...] = SCALING_SIZES
    width: int | None = None          # None: the paper's (MNIST MLP 1024 / ConvNet 16; CIFAR 64)
    depth: int | None = None
    test_size: int | None = None
    eval_train_size: int = 2000
    batch_size: int = 256
    throughput_batches: int = 30
    throughput_width: int | None = None
    attack_steps: int = 20
    attack_size: int = 1000           # certified test points attacked per run (first ones)
    cifar_train_size: int | None = None
    max_ref_epochs: int = 100         # cap of the MNIST reference epochs (scaling_law default)
    max_cifar_epochs: int = 200
    pca_rows: tuple[str, ...] = PCA_ROWS
    snce_ts: tuple[float, ...] = SNCE_TS
    safety: float = 0.8

    def __post_init__(self):
        self.out = Path(self.out)
        for s in self.sizes:
            check_int("sizes", s, min_value=10)
        for name in ("eval_train_size", "batch_size", "throughput_batches", "attack_steps",
                     "attack_size", "max_ref_epochs", "max_cifar_epochs"):
            check_int(name, getattr(self, name), min_value=1)

    @property
    def root(self) -> Path:
        return self.out / CAMPAIGN


def pl_config(args, out: Path) -> PlConfig:
    kw = dict(out=out, device=args.device, data_root=args.data_root, cifar_root=args.cifar_root,
              seed=args.seed, tiny=args.tiny)
    if args.tiny:
        kw.update(TINY)
    return PlConfig(**kw)


# ---- CIFAR-10 copy -------------------------------------------------------------------------

def _decode_jpeg_tree(root: Path) -> dict:
    """Decode ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (class folders in CIFAR-10's
    official order) into uint8 arrays; needs Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise FileNotFoundError("decoding the CIFAR-10 JPEG copy needs Pillow, which is not "
                                "installed; run `python -m deep.campaign prepare` where it is and "
                                "pass the .npz") from None
    import io
    import tarfile

    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
    out = {}
    tar_path = root if root.is_file() else root / "cifar10-jpeg.tar.gz"
    members: dict[str, list] = {"train": [], "test": []}
    if tar_path.is_file():
        with tarfile.open(tar_path, "r:gz") as tar:
            for m in tar:
                parts = m.name.strip("./").split("/")
                if m.isfile() and len(parts) == 3 and parts[0] in members and parts[1] in classes:
                    data = tar.extractfile(m).read()
                    members[parts[0]].append((parts[1], parts[2], data))
    else:
        for split in members:
            for c in classes:
                for p in sorted((root / split / c).glob("*.jpg")):
                    members[split].append((c, p.name, p.read_bytes()))
    for split, items in members.items():
        if not items:
            raise FileNotFoundError(f"no CIFAR-10 JPEG images for split {split} under {root}")
        items.sort(key=lambda t: (classes.index(t[0]), t[1]))
        imgs = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.uint8)
                         for _, _, b in items])
        if imgs.shape[1:] != (32, 32, 3):
            raise ValueError(f"CIFAR-10 JPEG images must be 32x32 RGB, got {imgs.shape[1:]}")
        out[f"x_{split}"] = imgs
        out[f"y_{split}"] = np.array([classes.index(c) for c, _, _ in items], dtype=np.int64)
    return out


def prepare_cifar_npz(cifar_root, out: Path, train_size: int | None = None,
                      test_size: int | None = None, seed: int = 0) -> Path:
    """Decode the JPEG copy once (CPU side, Pillow) into ``out`` (.npz, uint8 NHWC + labels),
    optionally keeping class-balanced subsets (the whole copy is 170 MB, more than a device run
    can carry; 10000 + 2000 images are about 34 MB)."""
    from deep.data import balanced_subset

    arrays = _decode_jpeg_tree(Path(cifar_root))
    for split, size in (("train", train_size), ("test", test_size)):
        if size is not None and size < len(arrays[f"y_{split}"]):
            idx = balanced_subset(arrays[f"y_{split}"], size, seed)
            arrays[f"x_{split}"], arrays[f"y_{split}"] = arrays[f"x_{split}"][idx], arrays[f"y_{split}"][idx]
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays, note=np.array(APPROX_REASON))
    return atomic_write_bytes(Path(out), buf.getvalue())


def _find_npz(cifar_root: Path) -> Path | None:
    if cifar_root.is_file() and cifar_root.suffix == ".npz":
        return cifar_root
    for cand in (cifar_root / "cifar10_u8.npz", cifar_root / "cifar10-jpeg" / "cifar10_u8.npz"):
        if cand.is_file():
            return cand
    return None


def cifar_loader(cifar_root) -> tuple[object | None, str]:
    """(loader fn(split, root) for ``plumbing.datasets.register_loader``, message); the loader
    is None with the reason when the copy or Pillow is missing."""
    if cifar_root is None:
        return None, "no --cifar-root given"
    root = Path(cifar_root)
    npz = _find_npz(root)
    if npz is not None:
        try:
            with np.load(npz) as z:
                arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (OSError, ValueError, KeyError) as exc:
            return None, f"corrupt CIFAR-10 file {npz}: {exc}"
    else:
        jpeg_root = root / "cifar10-jpeg" if (root / "cifar10-jpeg").is_dir() else root
        try:
            arrays = _decode_jpeg_tree(jpeg_root)
        except (FileNotFoundError, ValueError) as exc:
            return None, str(exc)
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
            return None, f"CIFAR-10 arrays must be uint8 (N, 32, 32, 3), got {x.dtype} {x.shape}"

    def load(split, _root=None):
        return arrays[f"x_{split}"], arrays[f"y_{split}"]

    return load, f"CIFAR-10 copy from {npz or root}"


# ---- certificates under attack -------------------------------------------------------------

@contextmanager
def keep_eval_norms(model):
    """While frozen weights are attacked, keep each CPL layer's eval-mode spectral norm instead of
    recomputing it on every ``model.eval()`` (``deep.attacks`` calls it per batch; a CPL layer
    clears its cache on every mode switch). The cache is keyed by the weight's version, so a
    changed weight still forces a recomputation; entering training mode still clears it."""
    from deep.layers import CPLConv2d

    patched = []
    for mod in model.modules():
        if isinstance(mod, CPLConv2d):
            def train(mode=True, _m=mod):
                if mode:
                    _m._cache = None
                _m.training = bool(mode)
                for c in _m.children():
                    c.train(mode)
                return _m
            mod.train = train
            patched.append(mod)
    try:
        yield model
    finally:
        for mod in patched:
            del mod.train


def attack_certificates(model, x, y, *, eps_cert: float, steps: int, max_points: int,
                        buckets: int = 8, should_stop=None) -> dict | None:
    """Attack every point certified at ``eps_cert`` (up to ``max_points``) at its own certified
    radius (l2 PGD on the margin, best iterate). Radii are rounded *down* to the smallest radius
    of their bucket, so each attack ball lies inside the point's certified ball; a point the
    attack misclassifies is a broken certificate (must never happen for a sound certificate).
    ``should_stop()`` (optional) is asked before every bucket; once it returns True the attack
    ends and None is returned (an unfinished attack is never reported)."""
    device = next(model.parameters()).device
    model.eval()
    with keep_eval_norms(model):
        return _attack_certificates(model, x, y, eps_cert, steps, max_points, buckets, device,
                                    should_stop)


def _attack_certificates(model, x, y, eps_cert, steps, max_points, buckets, device,
                         should_stop=None) -> dict | None:
    from deep import certify
    from deep.attacks import eval_mode, perturbation_norms, pgd

    m = certify.margins(model, x, y).to(torch.float64)
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:   # PCA-projected inputs: attack z in [0, 1]^d with x = lo + s z
        s = hi - lo
        model, x = _BoxToData(model, lo, s), (x - lo) / s
        scale = s
    else:
        scale = 1.0
    radius = m.clamp_min(0) / math.sqrt(2.0)
    cert = torch.nonzero(m > math.sqrt(2.0) * eps_cert).flatten()[:max_points]
    out = {"eps_certified": eps_cert, "certified_points": int(len(cert)), "attacked_points": 0,
           "broken_certificates": 0, "attack": f"PGD l2, margin loss, {steps} steps, best iterate",
           "max_perturbation_over_radius": 0.0}
    if len(cert) == 0:
        return out
    r = radius[cert]
    order = torch.argsort(r)
    chunks = torch.tensor_split(order, min(buckets, len(order)))
    broken = 0
    worst = 0.0
    for ch in chunks:
        if should_stop is not None and should_stop():
            return None
        if len(ch) == 0:
            continue
        idx = cert[ch]
        # float32 projection may overshoot by ~1e-6; in z-space the radius is r / scale
        eps = float(r[ch].min()) * (1 - 1e-4) / scale
        xb, yb = x[idx].to(device), y[idx].to(device)
        adv = pgd(model, xb, yb, eps, norm="2", steps=steps, step_size=2.5 * eps / steps,
                  loss="margin", keep_best=True)
        with eval_mode(model), torch.no_grad():
            broken += int((model(adv).argmax(1) != yb).sum())
        worst = max(worst, float(perturbation_norms(adv, xb, "2").max()) / eps)
    if scale != 1.0:
        out["note"] = (f"inputs outside [0, 1] (PCA projection): attacked through x = {lo:.4g} + "
                       f"{scale:.4g} z with z in [0, 1] (the attack ball is clipped to that box)")
        out["attacked_points"] += len(idx)
    out["broken_certificates"] = broken
    out["max_perturbation_over_radius"] = worst
    return out


class _BoxToData(torch.nn.Module):
    """f(lo + s z): lets the [0, 1]-box attacks of ``deep.attacks`` run on data outside [0, 1];
    an l2 ball of radius r / s in z is the ball of radius r in x."""

    def __init__(self, model, lo: float, s: float):
        super().__init__()
        self.model, self.lo, self.s = model, lo, s

    def forward(self, z):
        return self.model(self.lo + self.s * z)


@contextmanager
def shared_data_preparation():
    """Within the campaign, runs that train on the same data (same dataset, sizes, PCA rows and
    seed: e.g. the two models of one Table 1 row) share one ``pl_runs.prepare_data`` result, so
    the PCA basis (an eigendecomposition of the 3072 x 3072 covariance) is computed once per row
    instead of once per run and once more for the certificate attack."""
    original = pl_runs.prepare_data
    memo: dict = {}

    def prepare(cfg, root):
        key = (cfg.dataset, cfg.train_size, cfg.test_size, cfg.eval_train_size, cfg.pca_subset,
               cfg.pad32, cfg.data_seed, str(root))
        if key not in memo:
            memo.clear()   # keep one data set in memory
            memo[key] = original(cfg, root)
        return memo[key]

    pl_runs.prepare_data = prepare
    try:
        yield
    finally:
        pl_runs.prepare_data = original


def _load_trained(cfg: pl_runs.RunConfig, paths: dict, root, device):
    data = pl_runs.prepare_data(cfg, root)
    model = pl_runs.make_model(cfg, tuple(data["x"].shape[1:]), data["x"]).to(device)
    from plumbing.io import load_checkpoint   # weights only: a planted file is refused, never run
    state = load_checkpoint(paths["checkpoint"], map_location=device, required=("model",))
    model.load_state_dict(state["model"])
    model.eval()
    return model, data


# ---- one run of the list -------------------------------------------------------------------

@dataclass
class Item:
    name: str
    dataset: str
    approximate: bool = False


def _train_run(rc: pl_runs.RunConfig, cfg: PlConfig, item: Item, device, root, extra: dict,
               budget: Budget, post=None) -> dict | None:
    """Train (or resume) one P&L run, attack its certificates, write ``OUT/pl/<item>/<run>.json``."""
    path = cfg.root / item.name / f"{rc.name}.json"
    done = finished(path)
    if done is not None:
        return done
    started = time.perf_counter()
    work = cfg.root / item.name / "work"
    should_stop = budget.stop_hook()
    log(f"[{CAMPAIGN}] {item.name}/{rc.name}: training {rc.train.epochs} epoch(s) of "
        f"{rc.passes_per_epoch} pass(es) over {rc.train_size or 'all'} examples")
    res = pl_runs.run(rc, work, device, root, keep_checkpoint=True, should_stop=should_stop)
    paths = pl_runs.run_paths(rc, work)
    if res is None:
        log(f"[{CAMPAIGN}] {item.name}/{rc.name}: stopped ({budget.reason() or 'budget'}); "
            f"checkpoint kept, rerun to resume")
        return None
    if res.get("lipschitz"):
        model, data = _load_trained(rc, paths, root, device)
        attack = attack_certificates(model, data["xt"], data["yt"], eps_cert=EPS_L2_DEFAULT,
                                     steps=cfg.attack_steps, max_points=cfg.attack_size,
                                     should_stop=should_stop)
        if attack is None:
            log(f"[{CAMPAIGN}] {item.name}/{rc.name}: certificate attack stopped "
                f"({budget.reason() or 'budget'}); rerun to finish")
            return None
    else:
        attack = {"certified_points": 0, "attacked_points": 0, "broken_certificates": 0,
                  "note": "not a 1-Lipschitz model: no certificates"}
    row = pl_runs.summarize(res)
    rec = {"campaign": CAMPAIGN, "item": item.name, "dataset": item.dataset, **extra, "row": row,
           "result": {k: v for k, v in res.items() if k != "provenance"},
           "certificate_attack": attack, "broken_certificates": attack["broken_certificates"],
           "approximate": item.approximate}
    if item.approximate:
        rec["approximate_reason"] = APPROX_REASON
    if post is not None:
        post(rec)
    write_result(path, rec, seed=cfg.seed, device=device, started=started,
                 run_provenance=res.get("provenance"))
    if paths["checkpoint"].exists():
        paths["checkpoint"].unlink()
    budget.note_run_done()
    log(f"[{CAMPAIGN}] {item.name}/{rc.name}: test acc {row.get('test_acc')}, test CRA@36/255 "
        f"{row.get('test_cra_36')}, broken certificates {attack['broken_certificates']}")
    return finished(path)


class _NotPlanned(Exception):
    """An item's timing pilot was stopped (budget or signal): the item starts no run."""


def _seconds_per_example(model: str, shape: str, device, cfg: PlConfig, width,
                         budget: Budget) -> float:
    from deep.experiments.throughput import measure

    r = measure(model, shape, device, batch_size=cfg.batch_size, batches=max(2, min(5, cfg.throughput_batches)),
                warmup=1, width=width, seed=cfg.seed, should_stop=budget.stop_hook())
    if r is None:
        raise _NotPlanned(model)
    return r["seconds_per_step"] / cfg.batch_size


def _no_time(budget: Budget) -> bool:
    """No new work starts: a stop was requested, this share of the budget is spent, or the whole
    command is down to the time it keeps for writing its tables, manifest and archive."""
    return budget.expired() or budget.stop_hook()()


def _loaded_size(dataset: str, split: str, root, cap: int | None) -> int:
    """Examples a run uses of ``split``: the size of the loaded split (the prepared CIFAR-10
    file may hold a subset), capped at ``cap``."""
    n = len(pl_runs.load_split(dataset, split, root)[1])
    return n if cap is None else min(n, cap)


def _width(cfg: PlConfig, dataset: str, model: str):
    return cfg.width if cfg.width is not None else pl_runs.default_width(dataset, model)


def _run_config(cfg: PlConfig, *, name, dataset, model, loss, epochs, train_size, augment,
                pca_subset=None, curve_eps=(), passes=1, lr=0.1) -> pl_runs.RunConfig:
    train = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, seed=cfg.seed)
    return pl_runs.RunConfig(
        name=name, dataset=dataset, model=model, loss=loss, train=train, train_size=train_size,
        test_size=cfg.test_size, eval_train_size=cfg.eval_train_size, eval_every=epochs,
        augment=augment, width=_width(cfg, dataset, model),
        depth=cfg.depth if model != "simple_convnet" else None, pca_subset=pca_subset,
        curve_eps=curve_eps, data_seed=cfg.seed, passes_per_epoch=passes)


# ---- the items -----------------------------------------------------------------------------

def item_throughput(cfg: PlConfig, device, budget: Budget) -> list[str]:
    from deep.experiments.throughput import measure

    names = []
    item = cfg.root / "throughput"
    for model in ("aol_convnet", "cpl_convnet"):
        for tf32 in ((False, True) if device.type == "cuda" else (False,)):
            name = f"{model}_cifar10_{'tf32' if tf32 else 'fp32'}"
            names.append(name)
            path = item / f"{name}.json"
            if finished(path) is not None or _no_time(budget):
                continue
            started = time.perf_counter()
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                r = measure(model, "cifar10", device, batch_size=cfg.batch_size if cfg.tiny else 256,
                            batches=cfg.throughput_batches, warmup=2, width=cfg.throughput_width,
                            seed=cfg.seed, should_stop=budget.stop_hook())
            finally:
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
            if r is None or r["batches_timed"] < cfg.throughput_batches:
                log(f"[{CAMPAIGN}] throughput {name}: stopped ({budget.reason() or 'budget'}) "
                    f"before its {cfg.throughput_batches} timed steps; not written")
                continue
            rec = {"campaign": CAMPAIGN, "item": "throughput", "tf32": tf32, **r,
                   "dataset": None, "data": "random CIFAR-10-shaped tensors (no dataset fidelity)",
                   "device_type": device.type,
                   "anchor_seconds_per_epoch": THROUGHPUT_ANCHOR_S,
                   "ratio_to_anchor": r["seconds_per_epoch"] / THROUGHPUT_ANCHOR_S,
                   "note": "random CIFAR-10-shaped data; the anchor was measured on another GPU",
                   "broken_certificates": 0, "certified_points": 0}
            write_result(path, rec, seed=cfg.seed, device=device, started=started)
            budget.note_run_done()
            log(f"[{CAMPAIGN}] throughput {name}: {r['seconds_per_epoch']:.2f} s per CIFAR-10 epoch "
                f"(anchor {THROUGHPUT_ANCHOR_S} s)")
    return names


def _scaling_plan(cfg: PlConfig, device, budget: Budget) -> dict:
    plan_path = cfg.root / "scaling_law_mnist" / "plan.json"
    if plan_path.is_file():
        return read_json(plan_path)["plan"]
    models = ("aol_mlp", "cpl_convnet")
    sec = {m: _seconds_per_example(m, "mnist", device, cfg, _width(cfg, "mnist", m), budget)
           * (32 / 28) ** 2 for m in models}
    n_ref = max(cfg.sizes)
    per_ref_epoch = sum(sec.values()) * n_ref * len(cfg.sizes)
    # evaluation (clean + certified, training subset and test set) and the certificate attack of
    # every run, costed at a third of a training step per example, on the sizes actually loaded
    n_test = _loaded_size("mnist", "test", cfg.data_root, cfg.test_size)
    n_train = _loaded_size("mnist", "train", cfg.data_root, None)
    evals = (2 * len(models) * sum(n_test + min(cfg.eval_train_size, n, n_train) for n in cfg.sizes)
             * max(sec.values()) / 3)
    ref_epochs = int(max(1, min(cfg.max_ref_epochs,
                                math.floor((cfg.safety * budget.remaining() - evals) / per_ref_epoch))))
    plan = {"seconds_per_example": sec, "ref_size": n_ref, "ref_epochs": ref_epochs,
            "examples_per_run": ref_epochs * n_ref, "n_test": n_test,
            "eval_seconds_estimate": evals, "budget_seconds": budget.seconds,
            "paper": "P&L Sec. 9.3 trains each size at fixed compute; their epoch budget is larger"}
    atomic_write_json(plan_path, {"plan": plan})
    return plan


def item_scaling_law(cfg: PlConfig, device, budget: Budget) -> list[str]:
    item = Item("scaling_law_mnist", "mnist")
    plan = _scaling_plan(cfg, device, budget)
    names = []
    order = [s for s in SCALING_ORDER if s in cfg.sizes] + [s for s in cfg.sizes if s not in SCALING_ORDER]
    loss = pl_runs.LossConfig("offset_ce", offset=0.25, temperature=0.25)
    min_ex = 64 if cfg.tiny else 16384
    for n in order:
        for m in ("aol_mlp", "cpl_convnet"):
            passes = pl_runs.epochs_for_size(n, plan["ref_size"], plan["ref_epochs"])
            r, epochs = pl_runs.group_passes(passes, n, min_ex)
            rc = _run_config(cfg, name=f"mnist_{m}_n{n}_p{passes}_s{cfg.seed}", dataset="mnist",
                             model=m, loss=loss, epochs=epochs, train_size=n, augment=True, passes=r)
            names.append(rc.name)
            if _no_time(budget):
                continue
            _train_run(rc, cfg, item, device, cfg.data_root, {"model": m, "train_size": n,
                                                               "data_passes": passes,
                                                               "ref_epochs": plan["ref_epochs"]},
                       budget)
    return names


def _cifar_epochs(cfg: PlConfig, device, budget: Budget, models, n_runs: int, key: str) -> dict:
    plan_path = cfg.root / key / "plan.json"
    if plan_path.is_file():
        return read_json(plan_path)["plan"]
    sec = {m: _seconds_per_example(m, "cifar10", device, cfg, _width(cfg, "cifar10", m), budget)
           for m in models}
    per_run = max(sec.values())
    # the training set actually loaded (a prepared file may hold a subset of the 50000 images)
    loaded = _loaded_size("cifar10", "train", None, None)
    n = min(cfg.cifar_train_size or loaded, loaded)
    avail = cfg.safety * budget.remaining() - 5.0 * n_runs   # data, PCA and evaluation per run
    epochs = math.floor(avail / (n_runs * per_run * n)) if avail > 0 else 0
    if epochs >= 1:
        plan = {"epochs": int(min(cfg.max_cifar_epochs, epochs)), "train_size": cfg.cifar_train_size}
    else:  # not even one epoch of the whole set fits: one epoch of the largest subset that does
        size = (int(max(min(1000, n), min(n, avail / max(1e-9, n_runs * per_run))))
                if not cfg.tiny else n)
        plan = {"epochs": 1, "train_size": size}
    plan.update(n_train=plan["train_size"] or n, n_train_loaded=loaded, seconds_per_example=sec,
                budget_seconds=budget.seconds)
    atomic_write_json(plan_path, {"plan": plan})
    return plan


def item_pca(cfg: PlConfig, device, budget: Budget) -> list[str]:
    item = Item("pca_features_cifar10", "cifar10", approximate=True)
    models = ("simple_convnet", "cpl_convnet")
    plan = _cifar_epochs(cfg, device, budget, models, len(cfg.pca_rows) * len(models), item.name)
    names = []
    for sub in cfg.pca_rows:
        for m in models:
            loss = (pl_runs.LossConfig("temperature_ce", temperature=1 / 8) if m == "simple_convnet"
                    else pl_runs.LossConfig("offset_ce", offset=0.25, temperature=0.25))
            rc = _run_config(cfg, name=f"cifar10_{m}_pc{sub.replace('&', '+')}_e{plan['epochs']}",
                             dataset="cifar10", model=m, loss=loss, epochs=plan["epochs"],
                             train_size=plan["train_size"], augment=True, pca_subset=sub,
                             lr=0.002 if m == "simple_convnet" else 0.1)
            names.append(rc.name)
            if _no_time(budget):
                continue
            def post(rec, sub=sub):
                p = rec["result"].get("pca") or {}
                rec["row"].update(subset=sub, components=p.get("components"),
                                  variance_explained=p.get("variance_explained"))

            _train_run(rc, cfg, item, device, None, {"model": m, "subset": sub,
                                                     "epochs": plan["epochs"],
                                                     "paper_epochs": 200}, budget, post)
    return names


def item_snce(cfg: PlConfig, device, budget: Budget) -> list[str]:
    item = Item("tradeoff_cifar10", "cifar10", approximate=True)
    plan = _cifar_epochs(cfg, device, budget, ("unified_convnet",), len(cfg.snce_ts), item.name)
    names = []
    for t in cfg.snce_ts:
        rc = _run_config(cfg, name=f"cifar10_unified_convnet_t{t:g}_e{plan['epochs']}",
                         dataset="cifar10", model="unified_convnet",
                         loss=pl_runs.LossConfig("self_normalizing_ce", t=t), epochs=plan["epochs"],
                         train_size=plan["train_size"], augment=True)
        names.append(rc.name)
        if _no_time(budget):
            continue
        _train_run(rc, cfg, item, device, None, {"t": t, "epochs": plan["epochs"],
                                                 "paper_epochs": 200}, budget,
                   lambda rec, t=t: rec["row"].update(t=t))
    return names


def item_overfit(cfg: PlConfig, device, budget: Budget) -> list[str]:
    from deep.experiments.robust_overfitting import CURVE_EPS

    item = Item("robust_overfitting_cifar10", "cifar10", approximate=True)
    models = ("cpl_convnet", "aol_mlp")
    plan = _cifar_epochs(cfg, device, budget, models, len(models), item.name)
    names = []
    for m in models:
        rc = _run_config(cfg, name=f"cifar10_{m}_off{ROBUST_OVERFIT_OFFSET:.4f}_e{plan['epochs']}",
                         dataset="cifar10", model=m,
                         loss=pl_runs.LossConfig("offset_ce", offset=ROBUST_OVERFIT_OFFSET,
                                                 temperature=0.25),
                         epochs=plan["epochs"], train_size=plan["train_size"], augment=False,
                         curve_eps=CURVE_EPS)
        names.append(rc.name)
        if _no_time(budget):
            continue
        _train_run(rc, cfg, item, device, None, {"model": m, "epochs": plan["epochs"],
                                                 "paper_epochs": 3000}, budget,
                   lambda rec: rec["row"].update(cra_curve=rec["result"].get("cra_curve")))
    return names


# ---- the campaign --------------------------------------------------------------------------

def _deviations(cfg: PlConfig, cifar_msg: str, cifar_ok: bool) -> list[str]:
    d = ["epochs per item chosen from a timing pilot to fit the budget (printed in each plan and "
         "result); the paper trains far longer (MNIST: 100 reference epochs here at most, CIFAR-10: "
         "200 / 3000 epochs in the paper)",
         "TF32 off and no autocast in training and certification (float32 throughout)",
         "batches are copied to the device per step by deep.trainer.fit (the dataset tensors of "
         "pl_runs stay on the host)",
         f"certificates attacked on at most {cfg.attack_size} certified test points per run"]
    if cfg.tiny:
        d.append("tiny test preset: widths, sizes and epochs far below the paper's")
    d.append(("CIFAR-10 items use the JPEG-approximate copy: " + APPROX_REASON) if cifar_ok
             else f"CIFAR-10 items skipped: {cifar_msg}")
    return d


def run(cfg: PlConfig, budget: Budget) -> dict:
    """Run (or resume) the prioritised list within ``budget``; returns the manifest summary."""
    from deep.experiments.experiment import resolve_device
    from plumbing.datasets import register_loader

    device = resolve_device(cfg.device)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    loader, cifar_msg = cifar_loader(cfg.cifar_root)
    if loader is not None:
        register_loader("cifar10", loader)
        pl_runs._CACHE.clear()
    else:
        log(f"[{CAMPAIGN}] CIFAR-10 items (PCA features, SNCE trade-off, robust overfitting) "
            f"skipped: {cifar_msg}")
    with shared_data_preparation():
        return _run(cfg, budget, device, loader, cifar_msg)


def _run(cfg: PlConfig, budget: Budget, device, loader, cifar_msg) -> dict:
    names: dict[str, list[str]] = {}
    names["throughput"] = item_throughput(cfg, device, budget.sub(min(60.0, 0.15 * budget.seconds)))
    todo = [("scaling_law_mnist", item_scaling_law)]
    if loader is not None:
        todo += [("pca_features_cifar10", item_pca), ("tradeoff_cifar10", item_snce),
                 ("robust_overfitting_cifar10", item_overfit)]
    not_started = []
    for i, (key, fn) in enumerate(todo):
        if _no_time(budget):
            not_started.append(key)
            continue
        w = WEIGHTS[key] / sum(WEIGHTS[k] for k, _ in todo[i:])
        try:
            names[key] = fn(cfg, device, budget.sub(w * budget.remaining()))
        except _NotPlanned:
            log(f"[{CAMPAIGN}] {key}: timing pilot stopped ({budget.reason() or 'budget'}); "
                f"no run started")
            not_started.append(key)
    return finish(cfg, budget, names, _deviations(cfg, cifar_msg, loader is not None), device,
                  cifar_msg if loader is None else None, not_started)


def collect(cfg: PlConfig) -> dict:
    """Finished runs per item, as summary rows (the shape of the experiments' summaries)."""
    items = {}
    if not cfg.root.is_dir():
        return items
    for folder in sorted(p for p in cfg.root.iterdir() if p.is_dir()):
        runs = []
        for p in sorted(folder.glob("*.json")):
            if p.name == "plan.json":
                continue
            rec = read_json(p)
            runs.append(rec.get("row", rec) | {"broken_certificates": rec.get("broken_certificates", 0),
                                               "certified_points": rec.get("certificate_attack", {}).get("certified_points", 0),
                                               "approximate": rec.get("approximate", False),
                                               "run_json": f"{CAMPAIGN}/{folder.name}/{p.name}"})
        plan = read_json(folder / "plan.json")["plan"] if (folder / "plan.json").is_file() else None
        items[folder.name] = {"runs": runs, "plan": plan}
    return items


def finish(cfg: PlConfig, budget: Budget, names: dict, devs: list[str], device,
           skipped: str | None, not_started: list[str] = ()) -> dict:
    items = collect(cfg)
    done = [r["run_json"] for it in items.values() for r in it["runs"]]
    planned = {f"{CAMPAIGN}/{k}/{n}.json" for k, v in names.items() for n in v}
    left = sorted(planned - set(done))
    broken = sum(int(r.get("broken_certificates") or 0) for it in items.values() for r in it["runs"])
    certified = sum(int(r.get("certified_points") or 0) for it in items.values() for r in it["runs"])
    summary = {"campaign": CAMPAIGN, "tiny": cfg.tiny, "items": items, "runs_done": done, "runs_left": left,
               "items_not_started": list(not_started),
               "broken_certificates": broken, "certified_points_attacked": certified,
               "cifar_skipped": skipped, "deviations": devs,
               "approximate": any(r.get("approximate") for it in items.values() for r in it["runs"]),
               "approximate_reason": APPROX_REASON}
    write_result(cfg.out / "campaign_pl.json", summary, seed=cfg.seed, device=device,
                 started=budget.start)
    status = ("complete" if not left and not skipped and not not_started
              else ("stopped" if _no_time(budget) or not_started else "partial"))
    write_manifest(cfg.out, campaign=CAMPAIGN, seed=cfg.seed, device=device, budget=budget,
                   plan={k: v["plan"] for k, v in items.items()}, deviations=devs,
                   runs_done=done, runs_left=left, status=status,
                   extra={"broken_certificates": broken, "cifar_skipped": skipped,
                          "items_not_started": list(not_started)})
    log(f"[{CAMPAIGN}] {len(done)} runs finished, {len(left)} left ({status}); broken "
        f"certificates: {broken} of {certified} certified points attacked")
    return {"done": done, "left": left, "status": status, "broken_certificates": broken}
