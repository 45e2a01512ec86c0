"""Every constant taken from the two papers, in one place, with the reference beside it.

P&L = Prach & Lampert, "Intriguing Properties of Robust Classification" (shared/papers/000_*.txt).
YRZSC = Yang, Rashtchian, Zhang, Salakhutdinov, Chaudhuri, "A Closer Look at Accuracy vs.
Robustness", NeurIPS 2020 (shared/papers/001_*.txt).

These are *parameters* of constructions and experiments. Numbers the papers *report* as results
never live here: they belong to ``paper_checks`` as the claimed column.
"""
from __future__ import annotations

import math

# --- P&L Theorem 1 (Section 3, supplementary Section 7) -------------------------------------
THM1_EXTRA_DIMS = 7            # d = ceil(log2 n) + 7                       (Proof Sketch 1)
THM1_ROBUST_ACC_BOUND = 0.51   # "robust accuracy less than 51%"            (Theorem 1, bullet 3)

# --- P&L Theorem 2 (Section 3, supplementary Section 8) -------------------------------------
THM2_SAMPLE_FACTOR = 37        # n >= 37 * ceil(1/delta)^d                  (Theorem 2)
THM2_TARGET_ROBUST_ACC = 0.99  # "at least 99%"                             (Theorem 2)

# --- P&L certification (Section 2) -----------------------------------------------------------
CRA_MARGIN_FACTOR = math.sqrt(2.0)  # margin > sqrt(2) * eps for a 1-Lipschitz model   (Eq. 3)
EPS_L2_DEFAULT = 36 / 255           # default l2 radius "common in the literature"      (Section 2)
EPS_L2_RADII = (36 / 255, 72 / 255, 108 / 255, 1.0)  # radii reported beside 36/255    (Tables, Sec. 4)

# --- P&L experiments (Section 4.1) -----------------------------------------------------------
SGD_MOMENTUM = 0.9             # SGD with Nesterov momentum 0.9             (Section 4.1)
BATCH_SIZE = 256               # batch size 256                             (Section 4.1)
RANDOM_CROP_PADDING = 4        # random crops (size 4)                      (Section 4.1)
RANDOM_ERASE_SIZE = 2          # erase a 2x2 patch                          (Section 4.1)
LIPSCHITZ_BASE_WIDTH = 64      # zero-concatenate channels to 64            (Section 4.1)
SIMPLECONVNET_TEMPERATURE = 1 / 8  # cross-entropy temperature 1/8          (Section 4.1)
ROBUST_OVERFIT_OFFSET = math.sqrt(2.0)  # offset sqrt(2), no augmentation  (Section 4.3)
CIFAR10_INTRINSIC_DIM_REFERENCE = 28  # d* ~ 28 for CIFAR-10 (reference only) (Section 12)

# --- YRZSC (Sections 3-5, Appendix A) --------------------------------------------------------
YANG_EPS_LINF = {"mnist": 0.1, "cifar10": 0.031, "svhn": 0.031, "restricted_imagenet": 0.005}
YANG_PGD_STEPS = 10            # PGD-10                                     (Section 5)
YANG_PGD_STEP_DIVISOR = 5      # step size eps/5 (our reading of the setup; see deep/attacks)
MNIST_L2_EPS_LARGE = 1.58     # MNIST l2 radius common in the 1-Lipschitz literature (issues 4, 5; not in P&L text)
SPIRAL_T_MAX = 4.33 * math.pi  # x ~ U[0, 4.33 pi]                          (Appendix A.0.1)
SPIRAL_NOISE_MAX = 0.75        # noise ~ U[0, 0.75]                         (Appendix A.0.1)
