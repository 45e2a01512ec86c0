"""Accuracy, robustness, local Lipschitzness and generalization gaps per training method:
the columns of YRZSC Tables 2-4 (PGD-10) and 9-14 (multi-targeted attack, ``--attack mt``), and the
proof-of-concept classifier of Appendix B / Table 6 (``--proof-of-concept``: train with access to
the test set).

    python -m deep.tradeoff_table --dataset mnist --model cnn1 \\
        --methods natural,gr,llr,at,rst:2,trades:1,trades:3,trades:6 --device cuda --out runs/table2

Per method: train acc, test acc, adversarial train acc, adversarial test acc (l_inf radius eps,
Table 5), test Lipschitz (Eq. (3), on the logits), gap = train acc - test acc and adv gap =
adv train acc - adv test acc, all in percent (Lipschitz as is). One JSON per run (with provenance)
under ``OUT/runs/``, a checkpoint per run (rerun the same command to resume; a finished run is
skipped), and a combined table ``OUT/<name>.json|.md|.csv``.

Defaults follow YRZSC Appendix A / Table 5 where the paper states them (eps, batch 64, SGD with
momentum 0.9 on MNIST / without on SVHN and CIFAR-10, 160/60/120 epochs, PGD-10 with step eps/5,
MT with 20 steps per target). Not stated there, and our choices: learning rate 0.01 (our loss is
the batch *mean*), cosine decay instead of the paper's step decay. ``--tiny`` is a CI preset
(256 training examples, 128 evaluation examples, one epoch, 3 attack steps); every size can be set
explicitly for reduced runs.
"""
from __future__ import annotations

import csv
import io
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from deep.data import balanced_subset, load_tensors
from deep.experiments.experiment import (accuracy, add_common_args, existing_result, parse_common,
                             resolve_device, seed_everything, write_result)
from deep.methods import MethodConfig, parse_method_spec
from deep.models_yang import MODELS, ModelConfig, build_model
from deep.trainer import TrainConfig, fit
from plumbing.cli import OneLineArgumentParser, UsageError, csv_list, float_range, int_sci, run_main
from theory.constants import (YANG_BATCH_SIZE, YANG_EPOCHS, YANG_EPS_LINF,
                              YANG_LIPSCHITZ_STEPS, YANG_MT_STEPS, YANG_PGD_STEPS,
                              YANG_POC_MNIST, YANG_SGD_MOMENTUM)
from plumbing.distributed import is_main_process
from plumbing.experiment import ConfigMixin, Experiment, device_resources
from plumbing.io import atomic_write_text
from plumbing.sweep import add_engine_args, check_engine_args, run_sweep
from plumbing.validation import check_choice, check_float, check_int

RESUMABLE = True  # Ctrl-C: finished runs are kept and the interrupted one resumes
PROG = "python -m deep.tradeoff_table"
ATTACKS = ("pgd", "mt")
COLUMNS = ("train_acc", "test_acc", "adv_train_acc", "adv_test_acc", "test_lipschitz", "gap",
           "adv_gap")
HEADERS = {"train_acc": "train acc.", "test_acc": "test acc.", "adv_train_acc": "adv train acc.",
           "adv_test_acc": "adv test acc.", "test_lipschitz": "test lipschitz", "gap": "gap",
           "adv_gap": "adv gap"}
TINY = {"train_size": 256, "test_size": 128, "eval_size": 128, "lip_size": 128, "epochs": 1,
        "attack_steps": 3}
DEFAULT_LR = 0.01
DEFAULT_METHODS = "natural,gr,llr,at,rst:2,trades:1,trades:3,trades:6"


