"""1-Lipschitz (l2) building blocks for the networks of P&L Section 4.1 and Table 2.

Every layer here is 1-Lipschitz with respect to the Euclidean norm of its (flattened) input, so a
network built only from them is 1-Lipschitz and Eq. (3) of P&L certifies it (``deep.certify``).
``deep.lipschitz_check`` and ``tests/test_layers_lipschitz.py`` verify this numerically from the
exact Jacobian rather than trusting it.

* :class:`AOLLinear`, :class:`AOLConv2d` -- Almost-Orthogonal Layers (Prach & Lampert, ECCV 2022,
  P&L ref. [31]): ``W -> W D`` with ``D_ii = (sum_j |W^T W|_ij)^(-1/2)``; for a convolution the
  entries of ``W^T W`` are the kernel's self-correlation (the kernel convolved with itself,
  summed in absolute value over all shifts and output channels, per input channel).
  Implemented as a ``torch.nn.utils.parametrize`` parametrisation of ``weight``.
* :class:`CPLConv2d` -- Convex Potential Layer (Meunier et al., ICML 2022, P&L ref. [26]):
  ``x - 2/||W||^2 W^T relu(W x + b)`` with ``||W||`` (the operator norm of the zero-padded
  convolution on the actual input size) from power iteration with a persistent vector.
* :class:`MaxMin` (Anil et al. 2019, P&L ref. [2]), :class:`ZeroChannelConcat`,
  :class:`FirstChannels`, :class:`PixelUnshuffle`, :class:`MeanSubtract`, :class:`LipschitzHead`:
  isometries, projections or 1-Lipschitz maps.

Layers take their device and dtype from the input and parameters; nothing calls ``.cuda()``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from plumbing.validation import check_choice, check_float, check_int

INITS = ("identity", "orthogonal", "delta_orthogonal", "kaiming")
_AOL_EPS = 1e-12  # added to the row sums; only makes the scale smaller, so the bound still holds


# ----------------------------------------------------------------------------------------------
# AOL rescaling (parametrisations)
# ----------------------------------------------------------------------------------------------
def aol_scale_linear(weight: torch.Tensor) -> torch.Tensor:
    """AOL scale vector ``D`` (one entry per input feature) of a dense weight (out, in):
    ``D_i = (sum_j |W^T W|_ij)^(-1/2)``. Then ``||W diag(D)||_2 <= 1`` (AOL Theorem 1)."""
    gram = weight.transpose(0, 1) @ weight
    return (gram.abs().sum(dim=1) + _AOL_EPS).rsqrt()


def aol_scale_conv(kernel: torch.Tensor) -> torch.Tensor:
    """AOL scale per input channel of a kernel (out, in, k, k).

    The Gram operator ``W^T W`` of a convolution is itself a convolution whose kernel is the
    self-correlation of ``W``: ``M[i, j, s] = sum_o sum_p W[o, i, p + s] W[o, j, p]`` for every
    shift ``s`` in ``[-(k-1), k-1]^2``. The AOL row sum of input channel ``i`` is
    ``sum_j sum_s |M[i, j, s]|`` (AOL paper, Theorem 2)."""
    k_h, k_w = kernel.shape[-2:]
    wt = kernel.transpose(0, 1)  # (in, out, k, k): a "batch" of in-channel slices
    corr = F.conv2d(wt, wt, padding=(k_h - 1, k_w - 1))  # (in, in, 2k-1, 2k-1)
    return (corr.abs().sum(dim=(1, 2, 3)) + _AOL_EPS).rsqrt()


class _AOLLinearParam(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * aol_scale_linear(weight)[None, :]


class _AOLConvParam(nn.Module):
    def forward(self, kernel: torch.Tensor) -> torch.Tensor:
        return kernel * aol_scale_conv(kernel)[None, :, None, None]


def _init_weight(weight: torch.Tensor, init: str) -> None:
    """Identity map (Table 2, 1-Lipschitz column), random orthogonal (Section 4.5) or Kaiming
    uniform. For a kernel (out, in, k, k) the identity puts an identity matrix (cropped/padded to
    out x in) at the centre tap; "orthogonal" treats the kernel as an out x (in k k) matrix
    (``torch.nn.init.orthogonal_``); "delta_orthogonal" puts a random orthogonal out x in matrix
    at the centre tap (zeros elsewhere), so the convolution -- and its AOL rescaling, which then
    is the identity -- is an orthogonal map."""
    with torch.no_grad():
        if init == "identity":
            weight.zero_()
            n = min(weight.shape[0], weight.shape[1])
            idx = torch.arange(n)
            if weight.ndim == 2:
                weight[idx, idx] = 1.0
            else:
                weight[idx, idx, weight.shape[2] // 2, weight.shape[3] // 2] = 1.0
        elif init == "orthogonal":
            nn.init.orthogonal_(weight)
        elif init == "delta_orthogonal":
            weight.zero_()
            centre = torch.empty(weight.shape[0], weight.shape[1], dtype=weight.dtype)
            nn.init.orthogonal_(centre)
            if weight.ndim == 2:
                weight.copy_(centre)
            else:
                weight[:, :, weight.shape[2] // 2, weight.shape[3] // 2] = centre
        else:
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


class AOLLinear(nn.Module):
    """Dense AOL layer ``x -> x (W D)^T + b`` (Prach & Lampert 2022); 1-Lipschitz in l2.

    ``weight`` (a parametrised attribute) returns the rescaled matrix ``W D``; the free parameter
    is ``parametrizations.weight.original``."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 init: str = "identity"):
        super().__init__()
        self.in_features = check_int("in_features", in_features, min_value=1)
        self.out_features = check_int("out_features", out_features, min_value=1)
        check_choice("init", init, INITS)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        _init_weight(self.weight, init)
        self.bias = nn.Parameter(torch.zeros(self.out_features)) if bias else None
        parametrize.register_parametrization(self, "weight", _AOLLinearParam())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _check_odd_kernel(kernel_size) -> int:
    k = check_int("kernel_size", kernel_size, min_value=1)
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd (zero 'same' padding), got {k}")
    return k


