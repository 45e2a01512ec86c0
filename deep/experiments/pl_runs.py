"""One training run of the P&L experiments (Sections 4.1-4.5, 9.1, 9.3, 10, 11), shared by
``deep.scaling_law``, ``deep.robust_overfitting``, ``deep.pca_features`` and ``deep.tradeoff``.

A run is fully described by a validated :class:`RunConfig`: dataset (and class-balanced training
subset of size ``train_size``), model (``deep.models.build_model``), loss (``deep.losses``),
optimiser (:class:`deep.trainer.TrainConfig`: SGD, Nesterov 0.9, batch 256, OneCycleLR, Sec. 4.1),
augmentation (``deep.augment``), optional PCA projection (``deep.pca_projection``) and the radii
at which the certified robust accuracy (CRA, Eq. 3, ``deep.certify``) is measured.

Pre-processing (Sec. 4.1): the model subtracts the per-channel mean of its training set and does
not rescale. MNIST is padded to 32x32 with the mean (= 0 after the subtraction, Sec. 9.3) when
``pad32`` is set.

:func:`run` trains via :func:`deep.trainer.fit` with an ``evaluate`` hook that records, every
``eval_every`` epochs and at the last one, clean accuracy and CRA at every radius of ``eps`` on a
fixed subset of the (un-augmented) training set and of the test set. Before each evaluation the
BatchNorm statistics of the SimpleConvNet are recomputed exactly on that training subset
(:func:`recalibrate_batchnorm`; the 1-Lipschitz models have no BatchNorm). Files under ``out``:
``<stem>.json`` (final result with provenance; a run whose JSON exists is skipped),
``<stem>.ckpt`` (resume point, removed when the run is finished unless ``keep_checkpoint``) and
``<stem>.metrics.json`` (per-epoch metrics, updated after every epoch), where ``<stem>`` is the
run's name plus a hash of its whole configuration.

Grouped passes. For very small training sets the fixed-compute rule of Sec. 4.2 asks for tens of
thousands of epochs, and a checkpoint plus metrics file per epoch would dominate the run time.
With ``passes_per_epoch = r > 1`` the training set is tiled r times and one trainer epoch is one
shuffled pass over the tiled set, i.e. r passes over the data (the number of examples seen is
unchanged; batches of a set smaller than the batch size then hold duplicates, where the literal
setup would take smaller batches). ``epochs`` in the TrainConfig counts trainer epochs; the
result records ``data_passes = r * epochs``. Use r = 1 for the literal setup.

CRA is only defined for the 1-Lipschitz models; for the standard SimpleConvNet it is recorded as
``null``.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from deep import augment as aug
from deep.data import balanced_subset, load_tensors
from deep.experiments.experiment import existing_result, write_result
from deep.models import MODEL_NAMES
from deep.pca_projection import fit_pca, project, subset_for_dim
from deep.trainer import TrainConfig, fit
from theory.constants import EPS_L2_DEFAULT, EPS_L2_RADII
from plumbing.validation import check_choice, check_float, check_int

DATASETS = ("mnist", "fashion-mnist", "cifar10", "svhn")
LOSSES = ("offset_ce", "temperature_ce", "self_normalizing_ce")


@dataclass
class LossConfig:
    """Loss of a run: OffsetCrossEntropy(offset, temperature) for the 1-Lipschitz models
    (Sec. 4.1: both 0.25; Sec. 4.3: offset sqrt(2)), temperature CE for the SimpleConvNet
    (temperature 1/8), or Self-Normalizing CE with trade-off ``t`` (Eq. 4, Sec. 4.5)."""
    name: str = "offset_ce"
    offset: float = 0.25
    temperature: float = 0.25
    t: float = 0.0

    def __post_init__(self):
        check_choice("loss", self.name, LOSSES)
        check_float("offset", self.offset, low=0.0)
        check_float("temperature", self.temperature, low=0.0, low_open=True)
        check_float("t", self.t, low=0.0)


@dataclass
class RunConfig:
    """Everything that determines one run (see module docstring)."""
    name: str
    dataset: str
    model: str
    loss: LossConfig
    train: TrainConfig
    train_size: int | None = None          # None: the whole training split
    test_size: int | None = None           # None: the whole test split
    eval_train_size: int = 2000            # training examples evaluated per epoch (capped)
    eval_every: int = 1
    augment: bool = True
    pad32: bool = True                     # MNIST / Fashion-MNIST: pad 28 -> 32 (Sec. 9.3)
    width: int | None = None               # model width (MLP) / base channels (ConvNets)
    depth: int | None = None               # layers (MLP) / blocks (ConvNets)
    pca_subset: str | None = None          # Table 1 row, e.g. "1-16" (scaled for MNIST)
    eps: tuple[float, ...] = EPS_L2_RADII
    curve_eps: tuple[float, ...] = ()      # radii for the final CRA curves (Fig. 2)
    data_seed: int = 0
    passes_per_epoch: int = 1              # data passes grouped into one trainer epoch (see run)
    init: str | None = None                # None: the model's default (identity for 1-Lipschitz)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\ "):
            raise ValueError(f"name must be a non-empty file-name-safe string, got {self.name!r}")
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("model", self.model, MODEL_NAMES)
        if not isinstance(self.loss, LossConfig):
            raise TypeError("loss must be a LossConfig")
        if not isinstance(self.train, TrainConfig):
            raise TypeError("train must be a TrainConfig")
        for nm in ("train_size", "test_size", "width", "depth"):
            if getattr(self, nm) is not None:
                check_int(nm, getattr(self, nm), min_value=1)
        check_int("eval_train_size", self.eval_train_size, min_value=1)
        check_int("eval_every", self.eval_every, min_value=1)
        check_int("data_seed", self.data_seed, min_value=0)
        check_int("passes_per_epoch", self.passes_per_epoch, min_value=1)
        if self.init is not None:
            check_choice("init", self.init, ("identity", "orthogonal", "kaiming"))
            if self.model == "simple_convnet":
                raise ValueError("init applies to the 1-Lipschitz models only; leave it unset for simple_convnet")
        self.eps = tuple(check_float("eps", e, low=0.0) for e in self.eps)
        self.curve_eps = tuple(check_float("curve_eps", e, low=0.0) for e in self.curve_eps)
        if not self.eps:
            raise ValueError("eps must hold at least one radius")
        if self.pca_subset is not None:
            subset_for_dim(self.pca_subset, 3072)  # validates the name


def eps_label(eps: float) -> str:
    """'36/255' style label when eps is k/255, else the number."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:g}"