@dataclass
class TableConfig:
    """Everything that determines one method's run (validated); stored in every result JSON."""
    dataset: str = "mnist"
    model: str = "cnn1"
    method: str = "natural"           # canonical spec, e.g. "trades:6"
    dropout: float | None = None
    attack: str = "pgd"
    eps: float = 0.1
    epochs: int = 160
    batch_size: int = 64
    lr: float = DEFAULT_LR
    momentum: float = 0.9
    optimizer: str = "sgd"
    schedule: str = "cosine"
    train_size: int | None = None     # None: the whole training split
    test_size: int | None = None      # None: the whole test split
    eval_size: int | None = None      # examples of each split for the accuracies (None: all)
    lip_size: int | None = None       # test examples for Eq. (3) (None: as eval)
    attack_steps: int | None = None   # None: 10 (PGD) / 20 per target (MT), training PGD 10
    seed: int = 0
    proof_of_concept: bool = False
    wrn_depth: int = 40
    wrn_width: int = 10

    def __post_init__(self):
        check_choice("model", self.model, MODELS)
        check_choice("attack", self.attack, ATTACKS)
        parse_method_spec(self.method, eps=self.eps)
        if self.dropout is not None:
            check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        check_float("eps", self.eps, low=0.0, low_open=True, high=1.0)
        check_int("epochs", self.epochs, min_value=1)
        check_int("batch_size", self.batch_size, min_value=1)
        for name in ("train_size", "test_size", "eval_size", "lip_size", "attack_steps"):
            v = getattr(self, name)
            if v is not None:
                check_int(name, v, min_value=1)
        check_int("seed", self.seed, min_value=0)

    def method_config(self) -> MethodConfig:
        steps = self.attack_steps if self.attack_steps is not None else YANG_PGD_STEPS
        return parse_method_spec(self.method, eps=self.eps, steps=steps)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           momentum=self.momentum, nesterov=False, weight_decay=0.0,
                           optimizer=self.optimizer, schedule=self.schedule, seed=self.seed)

    def slug(self) -> str:
        parts = [self.dataset, self.model, self.method.replace(":", "-")]
        if self.dropout is not None:
            parts.append(f"drop{self.dropout:g}")
        if self.proof_of_concept:
            parts.append("poc")
        return "_".join(parts)


# ---- data ----------------------------------------------------------------------------------

def _subset(x, y, size, seed):
    if size is None or size >= len(y):
        return x, y
    idx = torch.from_numpy(balanced_subset(y.numpy(), size, seed))
    return x[idx], y[idx]


def load_data(cfg: TableConfig, root):
    """(x_train, y_train, x_test, y_test); for the proof of concept the training set is
    train + test (Appendix B: "they can use the test data")."""
    xtr, ytr = load_tensors(cfg.dataset, "train", root, subset=cfg.train_size, seed=cfg.seed)
    xte, yte = load_tensors(cfg.dataset, "test", root, subset=cfg.test_size, seed=cfg.seed)
    if cfg.proof_of_concept:
        xtr, ytr = torch.cat([xtr, xte]), torch.cat([ytr, yte])
    return xtr, ytr, xte, yte


def model_config(cfg: TableConfig, x: torch.Tensor) -> ModelConfig:
    mean = tuple(float(v) for v in x.mean(dim=(0, 2, 3))) if cfg.model == "wrn" else None
    return ModelConfig(name=cfg.model, n_classes=10, in_channels=x.shape[1], image_size=x.shape[2],
                       dropout=cfg.dropout, depth=cfg.wrn_depth, width=cfg.wrn_width, mean=mean)


# ---- evaluation ----------------------------------------------------------------------------

def evaluate_model(model, cfg: TableConfig, xtr, ytr, xte, yte, device) -> dict:
    """The columns of Tables 2-4 for a trained model (accuracies in percent)."""
    from deep.attacks import robust_accuracy
    from deep.local_lipschitz import empirical_local_lipschitz

    steps = cfg.attack_steps if cfg.attack_steps is not None else (
        YANG_PGD_STEPS if cfg.attack == "pgd" else YANG_MT_STEPS)
    lip_steps = cfg.attack_steps if cfg.attack_steps is not None else YANG_LIPSCHITZ_STEPS
    xtr_e, ytr_e = _subset(xtr, ytr, cfg.eval_size, cfg.seed + 1)
    xte_e, yte_e = _subset(xte, yte, cfg.eval_size, cfg.seed + 2)
    lip_n = cfg.lip_size if cfg.lip_size is not None else len(yte_e)
    xl, _ = _subset(xte, yte, lip_n, cfg.seed + 3)
    out = {}
    reports = {}
    for split, (xs, ys), k in (("train", (xtr_e, ytr_e), 11), ("test", (xte_e, yte_e), 12)):
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + k)
        rep = robust_accuracy(model, xs.to(device), ys.to(device), cfg.eps, "inf", cfg.attack,
                              steps=steps, generator=gen)
        out[f"{split}_acc"] = 100.0 * rep.clean_accuracy
        out[f"adv_{split}_acc"] = 100.0 * rep.robust_accuracy
        reports[split] = rep.as_dict()
        reports[split]["summary"] = str(rep)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 13)
    out["test_lipschitz"] = empirical_local_lipschitz(model, xl.to(device), cfg.eps,
                                                      steps=lip_steps, generator=gen)
    out["gap"] = out["train_acc"] - out["test_acc"]
    out["adv_gap"] = out["adv_train_acc"] - out["adv_test_acc"]
    out["attack_reports"] = reports
    out["n_eval"] = {"train": len(ytr_e), "test": len(yte_e), "lipschitz": len(xl)}
    return out


