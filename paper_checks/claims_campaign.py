"""Claims measured by the budgeted GPU campaigns (``python -m deep.campaign``).

YRZSC: every printed cell of Table 2 (MNIST, CNN1 and CNN2, PGD-10), Table 9 (CNN1, multi-targeted)
and Table 10 (CNN2, multi-targeted), read from ``results/campaign_yrzsc_mnist.json``. The campaign
trains for the epochs that fit its budget (printed in the result; the paper trains 160 with its
learning-rate steps, which the campaign compresses proportionally); every verdict's detail says
how many epochs and on how many examples the attack ran.

Tolerances per column, for one run against one published run: train and test accuracy +-0.5
points, gap (train - test) +-1.0 point, adversarial test accuracy +-3 points, adversarial gap
+-3 points, test Lipschitz estimate (Eq. 3) +-30 % of the paper's value.

P&L: throughput against the 8.6 s/epoch anchor, the MNIST scaling law (Sec. 9.3), Table 1 and
Table 3 and the robust-overfitting curve on the JPEG-approximate CIFAR-10 copy (approximate-data
verdicts), and the soundness check that no certified point was broken by the attack, all from
``results/campaign_pl.json``.

All are ``cost="gpu"``: NEEDS-GPU until the campaign's results are committed. Produce them with
``python -m deep.campaign all ...`` (docs/gpu_campaign.md) and copy ``campaign_yrzsc_mnist.json``
and ``campaign_pl.json`` from the archive to ``results/``.
"""
from __future__ import annotations

from paper_checks.registry import Claim, Measured, NeedsData, load_result, register

YRZSC_FILE = "campaign_yrzsc_mnist.json"
PL_FILE = "campaign_pl.json"
CMD = "python -m deep.campaign all --device cuda (docs/gpu_campaign.md)"

# Row label in the paper -> our method spec. "RST(λ=5)" is the label printed in Tables 2, 9, 10.
ROWS = {"Natural": "natural", "GR": "gr", "LLR": "llr", "AT": "at", "RST(λ=5)": "rst:5",
        "RST(λ=1)": "rst:1", "RST(λ=2)": "rst:2", "TRADES(β=1)": "trades:1",
        "TRADES(β=3)": "trades:3", "TRADES(β=6)": "trades:6"}
COLUMNS = ("train_acc", "test_acc", "adv_test_acc", "test_lipschitz", "gap", "adv_gap")
WORDS = {"train_acc": "train accuracy (%)", "test_acc": "test accuracy (%)",
         "adv_test_acc": "adversarial test accuracy (%)", "test_lipschitz": "test Lipschitz (Eq. 3)",
         "gap": "generalization gap (points)", "adv_gap": "adversarial generalization gap (points)"}
TOL = {"train_acc": 0.5, "test_acc": 0.5, "gap": 1.0, "adv_test_acc": 3.0, "adv_gap": 3.0}
TOL_LIP_REL = 0.30

# Paper values (the only place they appear here), columns as COLUMNS, rows as ROWS.
TABLE2_CNN1 = (
    (100.00, 99.20, 59.83, 67.25, 0.80, 0.45), (99.99, 99.29, 91.03, 26.05, 0.70, 3.49),
    (100.00, 99.43, 92.14, 30.44, 0.57, 4.42), (99.98, 99.31, 97.21, 8.84, 0.67, 2.67),
    (100.00, 99.34, 96.53, 11.09, 0.66, 3.16), (100.00, 99.31, 96.96, 11.31, 0.69, 2.95),
    (100.00, 99.31, 97.09, 12.39, 0.69, 2.87), (99.81, 99.26, 96.60, 9.69, 0.55, 2.10),
    (99.21, 98.96, 96.66, 7.83, 0.25, 1.33), (97.50, 97.54, 93.68, 2.87, -0.04, 0.37))
TABLE2_CNN2 = (
    (100.00, 99.51, 86.01, 23.06, 0.49, -0.28), (99.99, 99.55, 93.71, 20.26, 0.44, 2.55),
    (100.00, 99.57, 95.13, 9.75, 0.43, 2.28), (99.98, 99.48, 98.03, 6.09, 0.50, 1.92),
    (100.00, 99.53, 97.72, 8.27, 0.47, 2.27), (100.00, 99.55, 98.27, 6.26, 0.45, 1.73),
    (100.00, 99.56, 98.48, 4.55, 0.44, 1.52), (99.96, 99.58, 98.10, 4.74, 0.38, 1.70),
    (99.80, 99.57, 98.54, 2.14, 0.23, 1.18), (99.61, 99.59, 98.73, 1.36, 0.02, 0.80))