class AOLConv2d(nn.Module):
    """Convolutional AOL layer (stride 1, zero 'same' padding); 1-Lipschitz in l2.

    The bound holds for the convolution on the infinite plane; zero padding embeds the image
    isometrically and the crop back to H x W is a projection, so the padded layer is 1-Lipschitz
    too."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 init: str = "identity"):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, min_value=1)
        self.out_channels = check_int("out_channels", out_channels, min_value=1)
        self.kernel_size = _check_odd_kernel(kernel_size)
        check_choice("init", init, INITS)
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, k, k))
        _init_weight(self.weight, init)
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        parametrize.register_parametrization(self, "weight", _AOLConvParam())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.kernel_size // 2)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


# ----------------------------------------------------------------------------------------------
# Convex potential layer
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def top_eigenpair(matvec, v0: torch.Tensor, *, max_matvecs: int = 2000, tol: float = 1e-10,
                  krylov_dim: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest eigenvalue and eigenvector of a symmetric positive semi-definite operator
    (``matvec`` on flat vectors), by restarted Lanczos with full re-orthogonalisation, started
    from ``v0`` (the persistent power-iteration vector).

    Each restart runs ``krylov_dim`` Lanczos steps and restarts from the top Ritz vector (so the
    Ritz value increases monotonically); it stops when the residual ``||A q - theta q||`` is at
    most ``tol * theta``, when a restart raises ``theta`` by at most ``tol * theta``, or after
    ``max_matvecs`` products. The Ritz value never exceeds the true top eigenvalue (Rayleigh-Ritz); for the
    clustered spectra of convolutions it converges much faster than plain power iteration."""
    n = v0.numel()
    m = max(1, min(krylov_dim, n))
    q = v0.reshape(-1).clone()
    if not torch.isfinite(q).all() or float(q.norm()) == 0.0:
        q = torch.ones_like(q)
    q = q / q.norm()
    theta = theta_prev = q.new_zeros(())
    used = 0
    while used < max_matvecs:
        basis = [q]
        alphas, betas = [], []
        beta = q.new_zeros(())
        for j in range(m):
            z = matvec(basis[j])
            used += 1
            alphas.append(torch.dot(z, basis[j]))
            qs = torch.stack(basis)
            z = z - qs.T @ (qs @ z)
            z = z - qs.T @ (qs @ z)          # second pass: keeps the basis orthonormal
            beta = z.norm()
            if j == m - 1 or used >= max_matvecs or float(beta) <= 1e-13 * max(float(alphas[0].abs()), 1e-300):
                break
            betas.append(beta)
            basis.append(z / beta)
        k = len(alphas)
        t = torch.diag(torch.stack(alphas))
        if k > 1:
            off = torch.stack(betas[: k - 1])
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(t)
        theta, s = evals[-1], evecs[:, -1]
        q = torch.stack(basis[:k]).T @ s
        q = q / q.norm()
        residual = float(beta) * float(s[-1].abs())
        scale = max(float(theta), 1e-300)
        if residual <= tol * scale or k < m or float(theta - theta_prev) <= tol * scale:
            break
        theta_prev = theta
    return theta, q