# ---------------------------------------------------------------------------------------------
# Data

_CACHE: dict = {}


def load_split(dataset: str, split: str, root) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole split as tensors, cached per process (many runs share one dataset)."""
    key = (dataset, split, str(root))
    if key not in _CACHE:
        _CACHE[key] = load_tensors(dataset, split, root)
    return _CACHE[key]


def prepare_data(cfg: RunConfig, root) -> dict:
    """Training subset, test subset, fixed evaluation subsets and the channel mean."""
    x_all, y_all = load_split(cfg.dataset, "train", root)
    xt_all, yt_all = load_split(cfg.dataset, "test", root)
    if cfg.train_size is not None and cfg.train_size < len(y_all):
        idx = torch.from_numpy(balanced_subset(y_all.numpy(), cfg.train_size, cfg.data_seed))
        x, y = x_all[idx], y_all[idx]
    else:
        x, y = x_all, y_all
    if cfg.test_size is not None and cfg.test_size < len(yt_all):
        idx = torch.from_numpy(balanced_subset(yt_all.numpy(), cfg.test_size, cfg.data_seed + 1))
        xt, yt = xt_all[idx], yt_all[idx]
    else:
        xt, yt = xt_all, yt_all
    pca_info = None
    if cfg.pca_subset is not None:
        basis = fit_pca(x)
        sub = subset_for_dim(cfg.pca_subset, basis.dim)
        x, xt = project(x, basis, sub), project(xt, basis, sub)
        pca_info = {"subset": cfg.pca_subset, "components": sub.label, "dim": basis.dim,
                    "variance_explained": basis.explained_variance(sub)}
    mean = x.mean(dim=(0, 2, 3))
    if cfg.pad32 and cfg.dataset in ("mnist", "fashion-mnist"):
        x, xt = aug.pad_to(x, 32, mean), aug.pad_to(xt, 32, mean)
    g = np.random.default_rng(cfg.data_seed + 2)
    ev = np.sort(g.permutation(len(y))[: min(cfg.eval_train_size, len(y))])
    ev = torch.from_numpy(ev)
    return {"x": x, "y": y, "xt": xt, "yt": yt, "x_eval": x[ev], "y_eval": y[ev], "mean": mean,
            "pca": pca_info}


# ---------------------------------------------------------------------------------------------
# Model, loss, certificate: thin adapters onto deep.models / deep.losses / deep.certify


def make_model(cfg: RunConfig, in_shape: tuple[int, int, int], x_train: torch.Tensor,
               num_classes: int = 10) -> torch.nn.Module:
    """``deep.models.build_model`` for the run, with its input mean set from ``x_train``.
    ``width`` is the MLP width or the ConvNets' base channels; ``depth`` the MLP layers or the
    ConvNets' blocks (None: the model's defaults)."""
    from deep import models

    c, h, w = in_shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    fields = {"in_channels": c, "input_size": h, "num_classes": num_classes}
    if cfg.model == "aol_mlp":
        fields.update(width=cfg.width, pad_to=None)
        if cfg.depth is not None:
            fields["depth"] = cfg.depth
    else:
        if cfg.width is not None:
            fields["base_width"] = cfg.width
        if cfg.depth is not None:
            if cfg.model == "simple_convnet":
                raise ValueError("depth is fixed for simple_convnet (8 convolutions); leave --depth unset")
            fields["blocks"] = cfg.depth
    if cfg.init is not None:
        fields["init"] = cfg.init
    model = models.build_model(cfg.model, models.make_config(cfg.model, **fields))
    models.set_input_mean(model, x_train)
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> bool:
    """Recompute the running statistics of every BatchNorm layer as exact averages over ``x``
    ("precise BN"); returns whether the model has any. Short runs need it: after a few dozen
    steps the exponential running averages still lag the fast-changing weights and the eval-mode
    SimpleConvNet predicts one class while its train-mode accuracy is ~99% (observed on 1024
    MNIST examples). Training-mode forward passes do not use these statistics, so training and
    resumption are unaffected."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    device = next(model.parameters()).device
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size].to(device))
    for bn, mom in zip(bns, momenta):
        bn.momentum = mom
    model.train(was_training)
    return True


