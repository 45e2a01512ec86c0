"""Monte Carlo of P&L Theorem 1 (No Free Robustness; Section 3, supplementary Section 7).

Each trial draws a fresh member D_phi of F (phi from a per-trial key), a training set S of n
points, and a test set of ``test_size`` points; every learner is fitted on S and scored on the test
set with the exact worst-case evaluator of :mod:`theory.hypercube_robustness`.  The expectation in
the theorem is over (phi, S, test point); the trial means estimate it, and the 95% interval is a
Student-t interval over trials (with one trial: a Wilson interval over that trial's test points,
i.e. conditional on its phi and S, shown for information only). The verdict on bullet 3 is a
one-sided t-test over trials against the attained bound 1/2 + P(seen)/2 (<= 1/2 + n/2^d) at level
``THM1_VERDICT_ALPHA``; one trial gives no verdict (:func:`bound_verdict`).

All randomness is counter-based (``theory.hypercube``): trial t uses the keys
derive_key(seed, TAG_*, t), so the same seed gives identical numbers, trials can be run in any
order, and an interrupted sweep resumes from its checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from theory.constants import THM1_ROBUST_ACC_BOUND
from theory.hypercube import (MAX_D, TAG_COIN, TAG_PHI, TAG_TEST, TAG_TRAIN, HypercubeFamily,
                              derive_key, dimension_for, p_seen, robust_accuracy_bound,
                              robust_accuracy_bound_tight)
from theory.hypercube_learners import (HammingIndex, LearnerContext, Memoriser, learner_names,
                                       learner_role, make_learner, train_table)
from theory.hypercube_learners import _lookup as lookup_patterns
from theory.hypercube_robustness import check_eps, evaluate
from plumbing.validation import check_choice, check_float, check_int

MAX_SIM_N = 2 ** 31 - 1
DEFAULT_LEARNERS = ("oracle", "linear", "memoriser", "1nn", "knn", "bayes")


@dataclass(frozen=True)
class Thm1Config:
    """One simulation setting.  d defaults to the theorem's ceil(log2 n) + 7; eps to delta (the
    radius of bullet 3)."""
    n: int
    delta: float = 0.1
    eps: float | None = None
    trials: int = 20
    test_size: int = 2000
    learners: tuple[str, ...] = DEFAULT_LEARNERS
    seed: int = 0
    k: int = 5
    fallback: str = "sign_xd"
    d: int | None = None
    clip: bool = True

    def __post_init__(self):
        s = object.__setattr__
        # the simulation materialises S (n uint64 patterns; int32 k-NN counts)
        s(self, "n", check_int("n", self.n, min_value=1, max_value=MAX_SIM_N))
        s(self, "delta", check_float("delta", self.delta, low=0.0, high=1.0, low_open=True,
                                     high_open=True))
        s(self, "eps", self.delta if self.eps is None else check_eps(self.eps))
        s(self, "trials", check_int("trials", self.trials, min_value=1))
        s(self, "test_size", check_int("test_size", self.test_size, min_value=1))
        s(self, "seed", check_int("seed", self.seed, min_value=0, max_value=(1 << 64) - 1))
        s(self, "k", check_int("k", self.k, min_value=1))
        s(self, "fallback", check_choice("fallback", self.fallback, Memoriser.FALLBACKS))
        if isinstance(self.learners, str):
            raise TypeError("learners must be a sequence of names, not a string")
        names = tuple(self.learners)
        if not names:
            raise ValueError(f"learners must name at least one of {', '.join(learner_names())}")
        for nm in names:
            check_choice("learner", nm, learner_names())
        if len(set(names)) != len(names):
            raise ValueError(f"learners must not repeat a name, got {', '.join(names)}")
        s(self, "learners", names)
        s(self, "d", dimension_for(self.n) if self.d is None
          else check_int("d", self.d, min_value=2, max_value=MAX_D))
        s(self, "clip", bool(self.clip))


def _t_two_sided_mass(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with integer ``dof`` (Abramowitz & Stegun 26.7.3-4, exact)."""
    th = math.atan(t / math.sqrt(dof))
    c2, s = math.cos(th) ** 2, math.sin(th)
    if dof % 2 == 1:
        term, acc = math.cos(th), 0.0
        if dof > 1:
            acc = term
            for j in range(3, dof - 1, 2):
                term *= c2 * (j - 1) / j
                acc += term
        return (2 / math.pi) * (th + s * acc)
    term, acc = 1.0, 1.0
    for j in range(2, dof - 1, 2):
        term *= c2 * (j - 1) / j
        acc += term
    return s * acc


