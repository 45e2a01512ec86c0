"""python -m simulate.no_free_robustness: P&L Theorem 1 (No Free Robustness), Section 3 and
supplementary Section 7, as a Monte Carlo with exact worst-case robust accuracy.

Default run: n = 1e4 training points, d = ceil(log2 n) + 7, delta = 0.1, eps = delta.  Prints, per
learner, clean accuracy, exact robust accuracy (mean and 95% interval over trials), accuracy under
the proof's attack x_d := 0, the closed form where one exists, and a verdict against the bound
1/2 + P(seen)/2 <= 1/2 + n/2^d (a one-sided t-test over trials; one trial gives no verdict).
--sweep prints robust accuracy against n at a fixed d (default 12), from
n << 2^(d-1) to n >> 2^(d-1), showing where robust learning starts.

    python -m simulate.no_free_robustness [--n 1e4] [--trials 20] [--json PATH [--force]]
    python -m simulate.no_free_robustness --sweep [--d 12] [--checkpoint PATH] [--json PATH]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from plumbing.cli import (OneLineArgumentParser, UsageError, add_force_arg, csv_list, float_range,
                           int_sci, run_main)
from plumbing.sweep import add_engine_args, check_engine_args
from simulate.sweeps import THM1, thm1_sweep_configs, thm1_sweep_result

RESUMABLE = ("interrupted; with --sweep --checkpoint, rerun the same command to resume after the last "
             "finished n; otherwise nothing was saved: rerun it to start again")
PROG = "python -m simulate.no_free_robustness"
SWEEP_DEFAULT_D = 12


BUILTIN_LEARNERS = "oracle,linear,memoriser,1nn,knn,bayes"


def _check_learners(names: list[str]) -> None:
    """Unknown names are reported here (after parsing, so bad flags fail before numba loads)."""
    from theory.hypercube_learners import learner_names

    allowed = learner_names()
    for nm in names:
        if nm not in allowed:
            raise UsageError(f"--learners: unknown learner {nm!r}; allowed: {', '.join(allowed)}")


def build_parser() -> OneLineArgumentParser:
    """The argument parser; it imports nothing heavy, so bad input fails fast."""
    ap = OneLineArgumentParser(prog=PROG, description=__doc__)
    ap.add_argument("--n", type=int_sci(1, "--n"), default=None,
                    help="training-set size, integer >= 1, e.g. 1e4 (default 1e4)")
    ap.add_argument("--delta", type=float_range(0.0, 1.0, low_open=True, high_open=True,
                                                name="--delta"), default=0.1,
                    help="scale of the non-robust feature x_d = delta*y, in (0, 1) (default 0.1)")
    ap.add_argument("--eps", type=float_range(0.0, 1.0, high_open=True, name="--eps"),
                    default=None, help="l2 radius in [0, 1) (default: delta, the theorem's radius)")
    ap.add_argument("--trials", type=int_sci(1, "--trials"), default=20,
                    help="independent draws of (phi, S, test set), >= 1 (default 20)")
    ap.add_argument("--test-size", type=int_sci(1, "--test-size"), default=2000,
                    help="test points per trial, >= 1 (default 2000)")
    ap.add_argument("--learners", type=csv_list(str, "--learners"), default=None,
                    help=f"comma-separated learner names (default: {BUILTIN_LEARNERS})")
    ap.add_argument("--k", type=int_sci(1, "--k"), default=5,
                    help="k of the knn learner (default 5)")
    ap.add_argument("--fallback", default="sign_xd",
                    help="memoriser's prediction on unseen patterns: sign_xd, constant or coin "
                         "(default sign_xd)")
    ap.add_argument("--d", type=int_sci(2, "--d"), default=None,
                    help="dimension in [2, 64] (default: ceil(log2 n) + 7; with --sweep: 12)")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="seed, >= 0 (default 0)")
    ap.add_argument("--json", metavar="PATH",
                    help="write the results (with provenance) as JSON (default: not written)")
    ap.add_argument("--sweep", action="store_true",
                    help="robust accuracy against n at a fixed d instead of one n")
    ap.add_argument("--sweep-n", type=csv_list(int_sci(1, "--sweep-n"), "--sweep-n"), default=None,
                    help="n values of the sweep (default: powers of 2 from 2^(d-7) to 2^(d+3))")
    ap.add_argument("--checkpoint", metavar="PATH",
                    help="with --sweep: a folder; each finished n is saved there (one JSON per n) "
                         "and a rerun resumes from it (default: none)")
    add_force_arg(ap)
    add_engine_args(ap)
    return ap


def _fmt(x, width=7, digits=4) -> str:
    return "-".rjust(width) if x is None else f"{x:.{digits}f}".rjust(width)


def format_table(res: dict) -> str:
    """The single-n table (learner, clean acc, robust acc mean + 95% CI, bound, verdict)."""
    from theory.constants import THM1_EXTRA_DIMS

    n, d = res["n"], res["d"]
    dnote = (f"ceil(log2 n) + {THM1_EXTRA_DIMS} = {d}" if res["theorem_threshold"] is not None
             else f"{d} (from --d)")
    lines = [
        "P&L Theorem 1 (No Free Robustness)",
        f"n = {n}, d = {dnote}, delta = {res['delta']:g}, eps = {res['eps']:g}, "
        f"{res['trials']} trials x {res['test_size']} test points, seed {res['seed']}",
        f"P(test pattern seen) = 1-(1-2^-(d-1))^n = {res['p_seen']:.5f}   measured "
        f"{res['p_seen_measured']:.5f} [{res['p_seen_measured_ci95'][0]:.5f}, "
        f"{res['p_seen_measured_ci95'][1]:.5f}]",
    ]
    if res["bound_applies"]:
        chain = (f"any learner: E[robust acc] <= 1/2 + P(seen)/2 = {res['bound_tight']:.5f}"
                 f" <= 1/2 + n/2^d = {res['bound']:.5f}")
        if res["theorem_threshold"] is not None:
            chain += f" <= 1/2 + 1/128 < {res['theorem_threshold']}"
        lines.append(chain)
    else:
        lines.append(f"eps < delta: the bound 1/2 + n/2^d = {res['bound']:.5f} does not apply "
                     "(x_d cannot be erased)")
    lines.append("")
    hdr = (f"{'learner':10s} {'role':9s} {'clean':>7s} {'robust':>7s} {'95% CI':>17s} "
           f"{'x_d:=0':>7s} {'closed':>7s} {'1/2+P/2':>7s}  verdict")
    lines += [hdr, "-" * (len(hdr) + 24)]
    for row in res["learners"]:
        lo, hi = row["robust_accuracy_ci95"]
        role = {"bullet1": "bullet 1", "bullet2": "bullet 2"}.get(row["role"], "learner")
        bound = (res["bound_tight"] if (res["bound_applies"] and row["role"] != "bullet1")
                 else None)
        lines.append(f"{row['name']:10s} {role:9s} {_fmt(row['clean_accuracy'])} "
                     f"{_fmt(row['robust_accuracy'])} [{lo:.4f}, {hi:.4f}] "
                     f"{_fmt(row['zero_attack_accuracy'])} "
                     f"{_fmt(row['closed_form_robust_accuracy'])} {_fmt(bound)}  {row['verdict']}")
    lines += ["",
              "robust = exact worst case over the l2 ball of radius eps (domain [-1,1]^d; a "
              "prediction sign(0) = 0 counts as an error);",
              "x_d:=0 = the proof's weaker attack; closed = expected robust accuracy in closed "
              f"form; 95% CI: {res['ci_method']}.",
              "The bound is on the expectation over (phi, S, test point); the verdict tests it "
              "against the attained bound 1/2 + P(seen)/2:",
              f"  {res['verdict_method']}."]
    return "\n".join(lines)


def format_sweep(res: dict) -> str:
    names = res["learners_requested"]
    lines = [f"P&L Theorem 1: robust accuracy against n at fixed d = {res['d']} "
             f"(2^(d-1) = {res['n_patterns']} robust patterns), delta = {res['delta']:g}, "
             f"eps = {res['eps']:g}, {res['trials']} trials x {res['test_size']} test points", ""]
    hdr = (f"{'n':>8s} {'n/2^(d-1)':>9s} {'P(seen)':>7s} {'1/2+P/2':>7s} {'1/2+n/2^d':>9s} "
           + " ".join(f"{nm:>9s}" for nm in names))
    lines += [hdr, "-" * len(hdr)]
    for pt in res["points"]:
        accs = {r["name"]: r["robust_accuracy"] for r in pt["learners"]}
        lines.append(f"{pt['n']:8d} {pt['n'] / res['n_patterns']:9.3g} {pt['p_seen']:7.4f} "
                     f"{pt['bound_tight']:7.4f} {pt['bound']:9.4f} "
                     + " ".join(f"{accs[nm]:9.4f}" for nm in names))
    lines += ["", "columns after the bounds: mean exact robust accuracy per learner; robust "
              "learning starts once n is comparable to 2^(d-1)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.d is not None and args.d > 64:
        raise UsageError(f"--d must be an integer in [2, 64], got {args.d}")
    if args.sweep and args.n is not None:
        raise UsageError("--n is not used with --sweep; give the n values with --sweep-n")
    if not args.sweep and (args.sweep_n is not None or args.checkpoint is not None):
        raise UsageError("--sweep-n and --checkpoint need --sweep")
    engine = check_engine_args(args)
    if engine["engine"] != "local" and not args.sweep:
        raise UsageError("--engine ray runs sweeps; add --sweep")
    if args.checkpoint is not None and Path(args.checkpoint).is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: must be a folder (one JSON per n), "
                         "not a file")
    from plumbing.io import check_output_dir, check_output_file
    from plumbing.memory import check_fits, no_free_robustness_bytes

    check_output_file(args.json, "--json", force=args.force)
    check_output_dir(args.checkpoint, "--checkpoint")
    n_max = max(args.sweep_n) if args.sweep and args.sweep_n else (
        10_000 if args.n is None else args.n)
    if args.sweep and not args.sweep_n:   # default sweep: up to 2^(d+3)
        n_max = 2 ** ((SWEEP_DEFAULT_D if args.d is None else args.d) + 3)
    check_fits(no_free_robustness_bytes(n_max, args.test_size),
               f"--{'sweep-n' if args.sweep else 'n'} {n_max} with --test-size {args.test_size}",
               "lower --n or --test-size (trials run one after another and do not add memory)")
    from theory.hypercube_simulation import DEFAULT_LEARNERS, Thm1Config, run_trials
    from plumbing.sweep import run_sweep
    from plumbing.io import atomic_write_json, provenance

    args.learners = list(DEFAULT_LEARNERS) if args.learners is None else args.learners
    _check_learners(args.learners)
    t0 = time.perf_counter()
    if args.sweep:
        d = SWEEP_DEFAULT_D if args.d is None else args.d
        base = Thm1Config(n=1, delta=args.delta, eps=args.eps, trials=args.trials,
                          test_size=args.test_size, learners=tuple(args.learners), seed=args.seed,
                          k=args.k, fallback=args.fallback, d=d)
        points = run_sweep(THM1, thm1_sweep_configs(base, args.sweep_n), state_dir=args.checkpoint,
                           desc="sweep", **engine)
        res = thm1_sweep_result(base, points)
        text = format_sweep(res)
    else:
        cfg = Thm1Config(n=10_000 if args.n is None else args.n, delta=args.delta, eps=args.eps,
                         trials=args.trials, test_size=args.test_size,
                         learners=tuple(args.learners), seed=args.seed, k=args.k,
                         fallback=args.fallback, d=args.d)
        res = run_trials(cfg)
        text = format_table(res)
    wall = time.perf_counter() - t0
    print(text)
    print(f"\n({wall:.2f} s)")
    if args.json:
        res["provenance"] = provenance(seed=args.seed, wall_seconds=wall, device="cpu")
        atomic_write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