TABLE9_CNN1_MT = (
    (100.00, 99.20, 47.30, 67.25, 0.80, -0.53), (99.99, 99.29, 89.99, 26.05, 0.70, 3.30),
    (100.00, 99.43, 90.49, 30.44, 0.57, 4.06), (99.98, 99.31, 97.23, 8.84, 0.67, 2.65),
    (100.00, 99.34, 96.46, 11.09, 0.66, 3.22), (100.00, 99.31, 96.93, 11.22, 0.69, 2.97),
    (100.00, 99.31, 97.00, 12.39, 0.69, 2.95), (99.81, 99.26, 96.53, 9.69, 0.55, 2.12),
    (99.21, 98.96, 96.60, 7.83, 0.25, 1.34), (97.50, 97.54, 93.54, 2.86, -0.04, 0.39))
TABLE10_CNN2_MT = (
    (100.00, 99.51, 81.35, 23.06, 0.49, -0.87), (99.99, 99.55, 92.93, 20.26, 0.44, 2.39),
    (100.00, 99.57, 93.76, 9.75, 0.43, 1.70), (99.98, 99.48, 98.01, 6.09, 0.50, 1.94),
    (100.00, 99.53, 97.69, 8.27, 0.47, 2.30), (100.00, 99.55, 98.25, 6.26, 0.45, 1.74),
    (100.00, 99.56, 98.46, 4.56, 0.44, 1.53), (99.96, 99.58, 98.06, 4.74, 0.38, 1.73),
    (99.80, 99.57, 98.54, 2.14, 0.23, 1.18), (99.61, 99.59, 98.73, 1.36, 0.02, 0.81))

TABLES = {"table2_cnn1": ("Table 2", "CNN1", "PGD-10", TABLE2_CNN1),
          "table2_cnn2": ("Table 2", "CNN2", "PGD-10", TABLE2_CNN2),
          "table9_cnn1_mt": ("Table 9", "CNN1", "multi-targeted", TABLE9_CNN1_MT),
          "table10_cnn2_mt": ("Table 10", "CNN2", "multi-targeted", TABLE10_CNN2_MT)}


def _load(relpath: str) -> dict:
    try:
        res = load_result(relpath)
    except NeedsData:
        raise NeedsData(f"no committed result results/{relpath}; produce it on a GPU with: "
                        f"{CMD}") from None
    if res.get("tiny"):
        raise NeedsData(f"results/{relpath} comes from the --tiny test preset; the GPU run is "
                        f"still needed: {CMD}")
    return res


def _yrzsc_cell(table: str, spec: str, column: str):
    def measure():
        res = _load(YRZSC_FILE)
        rows = {r["method"]: r for r in res.get("tables", {}).get(table, {}).get("rows", [])}
        if spec not in rows:
            raise NeedsData(f"results/{YRZSC_FILE} has no finished {spec} run in {table} "
                            f"(runs left: {len(res.get('runs_left', []))})")
        tab = res.get("tables", {}).get(table, {})   # per network: --archs runs may differ
        plan = tab.get("plan") or res.get("plan", {})
        epochs = tab.get("epochs", res["epochs"])
        detail = (f"results/{YRZSC_FILE}: {epochs} epoch(s) instead of 160 (learning-rate "
                  f"steps compressed proportionally); PGD on {plan.get('n_test')} test / "
                  f"{plan.get('n_train_eval')} train examples, MT on {plan.get('n_mt')}; "
                  f"device {res.get('provenance', {}).get('device')}")
        return Measured(rows[spec][column], detail)
    return measure


for _key, (_loc, _net, _attack, _values) in TABLES.items():
    for (_label, _spec), _row in zip(ROWS.items(), _values):
        for _col, _claimed in zip(COLUMNS, _row):
            _tol = round(TOL_LIP_REL * _claimed, 4) if _col == "test_lipschitz" else TOL[_col]
            register(Claim(
                id=f"campaign-yrzsc-{_key}-{_spec.replace(':', '')}-{_col}", paper="YRZSC",
                location=_loc,
                claim=f"MNIST {_net}, {_label}: {WORDS[_col]} ({_attack}, eps 0.1)",
                claimed=_claimed, measure=_yrzsc_cell(_key, _spec, _col), compare="approx",
                tolerance=_tol, cost="gpu", kind="reproduction"))