# ---- one run -------------------------------------------------------------------------------

def _augment(cfg: TableConfig):
    if cfg.dataset != "cifar10":
        return None
    from deep.augment import AugmentConfig, make_augment
    # YRZSC Appendix A, CIFAR10 setup: random 32x32 crop with 4 pixels padding, horizontal flip.
    return make_augment(AugmentConfig(crop_padding=4, flip=True, erase_size=0))


def run_one(cfg: TableConfig, out_dir: Path, device: torch.device, data, *,
            stop_after_epochs: int | None = None) -> dict | None:
    """Train and evaluate one method; returns its result (skips a finished run with the same
    configuration; None if stopped early by ``stop_after_epochs``)."""
    runs = Path(out_dir) / "runs"
    path = runs / f"{cfg.slug()}.json"
    done = existing_result(path)
    if done is not None:
        if done.get("config") != asdict(cfg):
            raise UsageError(f"{path} exists with a different configuration; use another --out "
                             f"or delete it")
        return done
    started = time.perf_counter()
    xtr, ytr, xte, yte = data
    seed_everything(cfg.seed)
    model = build_model(model_config(cfg, xtr)).to(device)
    mcfg = cfg.method_config()
    from deep.methods import make_loss
    loss_fn = make_loss(mcfg)
    xte_small, yte_small = _subset(xte, yte, cfg.eval_size, cfg.seed + 2)

    def per_epoch(m, epoch):
        return {"test_acc": 100.0 * accuracy(m, xte_small, yte_small)}

    per_epoch.no_grad = True
    history = fit(model, loss_fn, xtr, ytr, cfg.train_config(), augment=_augment(cfg),
                  evaluate=per_epoch, checkpoint=runs / f"{cfg.slug()}.ckpt",
                  metrics_path=runs / f"{cfg.slug()}.metrics.json",
                  stop_after_epochs=stop_after_epochs, desc=mcfg.spec)
    if len(history) < cfg.epochs:
        return None
    metrics = evaluate_model(model, cfg, xtr, ytr, xte, yte, device)
    rec = {"method": mcfg.spec, "label": mcfg.label, "config": asdict(cfg),
           "method_config": asdict(mcfg), **metrics, "history": history,
           "n_train": len(ytr), "n_test": len(yte)}
    write_result(path, rec, seed=cfg.seed, device=device, started=started)
    return existing_result(path)


@dataclass(frozen=True)
class TableJob(ConfigMixin):
    """One row of the table as a sweep config: the method's TableConfig, output folder, device
    and the early stop used by the tests (``stop_after_epochs``)."""
    table: TableConfig
    out: str
    device: str = "cpu"
    stop_after_epochs: int | None = None
    KEY_PREFIX = "table"

    def __post_init__(self):
        if not isinstance(self.table, TableConfig):
            raise TypeError(f"table must be a TableConfig, got {type(self.table).__name__}")
        if self.stop_after_epochs is not None:
            check_int("stop_after_epochs", self.stop_after_epochs, min_value=1)


def table_job_run(job: TableJob, workdir=None, *, data, torch_threads=None,
                  fidelity=None) -> dict | None:
    """:func:`run_one` for a sweep; ``data`` = (xtr, ytr, xte, yte), loaded once by the caller
    (with Ray: one copy per node in the object store); ``fidelity``: the caller's record of that
    data (``deep.data.fidelity_state``), so a worker's JSON says what a local run's says."""
    from deep.data import restore_fidelity_state

    restore_fidelity_state(fidelity)
    if torch_threads is not None and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)     # same float sums as the local engine
    device = torch.device(job.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    return run_one(job.table, Path(job.out), device, data,
                   stop_after_epochs=job.stop_after_epochs)


TABLE = Experiment("table", run=table_job_run, resources=lambda job: device_resources(job.device))


# ---- combined table ------------------------------------------------------------------------

def _fmt(v) -> str:
    return "" if v is None else f"{v:.2f}"


def table_markdown(rows: list[dict], title: str) -> str:
    head = ["method"] + [HEADERS[c] for c in COLUMNS]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["label"]] + [_fmt(r.get(c)) for c in COLUMNS]) + " |")
    return "\n".join(lines) + "\n"