def is_lipschitz(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "lipschitz", False))


def make_loss(lc: LossConfig):
    """``loss_fn(model, xb, yb)`` for :func:`deep.trainer.fit`."""
    from deep import losses

    if lc.name == "offset_ce":
        crit = losses.OffsetCrossEntropy(offset=lc.offset, temperature=lc.temperature)
    elif lc.name == "temperature_ce":
        crit = losses.TemperatureCrossEntropy(temperature=lc.temperature)
    else:
        crit = losses.SelfNormalizingCrossEntropy(t=lc.t)
    return losses.as_loss_fn(crit)


@torch.no_grad()
def evaluate_split(model, x, y, eps: tuple[float, ...], lipschitz: bool, batch_size: int = 1024) -> dict:
    """Accuracy and CRA (Eq. 3, ``deep.certify.cra_curve``) at each radius on (x, y); CRA is None
    for non-Lipschitz models, whose margins certify nothing."""
    from deep import certify
    from deep.experiments.experiment import predict_logits

    if not lipschitz:
        acc = float((predict_logits(model, x, batch_size).argmax(1) == y).float().mean())
        return {"acc": acc, "cra": None}
    curve = certify.cra_curve(model, x, y, eps, batch_size=batch_size)
    return {"acc": curve["accuracy"], "cra": curve["cra"]}