def t_quantile(mass: float, dof: int) -> float:
    """t with P(|T| <= t) = ``mass`` for Student's t with ``dof`` degrees of freedom (bisection on
    the exact CDF for dof <= 200; Cornish-Fisher expansion to O(dof^-3) beyond, error < 1e-6 for
    mass <= 0.999).  Avoids importing scipy in the hot path."""
    from statistics import NormalDist

    dof = check_int("dof", dof, min_value=1)
    mass = check_float("mass", mass, low=0.0, high=1.0, low_open=True, high_open=True)
    z = NormalDist().inv_cdf(0.5 + mass / 2)
    if dof > 200:
        v = float(dof)
        return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
                + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3))
    lo, hi = 0.0, 20.0
    while _t_two_sided_mass(hi, dof) < mass:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if _t_two_sided_mass(mid, dof) < mass:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_quantile_975(dof: int) -> float:
    """Two-sided 95% Student-t quantile."""
    return t_quantile(0.95, dof)


def mean_ci95(values) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95% interval over the values (>= 2 of them)."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    hw = t_quantile_975(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return mean, mean - hw, mean + hw


def wilson_ci95(successes: int, total: int) -> tuple[float, float]:
    """Wilson score 95% interval for a binomial proportion."""
    z = 1.959963984540054
    p = successes / total
    den = 1 + z * z / total
    c = (p + z * z / (2 * total)) / den
    h = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / den
    return max(0.0, c - h), min(1.0, c + h)


def closed_form(name: str, cfg: Thm1Config, ps: float) -> dict | None:
    """Expected (clean, robust) accuracy of a provided learner over (phi, S, test point), or None
    where there is none (k-NN with k > 1).  Derivations: see theory.hypercube_robustness; for
    unseen patterns a learner's output is independent of phi(p), which is a fair coin."""
    reach = cfg.eps >= cfg.delta   # x_d' = 0 reachable (clip never removes 0: delta < 1)
    if name == "oracle":
        return {"clean": 1.0, "robust": 1.0}
    if name == "linear":
        return {"clean": 1.0, "robust": 0.0 if reach else 1.0}
    if name in ("bayes", "1nn") or (name == "memoriser" and cfg.fallback in ("coin", "constant")):
        v = 0.5 + 0.5 * ps
        return {"clean": v, "robust": v}
    if name == "memoriser":  # sign_xd fallback
        return {"clean": 1.0, "robust": ps if reach else 1.0}
    return None


def _trial_counts(cfg: Thm1Config, t: int) -> dict:
    """Integer outcome counts of trial ``t``: per learner (clean, robust, zero-attack) correct
    counts, and how many test patterns were seen in training."""
    fam = HypercubeFamily(d=cfg.d, delta=cfg.delta, phi_key=derive_key(cfg.seed, TAG_PHI, t))
    train = fam.sample(cfg.n, derive_key(cfg.seed, TAG_TRAIN, t))
    test = fam.sample(cfg.test_size, derive_key(cfg.seed, TAG_TEST, t))
    hamming = (HammingIndex(train, kmax=max(1, cfg.k))
               if {"1nn", "knn"} & set(cfg.learners) else None)
    ctx = LearnerContext(family=fam, coin_key=derive_key(cfg.seed, TAG_COIN, t), k=cfg.k,
                         fallback=cfg.fallback, hamming=hamming)
    out = {}
    for name in cfg.learners:
        ev = evaluate(make_learner(name, ctx).fit(train), test, cfg.eps, clip=cfg.clip)
        out[name] = (int(ev.clean.sum()), int(ev.robust.sum()), int(ev.zero_attack.sum()))
    uniq, _, _ = train_table(train)
    no_labels = np.zeros(uniq.size, np.int8)
    out["_seen"] = int(lookup_patterns(uniq, no_labels, test.patterns)[0].sum())
    return out


def _interval(per_trial: np.ndarray, successes: int, total: int, trials: int):
    if trials >= 2:
        m, lo, hi = mean_ci95(per_trial)
        return m, [lo, hi]
    lo, hi = wilson_ci95(successes, total)
    return successes / total, [lo, hi]