class CPLConv2d(nn.Module):
    """Convex Potential Layer ``x - 2/||W||^2 W^T relu(W x + b)`` (Meunier et al. 2022).

    ``W`` is a stride-1 zero-padded convolution ``channels -> inner_channels``; ``W^T`` its
    adjoint (transposed convolution). The layer is the gradient step of a convex potential and
    is 1-Lipschitz whenever the step ``h = 2/sigma^2`` uses ``sigma >= ||W||_2`` (the Jacobian
    ``I - h W^T L W`` with ``0 <= L <= I`` has eigenvalues in ``[1 - h||W||^2, 1]``).

    ``||W||_2`` depends on the input's spatial size. Two modes:

    * training mode (NOT certified, :attr:`certified` is False): ``train_iterations`` power
      iteration steps per forward on ``W^T W`` with a persistent vector ``u`` (a buffer shaped
      like one input, created from a fixed private seed, so no global RNG is consumed), then
      ``sigma = ||W u||`` with gradient -- Meunier et al.'s cheap estimate. It is a lower bound
      of ``||W||``, so the training-mode layer can have a Lipschitz constant above 1 (about 2 at
      a fresh init). Nothing certifies a model in this mode: ``deep.certify`` and
      ``deep.lipschitz_check`` evaluate models in eval mode and refuse an uncertified layer.
    * eval mode (certified): restarted Lanczos in float64 (:func:`top_eigenpair`, started from
      ``u``) until the relative residual or gain is below ``eval_tol`` or after
      ``eval_iterations`` operator products; then ``sigma^2 = theta + ||W^T W q - theta q||``
      (Ritz value plus residual norm, times ``1 + 1e-12`` for rounding): an eigenvalue of the
      symmetric ``W^T W`` lies within the residual of ``theta``, and that eigenvalue is the top
      one unless the Krylov space misses the top eigenvector (probability zero for a random
      start). So ``sigma >= ||W||`` and the layer is 1-Lipschitz, not only up to the
      convergence error. The value is cached and reused only while the weight's VALUES equal a
      stored copy (exact ``torch.equal``; catches ``weight.data`` writes, which the version
      counter misses, ``no_grad`` in-place updates and ``load_state_dict``), for the same input
      shape, dtype and device.

    ``tests/test_layers_lipschitz.py`` compares both with the exact SVD of the convolution.
    """

    def __init__(self, channels: int, inner_channels: int, kernel_size: int, *, bias: bool = True,
                 init: str = "orthogonal", train_iterations: int = 1, eval_iterations: int = 2000,
                 eval_tol: float = 1e-8, seed: int = 0):
        super().__init__()
        self.channels = check_int("channels", channels, min_value=1)
        self.inner_channels = check_int("inner_channels", inner_channels, min_value=1)
        self.kernel_size = _check_odd_kernel(kernel_size)
        check_choice("init", init, INITS)
        self.train_iterations = check_int("train_iterations", train_iterations, min_value=1)
        self.eval_iterations = check_int("eval_iterations", eval_iterations, min_value=1)
        self.eval_tol = check_float("eval_tol", eval_tol, low=0.0, low_open=True)
        self.seed = check_int("seed", seed, min_value=0)
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(self.inner_channels, self.channels, k, k))
        if init == "identity":
            # the identity part of the map is built in (x - ...); "identity" here means a
            # delta kernel, i.e. W = [I; 0] at the centre tap.
            _init_weight(self.weight, "identity")
        else:
            _init_weight(self.weight, init)
        self.bias = nn.Parameter(torch.zeros(self.inner_channels)) if bias else None
        self.register_buffer("u", torch.empty(0))
        self._cache: tuple | None = None

    # -- operators -------------------------------------------------------------------------
    def _conv(self, x, weight):
        return F.conv2d(x, weight, padding=self.kernel_size // 2)

    def _conv_t(self, y, weight):
        return F.conv_transpose2d(y, weight, padding=self.kernel_size // 2)

    def _ensure_u(self, x: torch.Tensor) -> None:
        shape = (1,) + tuple(x.shape[1:])
        if tuple(self.u.shape) != shape:
            gen = torch.Generator().manual_seed(self.seed)
            u = torch.randn(shape, generator=gen, dtype=torch.float64)
            self.u = (u / u.norm()).to(device=x.device, dtype=self.weight.dtype)
            self._cache = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "u"
        if key in state_dict and tuple(state_dict[key].shape) != tuple(self.u.shape):
            self.u = torch.empty_like(state_dict[key], device=self.weight.device)
        self._cache = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    @property
    def certified(self) -> bool:
        """True when the forward pass is 1-Lipschitz by construction (eval mode; the
        training-mode estimate of ``||W||`` is a lower bound)."""
        return not self.training

    @torch.no_grad()
    def _power_iteration_eval(self) -> torch.Tensor:
        """Certified upper bound of ``||W||_2`` (class docstring): sqrt(theta + residual)."""
        w = self.weight.detach().double()
        shape = self.u.shape

        def gram(z: torch.Tensor) -> torch.Tensor:
            z = z.view(shape)
            return self._conv_t(self._conv(z, w), w).reshape(-1)

        lam, u = top_eigenpair(gram, self.u.double().reshape(-1), max_matvecs=self.eval_iterations,
                               tol=self.eval_tol)
        residual = (gram(u) - lam * u).norm()
        self.u.copy_(u.view(shape).to(self.u.dtype))
        upper = (lam.clamp_min(0) + residual) * (1 + 1e-12)
        return upper.sqrt()

    def _cache_valid(self) -> bool:
        if self._cache is None:
            return False
        key, snapshot, _ = self._cache
        w = self.weight.detach()
        return (key == (tuple(self.u.shape), w.dtype, w.device) and snapshot.shape == w.shape
                and torch.equal(snapshot, w))

    def spectral_norm(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """``||W||_2`` for inputs shaped like ``x`` (or the stored vector): in training mode the
        power-iteration estimate (a lower bound, differentiable), in eval mode a certified upper
        bound (cached while the weight's values are unchanged)."""
        if x is not None:
            self._ensure_u(x)
        if self.u.numel() == 0:
            raise ValueError("spectral_norm needs an input x the first time (the norm depends on "
                             "the spatial size)")
        if self.training:
            with torch.no_grad():
                u = self.u.clone()
                for _ in range(self.train_iterations):
                    u = self._conv_t(self._conv(u, self.weight), self.weight)
                    u = u / u.norm()
                self.u.copy_(u)
            # use the private copy ``u`` (not the buffer, which later forwards update in place)
            return self._conv(u, self.weight).norm()
        if not self._cache_valid():
            w = self.weight.detach()
            if not bool(torch.isfinite(w).all()):
                raise ValueError("CPLConv2d weight contains NaN or infinite values; its spectral "
                                 "norm (and the layer) is undefined")
            sigma = self._power_iteration_eval().to(w.dtype)
            self._cache = ((tuple(self.u.shape), w.dtype, w.device), w.clone(), sigma)
        return self._cache[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"CPLConv2d expects input (N, {self.channels}, H, W), got {tuple(x.shape)}")
        sigma = self.spectral_norm(x)
        h = 2.0 / (sigma * sigma)
        pre = F.conv2d(x, self.weight, self.bias, padding=self.kernel_size // 2)
        return x - h * self._conv_t(F.relu(pre), self.weight)

    def extra_repr(self) -> str:
        return f"{self.channels}, inner_channels={self.inner_channels}, kernel_size={self.kernel_size}"


# ----------------------------------------------------------------------------------------------
# Activations and structural layers (isometries / projections)
# ----------------------------------------------------------------------------------------------
class MaxMin(nn.Module):
    """MaxMin activation (Anil et al. 2019): channels (2i, 2i+1) -> (max, min). Its Jacobian is a
    permutation almost everywhere, so it is 1-Lipschitz and gradient-norm preserving."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c % 2:
            raise ValueError(f"MaxMin needs an even number of channels, got {c}")
        a, b = x.unflatten(1, (c // 2, 2)).unbind(2)
        return torch.stack((torch.maximum(a, b), torch.minimum(a, b)), dim=2).flatten(1, 2)


class ZeroChannelConcat(nn.Module):
    """Append zero channels up to ``out_channels`` (P&L Sec. 4.1: "concatenates channels with
    value 0 to the input, so that the total number of channels becomes 64"). An isometry."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = check_int("out_channels", out_channels, min_value=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c > self.out_channels:
            raise ValueError(f"input has {c} channels, more than out_channels={self.out_channels}")
        if c == self.out_channels:
            return x
        pad = x.new_zeros((x.shape[0], self.out_channels - c) + tuple(x.shape[2:]))
        return torch.cat((x, pad), dim=1)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}"


class FirstChannels(nn.Module):
    """Keep the first ``channels`` channels (a coordinate projection; 1-Lipschitz)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = check_int("channels", channels, min_value=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < self.channels:
            raise ValueError(f"input has {x.shape[1]} channels, fewer than channels={self.channels}")
        return x[:, : self.channels]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class PixelUnshuffle(nn.PixelUnshuffle):
    """Downsampling of the 1-Lipschitz ConvNet (P&L Sec. 4.1, Table 2): (C, H, W) ->
    (C r^2, H/r, W/r). A permutation of coordinates, hence an isometry."""

    def __init__(self, downscale_factor: int = 2):
        super().__init__(check_int("downscale_factor", downscale_factor, min_value=1))


class MeanSubtract(nn.Module):
    """Input layer ``x -> x - mean`` with a per-channel mean buffer (P&L Sec. 4.1: "we subtract
    the training data mean from every channel, we do not rescale"). A translation: isometric.
    Carried inside the model so attacks and certificates work in [0, 1] input space."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = check_int("channels", channels, min_value=1)
        self.register_buffer("mean", torch.zeros(self.channels))

    @torch.no_grad()
    def set_mean(self, mean) -> None:
        mean = torch.as_tensor(mean, dtype=self.mean.dtype).reshape(-1)
        if mean.numel() != self.channels:
            raise ValueError(f"mean must have {self.channels} entries, got {mean.numel()}")
        if not torch.isfinite(mean).all():
            raise ValueError("mean contains NaN or infinite values")
        self.mean.copy_(mean.to(self.mean.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} input channels, got {x.shape[1]}")
        shape = (1, self.channels) + (1,) * (x.ndim - 2)
        return x - self.mean.view(shape)


class LipschitzHead(nn.Module):
    """1-Lipschitz linear classification head: flatten, a square :class:`AOLLinear`
    (``in_features -> in_features``), then the first ``num_classes`` coordinates.

    Square rather than ``in_features -> num_classes``: an identity-initialised rectangular AOL
    matrix has all-zero columns, where the AOL scale ``(sum_j |W^T W|_ij + eps)^(-1/2)`` is
    ``eps^(-1/2)`` and multiplies the gradient of that column by ~1e6; in our runs this blew up
    the head in the first steps and the network collapsed to constant scores. The square layer
    followed by :class:`FirstChannels` (as in ref. [33]'s implementation) has no zero columns."""

    def __init__(self, in_features: int, num_classes: int, *, init: str = "identity"):
        super().__init__()
        in_features = check_int("in_features", in_features, min_value=1)
        self.num_classes = check_int("num_classes", num_classes, min_value=1, max_value=in_features)
        self.linear = AOLLinear(in_features, in_features, init=init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))[:, : self.num_classes]


def lipschitz_layer_types() -> tuple[type, ...]:
    """Layer classes of this module that are 1-Lipschitz by construction (for checks)."""
    return (AOLLinear, AOLConv2d, CPLConv2d, MaxMin, ZeroChannelConcat, FirstChannels,
            PixelUnshuffle, MeanSubtract, LipschitzHead)