def config_hash(cfg: RunConfig) -> str:
    """8 hex digits identifying every setting of ``cfg`` except its name (file names carry it, so
    a changed learning rate or width never reuses another configuration's result)."""
    import hashlib
    import json

    d = asdict(cfg)
    d.pop("name")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def run_paths(cfg: RunConfig, out: Path) -> dict[str, Path]:
    """Files of a run: ``<out>/<name>-<config hash>.{json,ckpt,metrics.json}``."""
    out = Path(out)
    stem = f"{cfg.name}-{config_hash(cfg)}"
    return {"result": out / f"{stem}.json", "checkpoint": out / f"{stem}.ckpt",
            "metrics": out / f"{stem}.metrics.json"}


#: cuBLAS setting that makes its matrix products deterministic (PyTorch's reproducibility notes);
#: it must be in the environment before the process makes its first cuBLAS call to take effect
CUBLAS_DETERMINISTIC = ":4096:8"


class _Stopped(Exception):
    """Raised inside :func:`deep.trainer.fit` when a run's ``should_stop`` hook fires."""


def use_cublas_determinism() -> bool:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` to :data:`CUBLAS_DETERMINISTIC` unless it is set already;
    returns whether it now holds a deterministic setting. Call it before the first CUDA work of the
    process (``deep.campaign`` does at its start); set later it only silences PyTorch's warning."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    return os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")


@contextmanager
def deterministic_algorithms(enabled: bool):
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` for the duration of the block
    (when ``enabled``), then the previous setting (flag and warn-only mode) again, so one run's
    choice never slows the later runs of the same process."""
    def state():
        return (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())

    before = state()
    # torch.use_deterministic_algorithms is called only when the setting changes: its first call
    # in a process imports machinery that takes seconds
    if enabled and not before[0]:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        if state() != before:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def run(cfg: RunConfig, out: Path, device: torch.device, root=None, *, stop_after_epochs: int | None = None,
        keep_checkpoint: bool = False, extra: dict | None = None,
        should_stop: Callable[[], bool] | None = None, deterministic: bool | None = None) -> dict | None:
    """Train and evaluate one run; returns its result dict (or None if stopped early).

    Skips the run if its JSON exists; resumes from its checkpoint if one exists.
    ``should_stop()`` is asked before every training step and before each evaluation: once it
    returns True the run ends at once (returning None) and keeps the checkpoint of its last
    finished epoch, so a later call resumes there. ``deterministic`` (default: on CUDA) asks for
    deterministic kernels during this run only (see :func:`deterministic_algorithms`; on CUDA it
    also sets ``CUBLAS_WORKSPACE_CONFIG``, :func:`use_cublas_determinism`)."""
    if not isinstance(cfg, RunConfig):
        raise TypeError(f"cfg must be a RunConfig, got {type(cfg).__name__}")
    if should_stop is not None and not callable(should_stop):
        raise TypeError(f"should_stop must be a callable returning bool, got {type(should_stop).__name__}")
    paths = run_paths(cfg, out)
    done = existing_result(paths["result"])
    if done is not None:
        return done
    if should_stop is not None and should_stop():
        return None
    if deterministic is None:
        deterministic = device.type == "cuda"
    if deterministic and device.type == "cuda":
        use_cublas_determinism()
    try:
        with deterministic_algorithms(bool(deterministic)):
            return _run(cfg, paths, device, root, stop_after_epochs, keep_checkpoint, extra,
                        should_stop)
    except _Stopped:
        return None


def _run(cfg: RunConfig, paths: dict, device: torch.device, root, stop_after_epochs, keep_checkpoint,
         extra, should_stop) -> dict | None:
    started = time.perf_counter()
    data = prepare_data(cfg, root)
    # Same seed, same result: torch's RNG seeds the initialisation; the caller's
    # ``deterministic`` asks for deterministic kernels (on by default on CUDA; on the CPU the
    # kernels used here are deterministic already).
    torch.manual_seed(cfg.train.seed)
    model = make_model(cfg, tuple(data["x"].shape[1:]), data["x"]).to(device)
    lip = is_lipschitz(model)
    loss_fn = make_loss(cfg.loss)
    if should_stop is not None:
        plain_loss = loss_fn

        def loss_fn(model, xb, yb):   # asked before every training step
            if should_stop():
                raise _Stopped
            return plain_loss(model, xb, yb)
    acfg = aug.config_for_dataset(cfg.dataset, cfg.augment)
    augment = aug.make_augment(acfg)
    last_epoch = cfg.train.epochs - 1

    def evaluate(model, epoch):
        if epoch % cfg.eval_every and epoch != last_epoch:
            return {}
        if should_stop is not None and should_stop():
            raise _Stopped
        recalibrate_batchnorm(model, data["x_eval"])
        tr = evaluate_split(model, data["x_eval"], data["y_eval"], cfg.eps, lip)
        te = evaluate_split(model, data["xt"], data["yt"], cfg.eps, lip)
        return {"train_acc": tr["acc"], "test_acc": te["acc"], "train_cra": tr["cra"], "test_cra": te["cra"]}

    evaluate.no_grad = True
    x_fit, y_fit = data["x"], data["y"]
    if cfg.passes_per_epoch > 1:  # tiny subsets: group passes so per-epoch overhead stays small
        x_fit = x_fit.repeat(cfg.passes_per_epoch, 1, 1, 1)
        y_fit = y_fit.repeat(cfg.passes_per_epoch)
    history = fit(model, loss_fn, x_fit, y_fit, cfg.train, augment=augment, evaluate=evaluate,
                  checkpoint=paths["checkpoint"], metrics_path=paths["metrics"],
                  stop_after_epochs=stop_after_epochs, desc=cfg.name)
    if len(history) < cfg.train.epochs:
        return None
    final = history[-1]
    result = {
        "name": cfg.name,
        "dataset": cfg.dataset,       # the data whose fidelity the result records
        "config": asdict(cfg),
        "lipschitz": lip,
        "train_size": int(len(data["y"])),
        "passes_per_epoch": cfg.passes_per_epoch,
        "data_passes": cfg.passes_per_epoch * cfg.train.epochs,
        "test_size": int(len(data["yt"])),
        "eval_train_size": int(len(data["y_eval"])),
        "input_shape": list(data["x"].shape[1:]),
        "augmentation": asdict(acfg),
        "pca": data["pca"],
        "eps": list(cfg.eps),
        "eps_labels": [eps_label(e) for e in cfg.eps],
        "final": {k: final.get(k) for k in ("train_loss", "train_acc", "test_acc", "train_cra", "test_cra")},
        "history": history,
    }
    default_idx = _closest(cfg.eps, EPS_L2_DEFAULT)
    result["final"]["test_cra_36"] = None if final.get("test_cra") is None else final["test_cra"][default_idx]
    result["final"]["train_cra_36"] = None if final.get("train_cra") is None else final["train_cra"][default_idx]
    if cfg.curve_eps:
        if should_stop is not None and should_stop():
            raise _Stopped
        model.eval()
        curves = {}
        for split, (xs, ys) in {"train": (data["x_eval"], data["y_eval"]), "test": (data["xt"], data["yt"])}.items():
            ev = evaluate_split(model, xs, ys, cfg.curve_eps, lip)
            curves[split] = ev["cra"]
        result["cra_curve"] = {"eps": list(cfg.curve_eps), **curves}
    if extra:
        result.update(extra)
    write_result(paths["result"], result, seed=cfg.train.seed, device=device, started=started)
    from plumbing.distributed import is_main_process

    if not is_main_process():         # under torchrun rank 0 writes; the others need no file
        from plumbing.io import _jsonable

        return json.loads(json.dumps(_jsonable(result)))
    if not keep_checkpoint and paths["checkpoint"].exists():
        paths["checkpoint"].unlink()
    return existing_result(paths["result"])


def _closest(values, target) -> int:
    return int(np.argmin([abs(v - target) for v in values]))


def epochs_for_size(size: int, ref_size: int, ref_epochs: int) -> int:
    """Fixed compute (Sec. 4.2): dividing the data by k multiplies the epochs by k, i.e.
    epochs(size) = round(ref_epochs * ref_size / size), at least 1."""
    size = check_int("size", size, min_value=1)
    ref_size = check_int("ref_size", ref_size, min_value=1)
    ref_epochs = check_int("ref_epochs", ref_epochs, min_value=1)
    return max(1, int(round(ref_epochs * ref_size / size)))


def group_passes(data_passes: int, size: int, min_epoch_examples: int) -> tuple[int, int]:
    """(passes_per_epoch r, trainer epochs e) with r * e == data_passes exactly: r is the smallest
    divisor of ``data_passes`` with r * size >= min_epoch_examples (or data_passes itself), so the
    fixed-compute rule holds exactly (see 'Grouped passes' in the module docstring)."""
    data_passes = check_int("data_passes", data_passes, min_value=1)
    size = check_int("size", size, min_value=1)
    min_epoch_examples = check_int("min_epoch_examples", min_epoch_examples, min_value=1)
    target = min(data_passes, max(1, math.ceil(min_epoch_examples / size)))
    r = next(d for d in range(target, data_passes + 1) if data_passes % d == 0)
    return r, data_passes // r


def auto_eval_every(epochs: int, evaluations: int) -> int:
    """Evaluate about ``evaluations`` times over ``epochs`` (the last epoch always)."""
    return max(1, math.ceil(check_int("epochs", epochs, min_value=1)
                            / check_int("evaluations", evaluations, min_value=1)))


# ---------------------------------------------------------------------------------------------
# Command-line pieces shared by the four experiment commands

MODEL_CHOICES = MODEL_NAMES


def parse_size(text: str) -> int:
    """A training-set size: an integer ("4096", "4e3") or a power of two written "2^12"."""
    import argparse

    t = text.strip()
    try:
        if t.startswith("2^"):
            k = int(t[2:])
            if not 0 <= k <= 30:
                raise ValueError
            return 2 ** k
        v = float(t)
        if not math.isfinite(v) or v != int(v) or v < 1:
            raise ValueError
        return int(v)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"size must be a positive integer or 2^k (0 <= k <= 30), got {text!r}") from None


def add_run_args(ap, *, default_lr: float | None = None) -> None:
    """Flags every P&L experiment shares (besides deep.experiment.add_common_args)."""
    from plumbing.cli import float_range, int_sci

    ap.add_argument("--lr", type=float_range(0, None, low_open=True, name="--lr"), default=default_lr,
                    help="peak learning rate of OneCycleLR (default: "
                         + ("per model, see DEFAULT_LR" if default_lr is None else f"{default_lr}")
                         + "; the paper tunes it on a validation set)")
    ap.add_argument("--width", type=int_sci(1, "--width"), default=None,
                    help="MLP width / ConvNet base channels (default: the paper's for the dataset)")
    ap.add_argument("--depth", type=int_sci(1, "--depth"), default=None,
                    help="MLP layers / ConvNet blocks (default: the paper's)")
    ap.add_argument("--batch-size", type=int_sci(1, "--batch-size"), default=None,
                    help="batch size (default 256, Sec. 4.1)")
    ap.add_argument("--test-size", type=int_sci(1, "--test-size"), default=None,
                    help="evaluate on a class-balanced test subset of this size (default: all)")
    ap.add_argument("--eval-train-size", type=int_sci(1, "--eval-train-size"), default=None,
                    help="training examples evaluated per evaluation (default 2000)")
    ap.add_argument("--evaluations", type=int_sci(1, "--evaluations"), default=20,
                    help="evaluate about this many times per run (always at the last epoch; default 20)")
    ap.add_argument("--init", choices=["identity", "orthogonal", "kaiming"], default=None,
                    help="initialisation of the 1-Lipschitz models (default: the model's, identity; "
                         "an MLP narrower than its input should use orthogonal)")
    ap.add_argument("--keep-checkpoints", action="store_true",
                    help="keep each run's checkpoint after it finished (default: delete it)")
    ap.add_argument("--summary", default=None,
                    help="summary JSON path, rebuilt from this command's runs (an existing one is "
                         "replaced; the per-run JSONs under --out are kept) (default <out>/summary.json)")
    ap.add_argument("--note", default=None,
                    help="free text stored in the summary, e.g. 'reduced CPU run' (default: none)")
    from plumbing.sweep import add_engine_args

    add_engine_args(ap)      # --engine local|ray, --address, --workers (deep.experiments.grid)


def check_models(models) -> None:
    """One clear error for an unknown model name in ``--models``."""
    from plumbing.cli import UsageError

    for m in models:
        if m not in MODEL_CHOICES:
            raise UsageError(f"--models: unknown model {m!r}; choose from {', '.join(MODEL_CHOICES)}")


def write_summary(args, common, device, started: float, *, experiment: str, paper_ref: str, rows: list,
                  **extra):
    """Write the experiment's summary JSON (all runs plus provenance) atomically; returns its path."""
    import time

    from deep.data import data_fidelity
    from deep.experiments.experiment import device_description
    from plumbing.io import atomic_write_json, provenance

    fidelity = data_fidelity(common.dataset, common.data_root)
    summary = {"experiment": experiment, "paper_ref": paper_ref, "dataset": common.dataset,
               "tiny": common.tiny, "note": args.note, **extra, **fidelity.as_json(), "runs": rows,
               "provenance": provenance(seed=common.seed, wall_seconds=time.perf_counter() - started,
                                        device=device_description(device))}
    path = args.summary or (common.out / "summary.json")
    from plumbing.distributed import is_main_process

    if is_main_process():             # under torchrun only rank 0 writes
        replaced = Path(path).is_file()
        atomic_write_json(path, summary)
        print(f"summary: {path}" + (" (replaced the previous summary; per-run JSONs under "
                                    f"{common.out} are kept)" if replaced else ""))
    return path


