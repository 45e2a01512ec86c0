"""Reading the budgeted GPU campaign's results (``python -m deep.campaign``, docs/gpu_campaign.md),
and the two P&L claims only the campaign answers.

The campaign's cells are judged by the claims of the paper tables they belong to, one claim per
cell: YRZSC Tables 2, 9, 10 in ``claims_yrzsc_mnist.py`` (from ``results/campaign_yrzsc_mnist.json``),
P&L Table 1, Table 3, Fig. 2 and Sec. 9.3 in ``claims_pl_experiments.py`` (from their own results,
else ``results/campaign_pl.json`` through :func:`pl_source`). A campaign run below the paper's
protocol is REDUCED (verdicts REDUCED-AGREES / REDUCED-DIFFERS, or REDUCED-NOT-JUDGED for claims
that need full training); on the JPEG copy of CIFAR-10 also approximate. Details list the
campaign's own ``deviations``.

Here: the throughput of the AOL and CPL ConvNets against the 8.6 s/epoch anchor (judged only from
a result measured on a CUDA device) and the soundness check that no certified point was broken by
the attack (an identity: a check of the project's certificates, not a paper number).
"""
from __future__ import annotations

from paper_checks.registry import Claim, Measured, NeedsData, load_result, register

PL_FILE = "campaign_pl.json"
CMD = "python -m deep.campaign all --device cuda (docs/gpu_campaign.md)"

#: P&L protocol per campaign item: (paper epochs, paper training-set size). Sec. 4.1: "we usually
#: train for 3000 epochs"; Table 1 / Table 3 models: 200 epochs (Sec. 4.4, 4.5); Fig. 2: 3000
#: epochs without augmentation (Sec. 4.3); MNIST (Sec. 9.3) keeps the CIFAR-10 setup.
PL_PROTOCOL = {"pca_features_cifar10": (200, 50000), "tradeoff_cifar10": (200, 50000),
               "robust_overfitting_cifar10": (3000, 50000), "scaling_law_mnist": (3000, None)}


def load_campaign(relpath: str) -> dict:
    try:
        res = load_result(relpath)
    except NeedsData:
        raise NeedsData(f"no committed result results/{relpath}; produce it on a GPU with: "
                        f"{CMD}") from None
    if res.get("tiny"):
        raise NeedsData(f"results/{relpath} comes from the --tiny test preset; the GPU run is "
                        f"still needed: {CMD}")
    return res


def pl_item(name: str) -> tuple[dict, list]:
    res = load_campaign(PL_FILE)
    item = res.get("items", {}).get(name)
    if not item or not item.get("runs"):
        why = res.get("cifar_skipped") if name.endswith("cifar10") else None
        raise NeedsData(f"results/{PL_FILE} has no finished {name} runs"
                        + (f" ({why})" if why else ""))
    return res, item["runs"]


def pl_source(name: str) -> dict:
    """The campaign's runs of P&L item ``name`` with what a verdict needs: ``runs``,
    ``approximate`` (+ ``approximate_reason``), ``reduced`` (why the runs are below the paper's
    protocol, or ""), ``deviations`` (the campaign's list) and ``source``."""
    res, runs = pl_item(name)
    plan = res["items"][name].get("plan") or {}
    epochs, n_train = PL_PROTOCOL[name]
    reduced = []
    if name == "scaling_law_mnist":
        ref = plan.get("ref_epochs")
        if ref is not None and int(ref) < epochs:
            reduced.append(f"fixed compute of {ref} reference epoch(s) of {plan.get('ref_size')} "
                           f"examples per run (P&L setup: {epochs} epochs)")
    else:
        got = sorted({int(r["epochs"]) for r in runs if r.get("epochs") is not None})
        if got and got[0] < epochs:
            reduced.append(f"{'/'.join(map(str, got))} epoch(s) of the paper's {epochs}")
        sizes = sorted({int(r["train_size"]) for r in runs if r.get("train_size") is not None})
        if n_train and sizes and sizes[0] < n_train:
            reduced.append(f"training set {'/'.join(map(str, sizes))} of {n_train}")
    approx = any(r.get("approximate") for r in runs) or name.endswith("cifar10")
    return {"runs": runs, "approximate": approx,
            "approximate_reason": res.get("approximate_reason") if approx else None,
            "reduced": "; ".join(reduced), "deviations": list(res.get("deviations") or []),
            "source": f"results/{PL_FILE} ({name})"}


def with_deviations(detail: str, src: dict) -> str:
    if src.get("deviations"):
        detail += "; deviations from the paper: " + "; ".join(src["deviations"])
    return detail


# ---- throughput ---------------------------------------------------------------------------------

def _is_cuda(run: dict) -> bool:
    kind = run.get("device_type")
    if kind is not None:
        return kind == "cuda"
    return (run.get("provenance") or {}).get("device", "cpu") not in ("cpu", None)


def _throughput(model: str):
    def measure():
        res, runs = pl_item("throughput")
        rows = [r for r in runs if r.get("model") == model and not r.get("tf32")]
        if not rows:
            raise NeedsData(f"no float32 throughput run of {model} in results/{PL_FILE}")
        r = rows[0]
        device = (r.get("provenance") or {}).get("device")
        if not _is_cuda(r):
            raise NeedsData(f"the throughput of {model} in results/{PL_FILE} was measured on "
                            f"{device or 'an unrecorded device'}, not a CUDA GPU; the anchor is a "
                            f"GPU timing: {CMD}")
        return Measured(r["seconds_per_epoch"],
                        f"{model} (P&L Sec. 4.1 network, {r.get('parameters')} parameters), batch "
                        f"{r['batch_size']}, float32, random CIFAR-10-shaped data, measured on "
                        f"{device}; the 8.6 s anchor is the XS model on the comparison's GPU")
    return measure


for _m, _words in (("aol_convnet", "AOL"), ("cpl_convnet", "CPL")):
    register(Claim(f"campaign-pl-throughput-{_m}", "P&L", "Sec. 4.1 (training time)",
                   f"A CIFAR-10 training epoch of the {_words} ConvNet takes at most about twice "
                   f"the 8.6 s of the 1-Lipschitz layer comparison's XS models",
                   8.6, _throughput(_m), "le", 8.6, "gpu", units="s/epoch", kind="reproduction",
                   sources=("campaign",)))


# ---- certificates -------------------------------------------------------------------------------

def _no_broken():
    res = load_campaign(PL_FILE)
    n = res.get("certified_points_attacked", 0)
    if not n:
        raise NeedsData(f"results/{PL_FILE} attacked no certified point")
    return Measured(res["broken_certificates"] == 0,
                    f"{res['broken_certificates']} of {n} certified test points broken by l2 PGD "
                    f"at their certified radius")


register(Claim("campaign-pl-certificates-unbroken", "P&L", "Eq. (3)",
               "No point certified at 36/255 is misclassified by an attack inside its certified "
               "radius (soundness check of the project's certificates, not a paper number)",
               True, _no_broken, "true", 0.0, "gpu", kind="identity", sources=("campaign",)))