def run_trials(cfg: Thm1Config, *, progress_desc: str | None = None) -> dict:
    """Run ``cfg.trials`` trials and summarise them (JSON-ready dict, no provenance)."""
    trials = range(cfg.trials)
    if progress_desc is not None:   # the bar costs an import; the short single run goes without
        from plumbing.progress import progress

        trials = progress(trials, total=cfg.trials, desc=progress_desc)
    rows = [_trial_counts(cfg, t) for t in trials]
    m, T = cfg.test_size, cfg.trials
    ps = p_seen(cfg.n, cfg.d)
    bound = robust_accuracy_bound(cfg.n, cfg.d)
    applies = cfg.eps >= cfg.delta
    seen = np.array([r["_seen"] for r in rows], dtype=np.float64) / m
    seen_mean, seen_ci = _interval(seen, int(seen.sum() * m), m * T, T)
    learners = []
    for name in cfg.learners:
        c = np.array([r[name] for r in rows], dtype=np.int64)  # (T, 3)
        acc = c / m
        clean, clean_ci = _interval(acc[:, 0], int(c[:, 0].sum()), m * T, T)
        rob, rob_ci = _interval(acc[:, 1], int(c[:, 1].sum()), m * T, T)
        zero, zero_ci = _interval(acc[:, 2], int(c[:, 2].sum()), m * T, T)
        role = learner_role(name)
        cf = closed_form(name, cfg, ps)
        verdict, vinfo = _verdict(role, clean, robust_accuracy_bound_tight(cfg.n, cfg.d), applies,
                                  acc[:, 1])
        learners.append({
            "name": name,
            "role": role,
            "clean_accuracy": clean,
            "clean_accuracy_ci95": clean_ci,
            "robust_accuracy": rob,
            "robust_accuracy_ci95": rob_ci,
            "zero_attack_accuracy": zero,
            "zero_attack_accuracy_ci95": zero_ci,
            "closed_form_robust_accuracy": None if cf is None else cf["robust"],
            "closed_form_clean_accuracy": None if cf is None else cf["clean"],
            "robust_accuracy_per_trial": acc[:, 1].tolist(),
            "verdict": verdict,
            "verdict_p_value": None if vinfo is None else vinfo["p_value"],
        })
    return {
        "theorem": "P&L Theorem 1 (No Free Robustness), Section 3 and supplementary Section 7",
        "n": cfg.n, "d": cfg.d, "delta": cfg.delta, "eps": cfg.eps, "trials": T,
        "test_size": m, "seed": cfg.seed, "k": cfg.k, "memoriser_fallback": cfg.fallback,
        "clip_to_domain": cfg.clip, "ties": "prediction 0 (sign(0)) scored as an error",
        "bound": bound, "bound_applies": applies,
        "bound_formula": ("1/2 + n/2^d (robust accuracy at eps >= delta, any learner, "
                          "in expectation)"),
        "bound_tight": robust_accuracy_bound_tight(cfg.n, cfg.d),
        "bound_tight_formula": "1/2 + P(seen)/2 (attained by the Bayes-robust learner)",
        "verdict_method": (f"one-sided Student-t test over the per-trial robust accuracies of "
                           f"H0: E[robust acc] <= 1/2 + P(seen)/2, a row fails at p < "
                           f"{THM1_VERDICT_ALPHA:g} (nominal false-alarm rate per row); "
                           f"no verdict with 1 trial"),
        "theorem_threshold": THM1_ROBUST_ACC_BOUND if cfg.d == dimension_for(cfg.n) else None,
        "p_seen": ps, "p_seen_measured": seen_mean, "p_seen_measured_ci95": seen_ci,
        "ci_method": ("student-t over trials" if T >= 2
                      else "Wilson over the single trial's test points"),
        "learners": learners,
    }


THM1_VERDICT_ALPHA = 0.001
"""Nominal false-alarm rate of one row's bound verdict (one-sided test, learner exactly at the
attained bound)."""


