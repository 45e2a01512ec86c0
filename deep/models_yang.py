"""Networks of YRZSC (Yang et al., "A Closer Look at Accuracy vs. Robustness"), Appendix A.

* :class:`CNN1` - the "smaller" MNIST network of Table 2: two 3x3 convolutions (32, 64 channels)
  followed by two fully connected layers (128 hidden units), the PyTorch MNIST example the paper
  cites (Appendix A, footnote 2). That example (as of 2020) and the YRZSC authors' copy carry
  ``Dropout2d(0.25)`` after the convolutions (whole feature maps are dropped) and dropout 0.5 after
  the first fully connected layer (``Dropout2d`` on a (batch, 128) tensor drops single entries,
  i.e. ordinary dropout); this is the default (``dropout=None``).
* :class:`CNN2` - the "larger" MNIST network of Table 2: four 3x3 convolutions (32, 32, 64, 64) with
  two max-pools followed by three fully connected layers (200, 200, classes), the TRADES
  ``SmallCNN`` the paper cites (footnote 3), with dropout 0.5 after the first fully connected layer
  by default.
* :class:`WideResNet` - WRN-depth-width (Zagoruyko & Komodakis) used for SVHN and CIFAR-10
  (WRN-40-10 in Table 5), configurable depth, width and dropout (Table 4: 0.5 on SVHN, 0.2 on
  CIFAR-10), with an optional per-channel mean subtraction as its first layer.

``dropout`` everywhere: ``None`` keeps the architecture's own rates, a number in [0, 1) sets every
dropout site to that rate (0 removes dropout). Inputs are images in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plumbing.validation import check_choice, check_float, check_int

MODELS = ("cnn1", "cnn2", "wrn")


def _rate(dropout: float | None, default: float) -> float:
    if dropout is None:
        return default
    return check_float("dropout", dropout, low=0.0, high=1.0, high_open=True)


def _conv_out(size: int, kernel: int = 3) -> int:
    return size - kernel + 1


class CNN1(nn.Module):
    """YRZSC CNN1 (Appendix A): conv3x3(32)-ReLU-conv3x3(64)-ReLU-maxpool2-channel dropout
    (``Dropout2d``)-FC(128)-ReLU-dropout-FC(classes). For 28x28 MNIST the flattened feature has
    64*12*12 = 9216 entries.

    Note: the authors' copy of this network omits the ReLU after the second convolution; we keep
    the ReLU of the PyTorch example the paper cites.
    """

    def __init__(self, n_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 dropout: float | None = None):
        super().__init__()
        check_int("n_classes", n_classes, min_value=2)
        check_int("in_channels", in_channels, min_value=1)
        check_int("image_size", image_size, min_value=6)
        p_conv, p_fc = _rate(dropout, 0.25), _rate(dropout, 0.5)
        side = _conv_out(_conv_out(image_size)) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout2d(p_conv), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(64 * side * side, 128), nn.ReLU(), nn.Dropout(p_fc),
            nn.Linear(128, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CNN2(nn.Module):
    """YRZSC CNN2 (Appendix A, TRADES SmallCNN): conv(32)-conv(32)-pool-conv(64)-conv(64)-pool,
    then FC(200)-ReLU-dropout-FC(200)-ReLU-FC(classes). Kaiming-normal convolutions and a
    zero-initialised last layer, as in the cited network."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 dropout: float | None = None):
        super().__init__()
        check_int("n_classes", n_classes, min_value=2)
        check_int("in_channels", in_channels, min_value=1)
        check_int("image_size", image_size, min_value=14)
        p = _rate(dropout, 0.5)
        side = (_conv_out(_conv_out(_conv_out(_conv_out(image_size)) // 2))) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(64 * side * side, 200), nn.ReLU(), nn.Dropout(p),
            nn.Linear(200, 200), nn.ReLU(),
            nn.Linear(200, n_classes))
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.classifier[-1].weight)
        nn.init.zeros_(self.classifier[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MeanSubtract(nn.Module):
    """x - mean (per channel): a 1-Lipschitz first layer, so attacks work in [0, 1] space."""

    def __init__(self, mean):
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.register_buffer("mean", m)

    def forward(self, x):
        return x - self.mean


class _WideBlock(nn.Module):
    """Pre-activation wide residual block: BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3 + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)
                         if (c_in != c_out or stride != 1) else None)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(self.drop(torch.relu(self.bn2(o))))
        return o + skip


class WideResNet(nn.Module):
    """WRN-``depth``-``width`` (depth = 6n + 4): three groups of n wide blocks with 16w, 32w, 64w
    channels, strides 1, 2, 2; global average pooling and a linear classifier. WRN-40-10 is the
    SVHN/CIFAR-10 network of YRZSC Table 5; ``dropout`` inside the blocks as in Table 4."""

    def __init__(self, depth: int = 40, width: int = 10, n_classes: int = 10, in_channels: int = 3,
                 dropout: float | None = None, mean=None):
        super().__init__()
        check_int("depth", depth, min_value=10)
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 (10, 16, 22, 28, 34, 40, ...), got {depth}")
        check_int("width", width, min_value=1)
        check_int("n_classes", n_classes, min_value=2)
        check_int("in_channels", in_channels, min_value=1)
        p = _rate(dropout, 0.0)
        n = (depth - 4) // 6
        chans = [16, 16 * width, 32 * width, 64 * width]
        layers: list[nn.Module] = []
        if mean is not None:
            layers.append(MeanSubtract(mean))
        layers.append(nn.Conv2d(in_channels, chans[0], 3, 1, 1, bias=False))
        c_in = chans[0]
        for g, stride in zip(range(3), (1, 2, 2)):
            for b in range(n):
                layers.append(_WideBlock(c_in, chans[g + 1], stride if b == 0 else 1, p))
                c_in = chans[g + 1]
        layers += [nn.BatchNorm2d(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(self.body(x))


@dataclass
class ModelConfig:
    """Validated choice of a YRZSC network: ``name`` in cnn1|cnn2|wrn plus its input shape."""
    name: str = "cnn1"
    n_classes: int = 10
    in_channels: int = 1
    image_size: int = 28
    dropout: float | None = None
    depth: int = 40          # WRN only
    width: int = 10          # WRN only
    mean: tuple | None = None  # WRN only: per-channel mean subtracted first

    def __post_init__(self):
        check_choice("model", self.name, MODELS)
        check_int("n_classes", self.n_classes, min_value=2)
        check_int("in_channels", self.in_channels, min_value=1)
        check_int("image_size", self.image_size, min_value=6)
        if self.dropout is not None:
            check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        check_int("depth", self.depth, min_value=10)
        check_int("width", self.width, min_value=1)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network named by ``cfg`` (chosen by exact name)."""
    if cfg.name == "cnn1":
        return CNN1(cfg.n_classes, cfg.in_channels, cfg.image_size, cfg.dropout)
    if cfg.name == "cnn2":
        return CNN2(cfg.n_classes, cfg.in_channels, cfg.image_size, cfg.dropout)
    return WideResNet(cfg.depth, cfg.width, cfg.n_classes, cfg.in_channels, cfg.dropout, cfg.mean)
