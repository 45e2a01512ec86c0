"""Models of P&L Section 4.1 / Table 2 / Section 4.5, built from validated dataclass configs.

Registry: ``build_model(name, config=None)`` with ``name`` in :data:`MODEL_NAMES`:

* ``simple_convnet`` -- SimpleConvNet (Sec. 4.1, P&L ref. [30]): 8 convolutions, each with
  BatchNorm and ReLU, MaxPooling for downsampling and as global pooling, one linear layer.
  Layout as in ref. [30]: conv(in -> w); 3 blocks of [conv(c -> c), conv(c -> 2c) + MaxPool 2];
  conv(8w -> 8w); global max pool; linear (no bias). Widths 64-128-256-512 for ``base_width=64``.
  Trained with temperature-1/8 cross-entropy (``deep.losses.TemperatureCrossEntropy``).
* ``lipschitz_convnet`` / ``aol_convnet`` / ``cpl_convnet`` -- the 1-Lipschitz ConvNet
  (Sec. 4.1, P&L ref. [33]): mean subtraction, zero padding to a multiple of ``2^blocks``
  (MNIST 28 -> 32, Sec. 9.3), zero-channel concatenation to ``base_width``, then ``blocks``
  blocks, each of ``convs_per_block`` 1-Lipschitz convolutions ``c -> c`` (AOL or CPL), each
  followed by MaxMin, and a downsampling that keeps the first ``c/2`` channels and applies
  PixelUnshuffle(2) (-> ``2c`` channels at half the resolution; the layout of ref. [33]'s
  public implementation, which also uses 1x1 kernels once the map is 2x2 or smaller -- we do
  the same), then a 1-Lipschitz linear head (flatten + square AOLLinear + first ``num_classes``
  outputs, :class:`deep.layers.LipschitzHead`). CPL layers
  use ``cpl_inner_factor * c`` inner channels. Identity initialisation (Table 2); for CPL,
  whose identity part is built in, "identity" means an orthogonal ``W``.
* ``aol_mlp`` -- the 8-layer AOL MLP (Sec. 4.1): mean subtraction, zero padding (MNIST -> 32),
  flatten, ``depth - 1`` AOL dense layers of ``width`` with MaxMin, and an AOL dense output layer
  (square, keeping the first ``num_classes`` outputs: :class:`deep.layers.LipschitzHead`).
  ``width`` defaults to the (padded) input dimension: 3072 for CIFAR-10, 1024 for MNIST (Sec. 9.3).
* ``unified_convnet`` -- the single architecture of Sec. 4.5: the AOL ConvNet with orthogonal
  initialisation (Sec. 10: "a ConvNet using AOL with orthogonal initialization (as used in
  Section 4.5)"); its one output normalisation is folded into the loss
  (``deep.losses.SelfNormalizingCrossEntropy``), so the model itself stays 1-Lipschitz.
  "Orthogonal" is read as *delta-orthogonal* (a random orthogonal channel matrix at the kernel
  centre, so every convolution is an orthogonal map; ``init="delta_orthogonal"``). The
  alternative reading, ``torch.nn.init.orthogonal_`` on the flattened kernel (``init=
  "orthogonal"``), makes each AOL convolution strongly contracting after rescaling: at base
  width 16 on CIFAR-10 shapes the initial network has local Lipschitz constant ~6e-10, and on a
  512-image MNIST run (6 epochs, Self-Normalizing CE t=1) it did not learn at all (10% test
  accuracy) where delta-orthogonal reached 75% accuracy / 43% CRA at 36/255.

Every model starts with :class:`deep.layers.MeanSubtract` (zeros until :func:`set_input_mean`),
so inputs are images in [0, 1] of shape (N, C, H, W). ``model.lipschitz`` is True for the
1-Lipschitz models (the certificate of ``deep.certify`` applies to them) and False otherwise.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from deep.layers import (INITS, AOLConv2d, AOLLinear, CPLConv2d, FirstChannels, LipschitzHead,
                         MaxMin, MeanSubtract, PixelUnshuffle, ZeroChannelConcat)
from theory.constants import (AOL_MLP_DEPTH, LIPSCHITZ_BASE_WIDTH, LIPSCHITZ_CONV_BLOCKS,
                              LIPSCHITZ_CONVS_PER_BLOCK, MNIST_PADDED_SIZE)
from plumbing.validation import check_choice, check_int

CONV_TYPES = ("aol", "cpl")


def _check_input(cfg) -> None:
    check_int("in_channels", cfg.in_channels, min_value=1)
    check_int("input_size", cfg.input_size, min_value=1)
    check_int("num_classes", cfg.num_classes, min_value=2)


def _padded_size(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _pad_layer(size: int, padded: int) -> nn.Module:
    """Zero padding (an isometry) from ``size`` to ``padded`` (MNIST 28 -> 32, Sec. 9.3)."""
    if padded == size:
        return nn.Identity()
    lo = (padded - size) // 2
    hi = padded - size - lo
    return nn.ZeroPad2d((lo, hi, lo, hi))


# ----------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------
@dataclass
class SimpleConvNetConfig:
    """SimpleConvNet (P&L Sec. 4.1). ``base_width`` channels in the stem, doubled per block."""
    in_channels: int = 3
    input_size: int = 32
    num_classes: int = 10
    base_width: int = 64
    kernel_size: int = 3

    def __post_init__(self):
        _check_input(self)
        check_int("base_width", self.base_width, min_value=1)
        check_int("kernel_size", self.kernel_size, min_value=1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.input_size < 8:
            raise ValueError(f"input_size must be >= 8 (three 2x2 max-poolings), got {self.input_size}")


@dataclass
class LipschitzConvNetConfig:
    """1-Lipschitz ConvNet (P&L Sec. 4.1, ref. [33]); ``conv`` is "aol" or "cpl"."""
    in_channels: int = 3
    input_size: int = 32
    num_classes: int = 10
    base_width: int = LIPSCHITZ_BASE_WIDTH
    blocks: int = LIPSCHITZ_CONV_BLOCKS
    convs_per_block: int = LIPSCHITZ_CONVS_PER_BLOCK
    kernel_size: int = 3
    conv: str = "aol"
    init: str = "identity"
    cpl_inner_factor: int = 1   # CPL inner channels = factor * channels

    def __post_init__(self):
        _check_input(self)
        check_int("base_width", self.base_width, min_value=2)
        if self.base_width % 2:
            raise ValueError(f"base_width must be even (MaxMin pairs channels), got {self.base_width}")
        if self.base_width < self.in_channels:
            raise ValueError(f"base_width must be >= in_channels={self.in_channels}, got {self.base_width}")
        check_int("blocks", self.blocks, min_value=1, max_value=8)
        check_int("convs_per_block", self.convs_per_block, min_value=1)
        check_int("kernel_size", self.kernel_size, min_value=1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        check_choice("conv", self.conv, CONV_TYPES)
        check_choice("init", self.init, INITS)
        check_int("cpl_inner_factor", self.cpl_inner_factor, min_value=1)

    @property
    def padded_size(self) -> int:
        return _padded_size(self.input_size, 2 ** self.blocks)


@dataclass
class AOLConvNetConfig(LipschitzConvNetConfig):
    conv: str = "aol"


@dataclass
class CPLConvNetConfig(LipschitzConvNetConfig):
    conv: str = "cpl"


@dataclass
class UnifiedConvNetConfig(LipschitzConvNetConfig):
    """P&L Sec. 4.5: the AOL ConvNet with (delta-)orthogonal initialisation (module docstring)."""
    conv: str = "aol"
    init: str = "delta_orthogonal"


@dataclass
class AOLMLPConfig:
    """8-layer AOL MLP (P&L Sec. 4.1). ``width=None`` -> the padded input dimension."""
    in_channels: int = 3
    input_size: int = 32
    num_classes: int = 10
    depth: int = AOL_MLP_DEPTH
    width: int | None = None
    pad_to: int | None = MNIST_PADDED_SIZE    # zero-pad the image to this size first (MNIST 28 -> 32); None: no padding
    init: str = "identity"

    def __post_init__(self):
        _check_input(self)
        check_int("depth", self.depth, min_value=1)
        if self.pad_to is not None:
            check_int("pad_to", self.pad_to, min_value=1)
        if self.width is not None:
            check_int("width", self.width, min_value=2)
            if self.width % 2:
                raise ValueError(f"width must be even (MaxMin pairs features), got {self.width}")
        elif self.depth > 1 and self.input_dim % 2:
            raise ValueError(f"width defaults to the input dimension {self.input_dim}, which is odd; "
                             f"set an even width")
        check_choice("init", self.init, INITS)

    @property
    def padded_size(self) -> int:
        return self.input_size if self.pad_to is None else max(self.pad_to, self.input_size)

    @property
    def input_dim(self) -> int:
        return self.in_channels * self.padded_size ** 2

    @property
    def hidden_width(self) -> int:
        return self.input_dim if self.width is None else self.width


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
class SimpleConvNet(nn.Module):
    """Standard (non-Lipschitz) SimpleConvNet of P&L Sec. 4.1 / Table 2 (left column)."""
    lipschitz = False

    def __init__(self, config: SimpleConvNetConfig | None = None):
        super().__init__()
        cfg = config or SimpleConvNetConfig()
        self.config = cfg
        w, k = cfg.base_width, cfg.kernel_size

        def conv(cin, cout, pool=False):
            mods = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)]
            if pool:
                mods.append(nn.MaxPool2d(2))
            return mods + [nn.BatchNorm2d(cout), nn.ReLU()]

        layers: list[nn.Module] = [MeanSubtract(cfg.in_channels)]
        layers += conv(cfg.in_channels, w)
        c = w
        for _ in range(3):
            layers += conv(c, c) + conv(c, 2 * c, pool=True)
            c *= 2
        layers += conv(c, c)
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c, cfg.num_classes, bias=False)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LipschitzConvNet(nn.Module):
    """1-Lipschitz ConvNet of P&L Sec. 4.1 (AOL or CPL convolutions); see module docstring."""
    lipschitz = True

    def __init__(self, config: LipschitzConvNetConfig | None = None):
        super().__init__()
        cfg = config or LipschitzConvNetConfig()
        self.config = cfg
        k = cfg.kernel_size
        size = cfg.padded_size
        layers: list[nn.Module] = [MeanSubtract(cfg.in_channels), _pad_layer(cfg.input_size, size),
                                   ZeroChannelConcat(cfg.base_width)]
        c = cfg.base_width
        for _ in range(cfg.blocks):
            kb = k if size > 2 else 1   # a 2x2 (or 1x1) map gains nothing from a 3x3 kernel
            for _ in range(cfg.convs_per_block):
                if cfg.conv == "aol":
                    layers.append(AOLConv2d(c, c, kb, init=cfg.init))
                else:
                    layers.append(CPLConv2d(c, cfg.cpl_inner_factor * c, kb,
                                            init="orthogonal" if cfg.init == "identity" else cfg.init))
                layers.append(MaxMin())
            layers += [FirstChannels(c // 2), PixelUnshuffle(2)]
            c *= 2
            size //= 2
        layers.append(LipschitzHead(c * size * size, cfg.num_classes, init=cfg.init))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AOLMLP(nn.Module):
    """8-layer 1-Lipschitz MLP with AOL dense layers and MaxMin (P&L Sec. 4.1, 4.2)."""
    lipschitz = True

    def __init__(self, config: AOLMLPConfig | None = None):
        super().__init__()
        cfg = config or AOLMLPConfig()
        self.config = cfg
        layers: list[nn.Module] = [MeanSubtract(cfg.in_channels),
                                   _pad_layer(cfg.input_size, cfg.padded_size), nn.Flatten()]
        d = cfg.input_dim
        for _ in range(cfg.depth - 1):
            layers += [AOLLinear(d, cfg.hidden_width, init=cfg.init), MaxMin()]
            d = cfg.hidden_width
        layers.append(LipschitzHead(d, cfg.num_classes, init=cfg.init))   # square AOL + first classes
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------
MODELS: dict[str, tuple[type, type]] = {
    "simple_convnet": (SimpleConvNetConfig, SimpleConvNet),
    "lipschitz_convnet": (LipschitzConvNetConfig, LipschitzConvNet),
    "aol_convnet": (AOLConvNetConfig, LipschitzConvNet),
    "cpl_convnet": (CPLConvNetConfig, LipschitzConvNet),
    "aol_mlp": (AOLMLPConfig, AOLMLP),
    "unified_convnet": (UnifiedConvNetConfig, LipschitzConvNet),
}
MODEL_NAMES = tuple(MODELS)


def make_config(name: str, **fields):
    """The config dataclass of model ``name`` with ``fields`` overriding its defaults."""
    check_choice("name", name, MODEL_NAMES)
    cls = MODELS[name][0]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} for {name}; allowed: {', '.join(sorted(known))}")
    return cls(**fields)


def build_model(name: str, config=None) -> nn.Module:
    """Model ``name`` (one of :data:`MODEL_NAMES`) from ``config``: None (defaults), a dict of
    config fields, or an instance of the model's config dataclass."""
    check_choice("name", name, MODEL_NAMES)
    cfg_cls, model_cls = MODELS[name]
    if config is None:
        config = cfg_cls()
    elif isinstance(config, dict):
        config = make_config(name, **config)
    else:
        base = LipschitzConvNetConfig if issubclass(cfg_cls, LipschitzConvNetConfig) else cfg_cls
        if not isinstance(config, base):
            raise TypeError(f"config for {name} must be a {base.__name__} or a dict, "
                            f"got {type(config).__name__}")
        fixed = {"aol_convnet": "aol", "cpl_convnet": "cpl"}.get(name)
        if fixed is not None and config.conv != fixed:
            raise ValueError(f"{name} needs config.conv == {fixed!r}, got {config.conv!r}")
    return model_cls(config)