def bound_verdict(per_trial, bound: float, alpha: float = THM1_VERDICT_ALPHA) -> tuple[str, dict]:
    """Test H0: E[robust accuracy] <= ``bound`` (an expectation over phi, S and the test point)
    from the per-trial means, which are i.i.d. unbiased estimates of it (each trial draws fresh
    phi, S and test points): one-sided one-sample Student-t test (scipy.stats.ttest_1samp),
    FAIL when its p-value is below ``alpha``. The false-alarm rate is ``alpha`` for a learner
    exactly at the bound (nominal: the t-test assumes roughly normal per-trial means; each is an
    average over test points) and smaller for a learner below it. One trial gives no verdict: the
    spread over (phi, S) cannot be estimated from one draw. Per-trial means all equal: decided by
    the mean alone. Returns (verdict text, {"p_value", "mean", "trials", "alpha"})."""
    from scipy import stats

    v = np.asarray(per_trial, dtype=np.float64)
    info = {"mean": float(v.mean()), "trials": int(v.size), "alpha": alpha, "p_value": None}
    if v.size < 2:
        return "no verdict (1 trial; needs >= 2 for the expectation over phi and S)", info
    if float(np.ptp(v)) == 0.0:
        p = 0.0 if v[0] > bound else 1.0
    else:
        p = float(stats.ttest_1samp(v, bound, alternative="greater").pvalue)
    info["p_value"] = p
    if p < alpha:
        return f"FAIL > bound (p = {p:.2g} < {alpha:g})", info
    return f"PASS <= bound (p = {p:.2g})", info


def _verdict(role: str, clean: float, bound_tight: float, applies: bool, per_trial) -> tuple[str, dict | None]:
    """Verdict of one learner's row. Bullet 1 (robust accuracy 1) and bullet 2 (clean accuracy 1)
    hold for every draw, so they are checked exactly; the bound of bullet 3 is on an expectation
    and is tested against the attained bound 1/2 + P(seen)/2 (<= 1/2 + n/2^d) by
    :func:`bound_verdict`."""
    if role == "bullet1":
        rob = float(np.mean(per_trial))
        return ("PASS bullet 1 (robust acc = 1)" if rob == 1.0
                else "FAIL bullet 1 (robust acc < 1)"), None
    parts, info = [], None
    if role == "bullet2":
        parts.append("bullet 2 " + ("PASS" if clean == 1.0 else "FAIL"))
    if not applies:
        parts.append("bound n/a (eps < delta)")
    else:
        text, info = bound_verdict(per_trial, bound_tight)
        parts.append(text)
    return "; ".join(parts), info


@dataclass(frozen=True)
class SweepConfig:
    """Robust accuracy against n at a fixed d (default 12), n from << 2^(d-1) to >> 2^(d-1)."""
    base: Thm1Config
    ns: tuple[int, ...] = field(default=())

    def __post_init__(self):
        if not isinstance(self.base, Thm1Config):
            raise TypeError("base must be a Thm1Config")
        ns = tuple(self.ns) or default_sweep_ns(self.base.d)
        object.__setattr__(self, "ns", tuple(check_int("n", v, min_value=1) for v in ns))


def default_sweep_ns(d: int) -> tuple[int, ...]:
    """Powers of two from 2^(d-1)/2^6 to 2^(d-1)*2^4 (at least 1)."""
    lo, hi = max(0, d - 1 - 6), d - 1 + 4
    return tuple(2 ** e for e in range(lo, hi + 1))


def run_sweep(cfg: SweepConfig, checkpoint=None) -> dict:
    """One :func:`run_trials` per n at the fixed d.  With ``checkpoint`` (a path), each finished
    point is saved atomically and a rerun with the same settings resumes after the last one."""
    from dataclasses import asdict, replace
    from pathlib import Path

    from plumbing.io import atomic_write_json, read_json

    key = {"base": {k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in asdict(cfg.base).items() if k != "n"}, "ns": list(cfg.ns)}
    done: list[dict] = []
    if checkpoint is not None and Path(checkpoint).is_file():
        state = read_json(checkpoint)
        if state.get("key") == key:
            done = state["points"]
    for n in cfg.ns[len(done):]:
        done.append(run_trials(replace(cfg.base, n=n), progress_desc=f"sweep n={n}"))
        if checkpoint is not None:
            atomic_write_json(checkpoint, {"key": key, "points": done})
    b = cfg.base
    return {
        "theorem": "P&L Theorem 1 (No Free Robustness): robust accuracy against n at fixed d",
        "mode": "sweep", "d": b.d, "delta": b.delta, "eps": b.eps, "trials": b.trials,
        "test_size": b.test_size, "seed": b.seed, "k": b.k, "learners_requested": list(b.learners),
        "n_patterns": 2 ** (b.d - 1), "points": done,
    }
