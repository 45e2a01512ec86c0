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
MNIST_L2_EPS_LARGE = 1.58     # MNIST l2 radius common in the 1-Lipschitz literature (not in P&L text)
SPIRAL_T_MAX = 4.33 * math.pi  # x ~ U[0, 4.33 pi]                          (Appendix A.0.1)
SPIRAL_NOISE_MAX = 0.75        # noise ~ U[0, 0.75]                         (Appendix A.0.1)
YANG_MT_STEPS = 20             # multi-targeted attack: 20 iterations per target (Appendix D.1)
YANG_LIPSCHITZ_STEPS = 10      # Eq. (3) estimate: 10 steps of size eps/5   (Section 5)
YANG_BATCH_SIZE = {"mnist": 64, "svhn": 64, "cifar10": 64}   # batch size              (Table 5)
YANG_EPOCHS = {"mnist": 160, "svhn": 60, "cifar10": 120}     # epochs                  (Appendix A, "Learning rate schedulers")
YANG_SGD_MOMENTUM = {"mnist": 0.9, "svhn": 0.0, "cifar10": 0.0}  # SGD momentum        (Appendix A setups)
YANG_DROPOUT = {"svhn": 0.5, "cifar10": 0.2}                 # dropout rates           (Section 5.3, Table 4)
YANG_POC_MNIST = {"model": "cnn2", "batch_size": 128, "epochs": 40, "lr": 1e-4, "rst_lambda": 2.0}  # (App. B, Table 7)
# --- P&L 1-Lipschitz models and losses (Sections 4.1, 4.5, 9.3; deep/models.py, deep/losses.py) ---
OFFSET_CE_OFFSET = 0.25        # OffsetCrossEntropy offset 0.25             (Section 4.1)
OFFSET_CE_TEMPERATURE = 0.25   # OffsetCrossEntropy temperature 0.25        (Section 4.1)
LIPSCHITZ_CONV_BLOCKS = 5      # "5 blocks with 3 convolutional layers"     (Section 4.1)
LIPSCHITZ_CONVS_PER_BLOCK = 3  #                                            (Section 4.1)
AOL_MLP_DEPTH = 8              # "an 8 layer MLP"                           (Section 4.1)
MNIST_LIPSCHITZ_BASE_WIDTH = 16  # 16 instead of 64 base channels on MNIST  (Section 9.3)
MNIST_MLP_WIDTH = 1024         # MLP width 1024 instead of 3072 on MNIST    (Section 9.3)
MNIST_PADDED_SIZE = 32         # MNIST zero-padded to 32x32 after mean subtraction (Section 9.3)
# --- exact 1-NN robustness (simulate.nn_exact_robustness) -----------------------------------
# l2 radii at which the exact 1-NN robust accuracy is reported on MNIST: P&L's default 36/255
# (Section 2), an intermediate 0.5 (ours, no paper value), 1.0 (P&L, radii beside 36/255) and
# the 1.58 of the 1-Lipschitz literature (MNIST_L2_EPS_LARGE). l-inf: YANG_EPS_LINF["mnist"].
NN_EXACT_L2_RADII = (EPS_L2_DEFAULT, 0.5, 1.0, MNIST_L2_EPS_LARGE)
# --- Staircase (YRZSC Appendix A "Synthetic Staircase setup"; Raghunathan et al. 2019, ref. [41];
#     distribution values from the YRZSC authors' public notebook notebooks/splines.ipynb) -----
STAIRCASE_LAMBDA = 0.1         # penalty lambda = 0.1                         (YRZSC App. A)
STAIRCASE_BETA_GR = 1e-4       # GR beta = 1e-4                               (YRZSC App. A)
STAIRCASE_GAMMA_LLR = 1e-2     # LLR: local-linearity gamma only, strength 1e-2 (YRZSC App. A)
STAIRCASE_BETA_TRADES = 6.0    # TRADES beta (deep.methods default; not stated for Staircase)
STAIRCASE_N_STAIRS = 10        # stairs 0..9                                  (authors' notebook)
STAIRCASE_EPS = 1 / 3          # perturbation radius and x-noise offset       (authors' notebook)
STAIRCASE_LABEL_NOISE = 0.1    # y = s + N(0, 0.1^2)                          (authors' notebook)
STAIRCASE_X_NOISE = 0.005      # P(x = s +- eps)                              (authors' notebook)