def default_width(dataset: str, model: str) -> int | None:
    """Sec. 4.1 / 9.3: MLP width 3072 (CIFAR-10) or 1024 (MNIST); ConvNet base 64 or 16."""
    small = dataset in ("mnist", "fashion-mnist")
    if model == "aol_mlp":
        return 1024 if small else 3072
    if model in ("cpl_convnet", "aol_convnet", "lipschitz_convnet", "unified_convnet"):
        return 16 if small else 64
    return None


TINY = {"width": 8, "depth": 1, "test_size": 100, "eval_train_size": 64, "batch_size": 32}


def build_run(args, common, *, name: str, model: str, loss: LossConfig, epochs: int, train_size: int | None,
              augment: bool, pca_subset: str | None = None, curve_eps: tuple[float, ...] = (),
              eval_every: int | None = None, passes_per_epoch: int = 1,
              default_lr: float = 0.1) -> RunConfig:
    """A RunConfig from parsed flags (the --tiny preset shrinks widths, sizes and batch)."""
    tiny = common.tiny
    width = args.width if args.width is not None else (TINY["width"] if tiny else default_width(common.dataset, model))
    depth = args.depth if args.depth is not None else (
        TINY["depth"] if tiny and model != "simple_convnet" else None)
    bs = args.batch_size if args.batch_size is not None else (TINY["batch_size"] if tiny else 256)
    test_size = args.test_size if args.test_size is not None else (TINY["test_size"] if tiny else None)
    ev_tr = args.eval_train_size if args.eval_train_size is not None else (TINY["eval_train_size"] if tiny else 2000)
    lr = args.lr if args.lr is not None else default_lr
    train = TrainConfig(epochs=epochs, batch_size=bs, lr=lr, seed=common.seed)
    return RunConfig(name=name, dataset=common.dataset, model=model, loss=loss, train=train,
                     train_size=train_size, test_size=test_size, eval_train_size=ev_tr,
                     eval_every=eval_every or auto_eval_every(epochs, args.evaluations), augment=augment,
                     width=width, depth=depth, pca_subset=pca_subset, curve_eps=curve_eps,
                     data_seed=common.seed, passes_per_epoch=passes_per_epoch,
                     init=None if model == "simple_convnet" else args.init)


def summarize(result: dict) -> dict:
    """The row of a summary table for one finished run."""
    cfg = result["config"]
    return {"name": result["name"], "model": cfg["model"], "train_size": result["train_size"],
            "epochs": cfg["train"]["epochs"], "width": cfg["width"], "depth": cfg["depth"],
            "lr": cfg["train"]["lr"], "loss": cfg["loss"], "augment": cfg["augment"], "init": cfg.get("init"),
            "lipschitz": result["lipschitz"], **result["final"],
            "wall_seconds": result.get("provenance", {}).get("wall_seconds")}