DATASETS = ("mnist", "fashion-mnist", "cifar10", "svhn")


def dataset_name(dataset: str) -> str:
    """Canonical dataset name (one of :data:`DATASETS`, the spelling of ``plumbing.datasets``):
    case-insensitive, ``_`` accepted for ``-`` (``fashion_mnist``, ``Fashion-MNIST``) and
    ``cifar-10`` for ``cifar10``."""
    if not isinstance(dataset, str):
        raise TypeError(f"dataset must be a string, one of {', '.join(DATASETS)}; got {dataset!r}")
    key = dataset.strip().lower().replace("_", "-")
    key = {"cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)} (also fashion_mnist); "
                         f"got {dataset!r}")
    return key


def input_config(dataset: str, *, pad: bool = False) -> dict:
    """Input fields for a dataset: MNIST / Fashion-MNIST (1 x 28 x 28, or 32 with ``pad``) and
    CIFAR-10 / SVHN (3 x 32 x 32). Both ``fashion-mnist`` and ``fashion_mnist`` are accepted."""
    if dataset_name(dataset) in ("cifar10", "svhn"):
        return {"in_channels": 3, "input_size": 32, "num_classes": 10}
    return {"in_channels": 1, "input_size": 32 if pad else 28, "num_classes": 10}


def set_input_mean(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Set the model's :class:`MeanSubtract` layer to the per-channel mean of images ``x``
    (N, C, H, W) and return that mean (P&L Sec. 4.1 pre-processing)."""
    layers = [m for m in model.modules() if isinstance(m, MeanSubtract)]
    if len(layers) != 1:
        raise ValueError(f"model must contain exactly one MeanSubtract layer, found {len(layers)}")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    mean = x.double().mean(dim=(0, 2, 3)).float()
    layers[0].set_mean(mean)
    return mean
