"""Clean and certified robust accuracy of the distance classifier g of YRZSC Theorem 4.2 on a
finite training set (where g is exactly the 1-nearest-neighbour classifier), with the 1-NN
certificate of theory.nn_certificate (radius (b - a)/2: sound, a lower bound on the exact radius,
so the certified robust accuracy is a lower bound), at the radii the network experiments use.

    python -m simulate.distance_classifier --dataset mnist --data-root DIR [--n-test N]
        [--eps-inf 0.1] [--eps-2 0.1412,1.58] [--json PATH [--force]]

Distances are in [0, 1] pixel units (uint8 / 255).
"""
from __future__ import annotations

import sys
import time


from plumbing.cli import OneLineArgumentParser, add_force_arg, csv_list, float_range, int_sci, run_main
from theory.constants import EPS_L2_DEFAULT, MNIST_L2_EPS_LARGE, YANG_EPS_LINF
from plumbing.datasets import dataset_arg, load_splits_with_fidelity
from theory.distance_classifier import certified_accuracy
from plumbing.io import atomic_write_json, check_output_file, provenance


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog="python -m simulate.distance_classifier", description=__doc__)
    ap.add_argument("--dataset", default="mnist", metavar="NAME",
                    type=dataset_arg("mnist", "fashion-mnist", "cifar10", "svhn"),
                    help="mnist, fashion-mnist, cifar10, svhn, or imagefolder:<path> (default mnist)")
    ap.add_argument("--data-root", default=None,
                    help="data folder (default: $ROBUSTGEN_DATA, else ~/.robustgen/data)")
    ap.add_argument("--n-test", type=int_sci(1, "--n-test"), default=None,
                    help="first N test points (default: all)")
    ap.add_argument("--eps-inf", type=csv_list(float_range(0, None, name="--eps-inf"), "--eps-inf"),
                    default=[YANG_EPS_LINF["mnist"]],
                    help=f"l-inf radii in pixel units [0, 1], comma-separated (default {YANG_EPS_LINF['mnist']})")
    ap.add_argument("--eps-2", type=csv_list(float_range(0, None, name="--eps-2"), "--eps-2"),
                    default=[EPS_L2_DEFAULT, MNIST_L2_EPS_LARGE],
                    help=f"l2 radii, comma-separated (default {EPS_L2_DEFAULT:.4f},{MNIST_L2_EPS_LARGE})")
    ap.add_argument("--json", default=None, metavar="PATH",
                    help="write the results (with provenance) as JSON (default: not written)")
    add_force_arg(ap)
    args = ap.parse_args(argv)
    check_output_file(args.json, "--json", force=args.force)
    t0 = time.perf_counter()
    xtr, ytr, xte, yte, fidelity = load_splits_with_fidelity(args.dataset, args.data_root)
    print(fidelity.line())
    if args.n_test is not None:
        xte, yte = xte[: args.n_test], yte[: args.n_test]
    results = {}
    for norm, eps in (("inf", args.eps_inf), ("2", args.eps_2)):
        t = time.perf_counter()
        res = certified_accuracy(xte, yte, xtr, ytr, eps, norm, scale=255.0)
        res["seconds"] = time.perf_counter() - t
        results[norm] = res
        cert = ", ".join(f"eps={k}: {v:.4f}" for k, v in res["certified_lower_bound"].items())
        print(f"{args.dataset} 1-NN = distance classifier (Thm 4.2), l{norm}: clean "
              f"{res['clean_accuracy']:.4f}; certified robust (lower bound) {cert} "
              f"(n_test={res['n_test']}, {res['seconds']:.1f} s)")
    if args.json:
        atomic_write_json(args.json, {"dataset": args.dataset, "results": results, **fidelity.as_json(),
                                      "provenance": provenance(wall_seconds=time.perf_counter() - t0,
                                                               device="cpu")})
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m simulate.distance_classifier"))
