"""Claims of P&L Sections 4.2-4.5 and 9.1/9.3 (scaling laws, robust overfitting, PCA features,
Self-Normalizing CE), measured from committed results of ``deep.scaling_law``,
``deep.robust_overfitting``, ``deep.pca_features`` and ``deep.tradeoff`` under ``results/``.

CIFAR-10 claims read CIFAR-10 runs at the paper's scale (GPU). The official CIFAR-10 is not
available here; the runs use the JPEG copy (``--data-root ../shared/data/cifar10-jpeg``), and a
result made on it carries ``"approximate": true``, so its verdict is APPROX-AGREES /
APPROX-DIFFERS, never PASS. A reduced CPU run (smaller training set or fewer epochs, committed as
``results/*_cifar10_cpu_reduced.json``) is not compared with the paper's numbers: those claims stay
NEEDS-GPU until these files exist (add ``--lr`` after tuning it, as the paper does; docs/cifar10.md
lists the same commands):

* ``results/scaling_law_cifar10.json``: ``python -m deep.scaling_law --dataset cifar10 --data-root
  ../shared/data/cifar10-jpeg --device cuda --models simple_convnet,aol_mlp,cpl_convnet
  --sizes 2^9,2^10,2^11,2^12,2^13,2^14,2^15,50000 --epochs 3000 --out runs/scaling_law_cifar10
  --summary results/scaling_law_cifar10.json``
* ``results/robust_overfitting_cifar10.json``: ``python -m deep.robust_overfitting --dataset cifar10
  --data-root ../shared/data/cifar10-jpeg --device cuda --epochs 3000
  --summary results/robust_overfitting_cifar10.json``
* ``results/pca_features_cifar10.json``: ``python -m deep.pca_features --dataset cifar10 --data-root
  ../shared/data/cifar10-jpeg --device cuda --summary results/pca_features_cifar10.json``
* ``results/tradeoff_cifar10.json``: ``python -m deep.tradeoff --dataset cifar10 --data-root
  ../shared/data/cifar10-jpeg --device cuda --ts 0,1,2,5,10 --summary results/tradeoff_cifar10.json``

The "variance explained" column of Table 1 is a property of the data alone: it is measured
directly (PCA of the 50,000 CIFAR-10 training images, cost "slow"), approximate on the JPEG copy.

The MNIST claims of Sec. 9.3 read ``results/scaling_law_mnist.json``, produced by the GPU command
``deep.scaling_law.GPU_COMMAND`` (printed by ``python -m deep.scaling_law --help``). One
qualitative claim is measured on the committed reduced CPU run
``results/scaling_law_mnist_cpu_small.json`` (its command is in its provenance).
"""
from __future__ import annotations

import numpy as np

from paper_checks.registry import Claim, Measured, NeedsData, load_result, register

P = "P&L"
LIPSCHITZ_MODELS = ("aol_mlp", "cpl_convnet")


def _summary(relpath: str, what: str) -> dict:
    try:
        return load_result(relpath)
    except NeedsData:
        raise NeedsData(f"needs {what}: no results/{relpath} (the command that produces it is in "
                        f"the docstring of paper_checks/claims_pl_experiments.py)") from None