# ---- P&L ---------------------------------------------------------------------------------------

def _pl_item(name: str) -> tuple[dict, list]:
    res = _load(PL_FILE)
    item = res.get("items", {}).get(name)
    if not item or not item.get("runs"):
        why = res.get("cifar_skipped") if name.endswith("cifar10") else None
        raise NeedsData(f"results/{PL_FILE} has no finished {name} runs"
                        + (f" ({why})" if why else ""))
    return res, item["runs"]


def _throughput(model: str):
    def measure():
        _, runs = _pl_item("throughput")
        rows = [r for r in runs if r.get("model") == model and not r.get("tf32")]
        if not rows:
            raise NeedsData(f"no float32 throughput run of {model} in results/{PL_FILE}")
        r = rows[0]
        return Measured(r["seconds_per_epoch"],
                        f"{model} (P&L Sec. 4.1 network, {r.get('parameters')} parameters), batch "
                        f"{r['batch_size']}, float32, random CIFAR-10-shaped data on our GPU; the "
                        f"8.6 s anchor is the XS model on the comparison's GPU")
    return measure


for _m, _words in (("aol_convnet", "AOL"), ("cpl_convnet", "CPL")):
    register(Claim(f"campaign-pl-throughput-{_m}", "P&L", "Sec. 4.1 (training time)",
                   f"A CIFAR-10 training epoch of the {_words} ConvNet takes at most about twice "
                   f"the 8.6 s of the 1-Lipschitz layer comparison's XS models",
                   8.6, _throughput(_m), "le", 8.6, "gpu", units="s/epoch", kind="reproduction"))


def _no_broken():
    res = _load(PL_FILE)
    n = res.get("certified_points_attacked", 0)
    if not n:
        raise NeedsData(f"results/{PL_FILE} attacked no certified point")
    return Measured(res["broken_certificates"] == 0,
                    f"{res['broken_certificates']} of {n} certified test points broken by l2 PGD "
                    f"at their certified radius")


register(Claim("campaign-pl-certificates-unbroken", "P&L", "Eq. (3)",
               "No point certified at 36/255 is misclassified by an attack inside its certified "
               "radius (soundness check of the project's certificates, not a paper number)",
               True, _no_broken, "true", 0.0, "gpu", kind="identity"))


def _scaling_summary():
    res, runs = _pl_item("scaling_law_mnist")
    plan = res["items"]["scaling_law_mnist"].get("plan") or {}
    return {"runs": runs}, (f"campaign: fixed compute of {plan.get('ref_epochs')} epoch(s) of "
                            f"{plan.get('ref_size')} examples per run (reduced)")


def _examples_for_90():
    from deep.experiments.scaling_law import crossing_size, curve

    s, note = _scaling_summary()
    out = {}
    for m in ("aol_mlp", "cpl_convnet"):
        try:
            out[m] = crossing_size(*curve(s, m), 0.9)
        except ValueError:
            continue
    if not out:
        raise NeedsData("no aol_mlp / cpl_convnet scaling runs")
    reached = [v for v in out.values() if v is not None]
    return Measured(min(reached) if reached else float("inf"),
                    "size reaching 90% test CRA@36/255: " + ", ".join(
                        f"{m} {'never' if v is None else f'{v:.0f}'}" for m, v in out.items())
                    + f"; {note}")


register(Claim("campaign-pl-sec9.3-examples-for-90-cra", "P&L", "Sec. 9.3, Fig. 7",
               "On MNIST about 234 training examples suffice for 90% certified robust accuracy "
               "(36/255)", 234, _examples_for_90, "approx", 117, "gpu", units="examples",
               kind="reproduction"))


def _small_gain():
    from deep.experiments.scaling_law import curve, gain_per_doubling

    s, note = _scaling_summary()
    gains = {}
    for m in ("aol_mlp", "cpl_convnet"):
        try:
            sizes, vals = curve(s, m)
        except ValueError:
            continue
        pts = [(n, v) for n, v in zip(sizes, vals) if n <= 256]
        if len(pts) >= 2:
            gains[m] = gain_per_doubling(*zip(*pts))
    if not gains:
        raise NeedsData("needs two sizes <= 256 in the campaign's scaling runs")
    return Measured(sum(gains.values()) / len(gains), "CRA@36/255 per doubling for n <= 256: "
                    + ", ".join(f"{m} {g:.3f}" for m, g in gains.items()) + f"; {note}")