def table_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "label"] + list(COLUMNS))
    for r in rows:
        w.writerow([r["method"], r["label"]] + [f"{r[c]:.6g}" for c in COLUMNS])
    return buf.getvalue()


def default_name(dataset: str, model: str, attack: str, dropout, poc: bool) -> str:
    name = f"tradeoff_table_{dataset}_{model}"
    if attack == "mt":
        name += "_mt"
    if dropout is not None:
        name += f"_dropout{dropout:g}"
    if poc:
        name += "_poc"
    return name


def _method_list(text: str) -> list[str]:
    """Comma-separated method specs -> canonical specs (each validated; duplicates rejected)."""
    specs = []
    for part in csv_list(str, "--methods")(text):
        specs.append(parse_method_spec(part).spec)
    if len(set(specs)) != len(specs):
        raise ValueError(f"--methods lists a method twice: {text!r}")
    return specs


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_common_args(ap, default_out="runs/tradeoff_table", tiny_help=(
        "CPU smoke-test preset, numbers are not results: " + ", ".join(f"{k.replace('_', '-')} {v}"
                                                                      for k, v in TINY.items())))
    ap.add_argument("--model", default="cnn1", choices=MODELS,
                    help="YRZSC architecture (cnn1/cnn2: MNIST, wrn: SVHN / CIFAR-10)")
    ap.add_argument("--methods", default=None,
                    help="comma-separated name or name:number (trades:6 = TRADES beta 6, rst:2 = "
                         "RST lambda 2, gr:B, llr:L; default: " + DEFAULT_METHODS + ", or rst:2 "
                         "with --proof-of-concept)")
    ap.add_argument("--dropout", type=float_range(0.0, 1.0, high_open=True, name="--dropout"),
                    default=None, help="dropout rate at every dropout site (default: the "
                    "architecture's own; 0 disables)")
    ap.add_argument("--attack", default="pgd", choices=ATTACKS,
                    help="evaluation attack: pgd (Tables 2-4) or mt (Tables 9-14)")
    ap.add_argument("--eps", type=float_range(0.0, 1.0, low_open=True, name="--eps"), default=None,
                    help="l_inf radius (default: YRZSC Table 5 for the dataset)")
    ap.add_argument("--batch-size", type=int_sci(1, "--batch-size"), default=None,
                    help=f"batch size (default: YRZSC Table 5, {YANG_BATCH_SIZE.get('mnist')} on MNIST)")
    ap.add_argument("--lr", type=float_range(0.0, None, low_open=True, name="--lr"), default=None,
                    help=f"learning rate (default {DEFAULT_LR}; proof of concept: Table 7's, times the batch size)")
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="optimiser")
    ap.add_argument("--schedule", default="cosine", choices=("cosine", "constant", "onecycle"),
                    help="learning-rate schedule")
    ap.add_argument("--train-size", type=int_sci(10, "--train-size"), default=None,
                    help="class-balanced training subset (default: all)")
    ap.add_argument("--test-size", type=int_sci(10, "--test-size"), default=None,
                    help="class-balanced test subset (default: all)")
    ap.add_argument("--eval-size", type=int_sci(10, "--eval-size"), default=None,
                    help="examples per split for the (adversarial) accuracies (default: all)")
    ap.add_argument("--lip-size", type=int_sci(1, "--lip-size"), default=None,
                    help="test examples for the Lipschitz estimate (default: as --eval-size)")
    ap.add_argument("--attack-steps", type=int_sci(1, "--attack-steps"), default=None,
                    help="attack steps in training and evaluation (default: 10 PGD / 20 per "
                         "target MT / 10 Lipschitz)")
    ap.add_argument("--wrn-depth", type=int_sci(10, "--wrn-depth"), default=40,
                    help="depth of the wide residual network (model wrn)")
    ap.add_argument("--wrn-width", type=int_sci(1, "--wrn-width"), default=10,
                    help="widening factor of the wide residual network (model wrn)")
    ap.add_argument("--proof-of-concept", action="store_true",
                    help="Appendix B: train on train + test (default methods rst:2, model cnn2)")
    ap.add_argument("--name", default=None,
                    help="file name (no suffix) of the combined table (default: "
                         "tradeoff_table_<dataset>_<model>[_mt][_dropoutR][_poc])")
    ap.add_argument("--label", default=None, help="free text stored in the combined JSON (default: none)")
    ap.add_argument("--stop-after-epochs", type=int_sci(1, "--stop-after-epochs"), default=None,
                    help=argparse_suppress())
    add_engine_args(ap)
    args = ap.parse_args(argv)
    common = parse_common(args)
    engine = check_engine_args(args)
    if args.methods is None:
        args.methods = (f"rst:{YANG_POC_MNIST['rst_lambda']:g}" if args.proof_of_concept
                        else DEFAULT_METHODS)
    methods = _method_list(args.methods)
    device = resolve_device(common.device)
    ds = common.dataset
    if ds not in YANG_EPS_LINF:
        raise UsageError(f"--dataset {ds}: YRZSC Table 5 has no setup for it; use one of "
                         f"{', '.join(k for k in YANG_EPS_LINF if k in ('mnist', 'svhn', 'cifar10'))}")
    poc = args.proof_of_concept
    tiny = TINY if common.tiny else {}
    epochs = common.epochs or tiny.get("epochs") or (
        YANG_POC_MNIST["epochs"] if poc else YANG_EPOCHS[ds])
    batch = args.batch_size or (YANG_POC_MNIST["batch_size"] if poc else YANG_BATCH_SIZE[ds])
    # Table 7 gives 1e-4 for a loss summed over the batch; ours is the mean, hence x batch size.
    lr = args.lr or (YANG_POC_MNIST["lr"] * batch if poc else DEFAULT_LR)
    dropout = args.dropout  # Table 4's rates (theory.constants.YANG_DROPOUT) only when asked

    def pick(name):
        v = getattr(args, name)
        return v if v is not None else tiny.get(name)

    base = dict(dataset=ds, model=args.model, dropout=dropout, attack=args.attack,
                eps=args.eps or YANG_EPS_LINF[ds], epochs=epochs, batch_size=batch, lr=lr,
                momentum=YANG_SGD_MOMENTUM[ds] if args.optimizer == "sgd" else 0.9,
                optimizer=args.optimizer, schedule=args.schedule,
                train_size=pick("train_size"), test_size=pick("test_size"),
                eval_size=pick("eval_size"), lip_size=pick("lip_size"),
                attack_steps=pick("attack_steps"), seed=common.seed, proof_of_concept=poc,
                wrn_depth=args.wrn_depth, wrn_width=args.wrn_width)
    cfgs = [TableConfig(method=m, **base) for m in methods]
    started = time.perf_counter()
    data = load_data(cfgs[0], common.data_root)
    jobs = [TableJob(table=c, out=str(common.out), device=str(device),
                     stop_after_epochs=args.stop_after_epochs) for c in cfgs]
    from deep.data import fidelity_state

    shared = {"data": data, "fidelity": fidelity_state()}
    if engine["engine"] == "ray" and device.type == "cpu":
        shared["torch_threads"] = torch.get_num_threads()
    results = run_sweep(TABLE, jobs, shared=shared, desc="methods", **engine)
    rows = []
    for cfg, res in zip(cfgs, results):
        if res is None:
            print(f"{cfg.method}: stopped after {args.stop_after_epochs} epoch(s); rerun to resume",
                  file=sys.stderr)
            return 0
        rows.append({k: res[k] for k in ("method", "label", *COLUMNS)}
                    | {"wall_seconds": res["provenance"].get("wall_seconds"),
                       "run_json": f"runs/{cfg.slug()}.json"})
        if is_main_process():
            print(f"{res['label']:>16}: " + ", ".join(f"{HEADERS[c]} {res[c]:.2f}" for c in COLUMNS),
                  flush=True)
    name = args.name or default_name(ds, args.model, args.attack, dropout, poc)
    shared = {k: v for k, v in asdict(cfgs[0]).items() if k != "method"}
    title = (f"{ds} / {args.model}, eps={base['eps']:g}, attack {args.attack}"
             + (", proof of concept (trained on train + test)" if poc else "")
             + (f" - {args.label}" if args.label else ""))
    combined = {"table": name, "title": title, "label": args.label, "config": shared,
                "columns": list(COLUMNS), "units": "percent except test_lipschitz",
                "tiny": common.tiny, "rows": rows}
    out = Path(common.out)
    if (out / f"{name}.json").is_file():
        print(f"replacing the combined table {out / name}.json (rebuilt from the run JSONs under "
              f"{out / 'runs'}, which are kept)")
    write_result(out / f"{name}.json", combined, seed=common.seed, device=device, started=started)
    atomic_write_text(out / f"{name}.md", table_markdown(rows, title))
    atomic_write_text(out / f"{name}.csv", table_csv(rows))
    print(f"wrote {out / name}.json, .md, .csv")
    return 0


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