def _curve(summary: dict, model: str, key: str = "test_cra_36"):
    from deep.experiments.scaling_law import curve

    try:
        return curve(summary, model, key)
    except ValueError as exc:
        raise NeedsData(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (paper scale; GPU)

CIFAR_TRAIN_SIZE = 50000
CIFAR_PAPER_EPOCHS = {"pca_features_cifar10.json": 200, "scaling_law_cifar10.json": 3000,
                      "robust_overfitting_cifar10.json": 3000}


def _cifar_summary(relpath: str) -> dict:
    """A paper-scale CIFAR-10 summary; NeedsData (NEEDS-GPU for these gpu claims) when missing,
    a smoke run, or reduced below the paper's epochs / training-set size."""
    s = _summary(relpath, "CIFAR-10 results")
    if s.get("tiny"):
        raise NeedsData(f"results/{relpath} is a --tiny smoke run; the paper-scale GPU run is needed")
    epochs = CIFAR_PAPER_EPOCHS.get(relpath)
    for r in s.get("runs", []):
        if epochs is not None and r.get("epochs", epochs) < epochs:
            raise NeedsData(f"results/{relpath} is reduced ({r.get('epochs')} epochs < {epochs}); "
                            f"the paper-scale GPU run is needed")
        if relpath != "scaling_law_cifar10.json" and r.get("train_size", CIFAR_TRAIN_SIZE) < CIFAR_TRAIN_SIZE:
            raise NeedsData(f"results/{relpath} is reduced (train_size {r.get('train_size')}); the "
                            f"paper-scale GPU run is needed")
    return s


def _source(relpath: str, item: str | None, own) -> dict:
    """The runs that answer a claim: the experiment's own paper-scale result (``own(relpath)``),
    else the GPU campaign's item ``item`` (``results/campaign_pl.json``; reduced and, on the
    CIFAR-10 copy, approximate). A dict with ``runs``, ``approximate``, ``approximate_reason``,
    ``reduced``, ``deviations``, ``source``."""
    try:
        s = own(relpath)
        return {"runs": s.get("runs", []), "approximate": s.get("approximate", True) is not False
                if relpath.endswith("cifar10.json") else bool(s.get("approximate")),
                "approximate_reason": s.get("approximate_reason"), "reduced": "",
                "deviations": list(s.get("deviations") or []), "source": f"results/{relpath}"}
    except NeedsData as exc:
        if item is None:
            raise
        from paper_checks.claims_campaign import pl_source

        try:
            return pl_source(item)
        except NeedsData as camp:
            raise NeedsData(f"{exc}; or the GPU campaign's results: {camp}") from None


def _cm(src: dict, value, detail: str) -> Measured:
    """Measured with the source's fidelity, protocol and deviations."""
    from paper_checks.claims_campaign import with_deviations

    detail = f"{src['source']}: {detail}"
    if src["approximate"]:
        detail += f"; approximate data: {src.get('approximate_reason') or 'no fidelity record'}"
    return Measured(value, with_deviations(detail, src), approximate=bool(src["approximate"]),
                    reduced=src.get("reduced", ""))


def _cifar_gain_per_doubling():
    from deep.experiments.scaling_law import gain_per_doubling

    s = _source("scaling_law_cifar10.json", None, _cifar_summary)
    gains = {m: gain_per_doubling(*_curve(s, m)) for m in LIPSCHITZ_MODELS if any(r["model"] == m for r in s["runs"])}
    if not gains:
        raise NeedsData("needs CIFAR-10 results of aol_mlp / cpl_convnet")
    mean = sum(gains.values()) / len(gains)
    return _cm(s, mean, "CRA@36/255 per doubling: " + ", ".join(f"{m} {g:.3f}" for m, g in gains.items()))


register(Claim("pl-fig1-cra-gain-per-doubling", P, "Sec. 4.2, Fig. 1",
               "On CIFAR-10, doubling the training set raises certified robust accuracy (36/255) by about 5%",
               0.05, _cifar_gain_per_doubling, "approx", 0.02, "gpu", kind="reproduction"))


def _robust_overfit_mlp_train_cra_at_1():
    s = _source("robust_overfitting_cifar10.json", "robust_overfitting_cifar10", _cifar_summary)
    for r in s["runs"]:
        if r["model"] == "aol_mlp" and r.get("cra_curve"):
            c = r["cra_curve"]
            return _cm(s, c["train"][c["eps"].index(1.0)],
                       f"AOL-MLP, offset sqrt(2), no augmentation, {r.get('epochs')} epoch(s)")
    raise NeedsData("needs CIFAR-10 results of aol_mlp")


register(Claim("pl-fig2-mlp-train-cra-at-1", P, "Sec. 4.3, Fig. 2",
               "The AOL MLP trained with offset sqrt(2) reaches almost perfect CRA on the CIFAR-10 "
               "training set even at radius 1", 1.0, _robust_overfit_mlp_train_cra_at_1, "ge", 0.05, "gpu",
               kind="reproduction", full_training_only=True, cell=("Fig. 2", "AOL MLP train CRA at 1"),
               sources=("campaign", "robust_overfitting")))

TABLE1 = {  # row: (variance explained, std train acc, std test acc, CPL train CRA, CPL test CRA)
    "1-16": (0.72, 0.99, 0.43, 0.64, 0.31),
    "1-512": (0.98, 1.00, 0.91, 0.89, 0.61),
    "513-3072": (0.02, 1.00, 0.85, 0.09, 0.09),
    "2049-3072": (0.0002, 0.99, 0.39, 0.0, 0.0),
    "1-16&513-3072": (0.74, 1.00, 0.86, 0.65, 0.35),
}
TABLE1_COLUMNS = (("variance_explained", None), ("train_acc", "simple_convnet"), ("test_acc", "simple_convnet"),
                  ("train_cra_36", "cpl_convnet"), ("test_cra_36", "cpl_convnet"))


def _table1_measure(row: str, key: str, model: str | None):
    def measure():
        s = _source("pca_features_cifar10.json", "pca_features_cifar10", _cifar_summary)
        for r in s["runs"]:
            if r.get("subset") == row and (model is None or r.get("model") == model):
                return _cm(s, r[key], f"{model or 'data'} on PCs {r['components']}, "
                                      f"{r.get('epochs')} epoch(s)")
        raise NeedsData(f"needs CIFAR-10 results for PCs {row}" + (f" and {model}" if model else ""))
    return measure


_PCA_CACHE: dict = {}


def _cifar_pca():
    """PCA of the 50,000 CIFAR-10 training images (pixels in [0, 1]) with the data's fidelity."""
    if "basis" not in _PCA_CACHE:
        import os
        from pathlib import Path

        from deep.pca_projection import fit_pca
        from plumbing.datasets import DataMissingError, load_dataset_with_fidelity

        roots = [None] if os.environ.get("ROBUSTGEN_DATA") else [None, Path(__file__).resolve().parents[2] / "shared" / "data"]
        for root in roots:
            try:
                x, _, fid = load_dataset_with_fidelity("cifar10", "train", root)
                break
            except DataMissingError as exc:
                err = exc
        else:
            raise NeedsData(f"needs CIFAR-10 training images: {err}")
        _PCA_CACHE["basis"] = fit_pca(x.reshape(len(x), -1).astype(np.float32) / 255.0)
        _PCA_CACHE["fidelity"] = fid
        _PCA_CACHE["n"] = len(x)
    return _PCA_CACHE["basis"], _PCA_CACHE["fidelity"], _PCA_CACHE["n"]


def _table1_variance(row: str):
    """Table 1 'Var. Expl.': fraction of the training variance in the span of the PCs of ``row``,
    computed from the data (a property of the data, no training)."""
    def measure():
        from deep.pca_projection import subset_for_dim

        basis, fid, n = _cifar_pca()
        sub = subset_for_dim(row, basis.dim)
        detail = f"PCA of the {n} CIFAR-10 training images (pixels /255), PCs {sub.label}"
        if fid.approximate:
            detail += f"; approximate data: {fid.reason}"
        return Measured(round(basis.explained_variance(sub), 6), detail, approximate=bool(fid.approximate))
    return measure


for _row, _vals in TABLE1.items():
    for (_key, _model), _claimed in zip(TABLE1_COLUMNS, _vals):
        if _key == "variance_explained":
            register(Claim(f"pl-table1-{_row}-{_key}".replace("&", "+"), P, "Sec. 4.4, Table 1",
                           f"CIFAR-10 training variance explained by PCs {_row}",
                           _claimed, _table1_variance(_row), "approx", 0.005, "slow", kind="reproduction",
                           cell=(_row, _key)))
            continue
        register(Claim(f"pl-table1-{_row}-{_key}".replace("&", "+"), P, "Sec. 4.4, Table 1",
                       f"Training on CIFAR-10 projected onto PCs {_row}: {_key}"
                       + (f" of the {_model}" if _model else ""),
                       _claimed, _table1_measure(_row, _key, _model), "approx", 0.05, "gpu",
                       kind="reproduction", full_training_only=_key.startswith("train_"),
                       cell=(_row, _key), sources=("campaign", "pca_features")))


def _table3_measure(t: float, key: str):
    def measure():
        s = _source("tradeoff_cifar10.json", "tradeoff_cifar10", _cifar_summary)
        for r in s["runs"]:
            if abs(float(r.get("t", -1)) - t) < 1e-9:
                return _cm(s, r[key], f"unified_convnet, Self-Normalizing CE, t={t:g}, "
                                      f"{r.get('epochs')} epoch(s)")
        raise NeedsData(f"needs CIFAR-10 results for t={t:g}")
    return measure


# Table 3's first row reads "Ω" in the text conversion; we read it as t = 0 (see deep/losses.py).
for _t, _acc, _cra in ((0.0, 0.932, 0.0), (10.0, 0.768, 0.617)):
    register(Claim(f"pl-table3-t{_t:g}-acc", P, "Sec. 4.5, Table 3",
                   f"The Sec. 4.5 model with Self-Normalizing CE, t={_t:g}: clean accuracy on CIFAR-10",
                   _acc, _table3_measure(_t, "test_acc"), "approx", 0.03, "gpu", kind="reproduction",
                   cell=(f"t={_t:g}", "acc"), sources=("campaign", "tradeoff")))
    register(Claim(f"pl-table3-t{_t:g}-cra", P, "Sec. 4.5, Table 3",
                   f"The Sec. 4.5 model with Self-Normalizing CE, t={_t:g}: CRA (36/255) on CIFAR-10",
                   _cra, _table3_measure(_t, "test_cra_36"), "approx", 0.03, "gpu", kind="reproduction",
                   cell=(f"t={_t:g}", "cra"), sources=("campaign", "tradeoff")))


# ---------------------------------------------------------------------------------------------
# MNIST, Sec. 9.3 / Fig. 7 (full GPU run)

def _mnist_full():
    return _source("scaling_law_mnist.json", "scaling_law_mnist",
                   lambda rel: _summary(rel, "the full MNIST scaling-law run (GPU)"))


def _examples_for_90():
    from deep.experiments.scaling_law import crossing_size

    s = _mnist_full()
    out = {}
    for m in LIPSCHITZ_MODELS:
        if any(r["model"] == m for r in s["runs"]):
            n = crossing_size(*_curve(s, m), 0.9)
            out[m] = n
    reached = [v for v in out.values() if v is not None]
    if not out:
        raise NeedsData("needs aol_mlp / cpl_convnet runs in results/scaling_law_mnist.json")
    detail = ", ".join(f"{m}: {'never' if v is None else f'{v:.0f}'}" for m, v in out.items())
    return _cm(s, min(reached) if reached else float("inf"), "size reaching 90% test CRA@36/255 " + detail)


register(Claim("pl-sec9.3-examples-for-90-cra", P, "Sec. 9.3, Fig. 7",
               "On MNIST about 234 training examples suffice for 90% certified robust accuracy (36/255)",
               234, _examples_for_90, "approx", 117, "gpu", units="examples", kind="reproduction",
               cell=("examples for 90% CRA", None), sources=("campaign", "scaling_law")))


def _mnist_small_gain():
    from deep.experiments.scaling_law import gain_per_doubling

    s = _mnist_full()
    gains = {}
    for m in LIPSCHITZ_MODELS:
        if any(r["model"] == m for r in s["runs"]):
            sizes, vals = _curve(s, m)
            pts = [(n, v) for n, v in zip(sizes, vals) if n <= 256]
            if len(pts) >= 2:
                gains[m] = gain_per_doubling(*zip(*pts))
    if not gains:
        raise NeedsData("needs at least two sizes <= 256 in results/scaling_law_mnist.json")
    return _cm(s, sum(gains.values()) / len(gains),
               "CRA@36/255 per doubling for n <= 256: " + ", ".join(f"{m} {g:.3f}" for m, g in gains.items()))


register(Claim("pl-sec9.3-gain-per-doubling-small", P, "Sec. 9.3, Fig. 7",
               "With less data (below ~234 examples) doubling the MNIST training set adds about 7% CRA",
               0.07, _mnist_small_gain, "approx", 0.03, "gpu", kind="reproduction",
               cell=("CRA gain per doubling, n <= 234", None), sources=("campaign", "scaling_law")))


def _mnist_peak():
    s = _mnist_full()
    peaks = {}
    for m in LIPSCHITZ_MODELS:
        if any(r["model"] == m for r in s["runs"]):
            sizes, vals = _curve(s, m)
            best = max(vals)
            peaks[m] = next(n for n, v in zip(sizes, vals) if v >= best - 0.01)
    if not peaks:
        raise NeedsData("needs aol_mlp / cpl_convnet runs in results/scaling_law_mnist.json")
    return _cm(s, max(peaks.values()), "smallest size within 1 point of the best CRA: "
               + ", ".join(f"{m} {n}" for m, n in peaks.items()))


register(Claim("pl-sec9.3-peak-at-15k", P, "Sec. 9.3, Fig. 7",
               "On MNIST the models reach their peak certified robust accuracy at about 15k examples",
               15000, _mnist_peak, "approx", 7500, "gpu", units="examples", kind="reproduction",
               cell=("size of peak CRA", None), sources=("campaign", "scaling_law")))


# ---------------------------------------------------------------------------------------------
# MNIST, reduced CPU configuration (committed; fast)

def _cpu_small_gain():
    from deep.experiments.scaling_law import gain_per_doubling

    s = _summary("scaling_law_mnist_cpu_small.json", "the reduced CPU MNIST run")
    sizes, vals = _curve(s, "aol_mlp")
    g = gain_per_doubling(sizes, vals)
    return Measured(g, f"reduced CPU configuration (AOL-MLP width {s['runs'][0]['width']}, sizes "
                       f"{sizes[0]}..{sizes[-1]}): least-squares CRA@36/255 gain per doubling {g:.3f} "
                       f"(paper, full setup: ~0.07 below 234 examples)")


register(Claim("pl-sec4.2-cra-grows-with-data-mnist-cpu", P, "Sec. 4.2 / 9.3",
               "Certified robust accuracy grows with the training-set size at fixed compute "
               "(measured: least-squares gain per doubling > 0, reduced CPU MNIST run)",
               0.0, _cpu_small_gain, "gt", 0.0, "fast", kind="reproduction"))