register(Claim("campaign-pl-sec9.3-gain-per-doubling-small", "P&L", "Sec. 9.3, Fig. 7",
               "Below ~234 examples doubling the MNIST training set adds about 7% CRA",
               0.07, _small_gain, "approx", 0.03, "gpu", kind="reproduction"))

PL_TABLE1 = {"1-16": (0.72, 0.99, 0.43, 0.64, 0.31), "1-512": (0.98, 1.00, 0.91, 0.89, 0.61),
             "513-3072": (0.02, 1.00, 0.85, 0.09, 0.09), "2049-3072": (0.0002, 0.99, 0.39, 0.0, 0.0),
             "1-16&513-3072": (0.74, 1.00, 0.86, 0.65, 0.35)}
PL_TABLE1_COLUMNS = (("variance_explained", None), ("train_acc", "simple_convnet"),
                     ("test_acc", "simple_convnet"), ("train_cra_36", "cpl_convnet"),
                     ("test_cra_36", "cpl_convnet"))


def _table1(row: str, key: str, model: str | None):
    def measure():
        _, runs = _pl_item("pca_features_cifar10")
        for r in runs:
            if r.get("subset") == row and (model is None or r.get("model") == model):
                return Measured(r[key], f"{model or 'data'} on PCs {r.get('components')}, "
                                        f"{r.get('epochs')} epoch(s) (paper 200); CIFAR-10, "
                                        f"JPEG-approximate", approximate=True)
        raise NeedsData(f"no campaign run for PCs {row}" + (f" and {model}" if model else ""))
    return measure


for _row, _vals in PL_TABLE1.items():
    for (_key, _model), _claimed in zip(PL_TABLE1_COLUMNS, _vals):
        register(Claim(f"campaign-pl-table1-{_row}-{_key}".replace("&", "+"), "P&L",
                       "Sec. 4.4, Table 1",
                       f"CIFAR-10 projected onto PCs {_row}: {_key}"
                       + (f" of the {_model}" if _model else ""), _claimed,
                       _table1(_row, _key, _model), "approx",
                       0.005 if _key == "variance_explained" else 0.05, "gpu", kind="reproduction"))


def _table3(t: float, key: str):
    def measure():
        _, runs = _pl_item("tradeoff_cifar10")
        for r in runs:
            if abs(float(r.get("t", -1)) - t) < 1e-9:
                return Measured(r[key], f"unified_convnet, Self-Normalizing CE t={t:g}, "
                                        f"{r.get('epochs')} epoch(s) (paper 200); CIFAR-10, "
                                        f"JPEG-approximate", approximate=True)
        raise NeedsData(f"no campaign run for t={t:g}")
    return measure


for _t, _acc, _cra in ((0.0, 0.932, 0.0), (10.0, 0.768, 0.617)):
    register(Claim(f"campaign-pl-table3-t{_t:g}-acc", "P&L", "Sec. 4.5, Table 3",
                   f"Self-Normalizing CE, t={_t:g}: clean accuracy on CIFAR-10", _acc,
                   _table3(_t, "test_acc"), "approx", 0.03, "gpu", kind="reproduction"))
    register(Claim(f"campaign-pl-table3-t{_t:g}-cra", "P&L", "Sec. 4.5, Table 3",
                   f"Self-Normalizing CE, t={_t:g}: CRA (36/255) on CIFAR-10", _cra,
                   _table3(_t, "test_cra_36"), "approx", 0.03, "gpu", kind="reproduction"))


def _overfit_mlp():
    _, runs = _pl_item("robust_overfitting_cifar10")
    for r in runs:
        if r.get("model") == "aol_mlp" and r.get("cra_curve"):
            c = r["cra_curve"]
            return Measured(c["train"][c["eps"].index(1.0)],
                            f"AOL MLP, offset sqrt(2), no augmentation, {r.get('epochs')} epoch(s) "
                            f"(paper 3000); CIFAR-10, JPEG-approximate", approximate=True)
    raise NeedsData("no campaign robust-overfitting run of aol_mlp")


register(Claim("campaign-pl-fig2-mlp-train-cra-at-1", "P&L", "Sec. 4.3, Fig. 2",
               "The AOL MLP trained with offset sqrt(2) reaches almost perfect CRA on the CIFAR-10 "
               "training set at radius 1", 1.0, _overfit_mlp, "ge", 0.05, "gpu",
               kind="reproduction"))
