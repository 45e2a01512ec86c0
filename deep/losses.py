"""Loss functions of P&L Sections 4.1, 4.3 and 4.5.

All losses take raw class scores ``s`` (N, K) and integer labels (N,) and return the batch mean.

* :class:`TemperatureCrossEntropy` -- ``CE(softmax(s / T), y)``; the SimpleConvNet uses
  ``T = 1/8`` (Sec. 4.1: "Softmax with temperature 1/8 ... then CrossEntropy").
* :class:`OffsetCrossEntropy` -- ``T * CE(softmax((s - u * onehot(y)) / T), y)`` (Prach & Lampert
  2022, P&L ref. [31]); ``u = T = 0.25`` by default (Sec. 4.1), ``u = sqrt(2)`` for robust
  overfitting (Sec. 4.3). The factor ``T`` in front keeps the gradient scale independent of the
  temperature (as in the AOL paper's loss); it does not change the minimiser.
* :class:`SelfNormalizingCrossEntropy` -- Eq. (4), ``CE(softmax(s / (std(s) + t) - onehot(y)), y)``.

Reading of Eq. (4). The text conversion prints
``CrossEntropy(Softmax(s / (std(s) + t) - y), y)`` with ``s`` the score vector of one sample,
``y`` its one-hot label and ``std(s)`` "the standard deviation of s". We read it literally: the
scores are divided by ``std(s) + t`` (std over the K class scores *of each sample*, a per-sample
output normalisation), then an offset of exactly 1 is subtracted from the true class, and plain
(temperature-1, unscaled) cross-entropy is applied. Consequences, which match the paper's use:
``t = 0`` makes the loss invariant to rescaling ``s``, so no absolute margin is enforced
(accuracy-oriented, Table 3 row t=0); for ``t >> std(s)`` it approaches
``CE(softmax((s - t y) / t))``, an offset cross-entropy with offset and temperature ``t`` that
demands large absolute margins (certified-robustness-oriented). ``std`` uses the unbiased
estimator (``torch.std`` default, ``correction=1``); pass ``correction=0`` for the population
std. The gradient flows through ``std(s)`` (it is a normalisation layer folded into the loss,
Sec. 4.5); the model itself stays 1-Lipschitz and is certified on the raw scores ``s``.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from theory.constants import OFFSET_CE_OFFSET, OFFSET_CE_TEMPERATURE, SIMPLECONVNET_TEMPERATURE
from plumbing.validation import check_float, check_int


def _check_inputs(scores: torch.Tensor, labels: torch.Tensor) -> None:
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (N, K), got {tuple(scores.shape)}")
    if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"labels must have shape ({scores.shape[0]},), got {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")


class TemperatureCrossEntropy(nn.Module):
    """``CE(softmax(s / temperature), y)`` (P&L Sec. 4.1, SimpleConvNet: temperature 1/8)."""

    def __init__(self, temperature: float = SIMPLECONVNET_TEMPERATURE):
        super().__init__()
        self.temperature = check_float("temperature", temperature, low=0.0, low_open=True)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_inputs(scores, labels)
        return F.cross_entropy(scores / self.temperature, labels.long())

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"


class OffsetCrossEntropy(nn.Module):
    """``T * CE(softmax((s - offset * onehot(y)) / T), y)`` (AOL paper; P&L Sec. 4.1, 4.3).

    Driving it to zero asks for ``s_y - max_{j != y} s_j >= offset`` (plus a temperature-scaled
    slack), i.e. a margin that Eq. (3) turns into a certified radius of about ``offset / sqrt 2``.
    """

    def __init__(self, offset: float = OFFSET_CE_OFFSET, temperature: float = OFFSET_CE_TEMPERATURE):
        super().__init__()
        self.offset = check_float("offset", offset, low=0.0)
        self.temperature = check_float("temperature", temperature, low=0.0, low_open=True)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_inputs(scores, labels)
        onehot = F.one_hot(labels.long(), scores.shape[1]).to(scores.dtype)
        z = (scores - self.offset * onehot) / self.temperature
        return self.temperature * F.cross_entropy(z, labels.long())

    def extra_repr(self) -> str:
        return f"offset={self.offset:g}, temperature={self.temperature:g}"


class SelfNormalizingCrossEntropy(nn.Module):
    """Self-Normalizing CrossEntropy, P&L Eq. (4): ``CE(softmax(s / (std(s) + t) - y), y)``.

    ``t >= 0`` is the accuracy/robustness trade-off (Sec. 4.5, Table 3: t = 0 accuracy,
    t = 10 certified robustness). See the module docstring for how we read the garbled formula.
    """

    def __init__(self, t: float, *, correction: int = 1):
        super().__init__()
        self.t = check_float("t", t, low=0.0)
        self.correction = check_int("correction", correction, min_value=0, max_value=1)

    def normalized_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """``s / (std(s) + t)`` per sample (the output normalisation folded into the loss)."""
        if scores.shape[1] < 2:
            raise ValueError("SelfNormalizingCrossEntropy needs at least 2 classes")
        std = scores.std(dim=1, keepdim=True, correction=self.correction)
        denom = std + self.t
        if self.t == 0:
            denom = denom.clamp_min(torch.finfo(scores.dtype).tiny)
        return scores / denom

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_inputs(scores, labels)
        onehot = F.one_hot(labels.long(), scores.shape[1]).to(scores.dtype)
        return F.cross_entropy(self.normalized_scores(scores) - onehot, labels.long())

    def extra_repr(self) -> str:
        return f"t={self.t:g}"


def as_loss_fn(criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
    """Adapt ``criterion(scores, labels)`` to ``deep.trainer.fit``'s ``loss_fn(model, xb, yb)``."""
    def loss_fn(model, xb, yb):
        return criterion(model(xb), yb)
    return loss_fn


def default_loss(model_name: str, **kwargs) -> nn.Module:
    """The loss P&L use with each registered model (``deep.models.MODEL_NAMES``):
    SimpleConvNet -> temperature-1/8 CE; 1-Lipschitz models -> OffsetCrossEntropy(0.25, 0.25);
    the Section 4.5 model -> SelfNormalizingCrossEntropy(t) (pass ``t=``)."""
    if model_name == "simple_convnet":
        return TemperatureCrossEntropy(**kwargs)
    if model_name == "unified_convnet":
        if "t" not in kwargs:
            raise ValueError("the unified_convnet loss needs the trade-off t (Sec. 4.5), e.g. t=0 or t=10")
        return SelfNormalizingCrossEntropy(**kwargs)
    if model_name in ("aol_mlp", "lipschitz_convnet", "aol_convnet", "cpl_convnet"):
        return OffsetCrossEntropy(**kwargs)
    raise ValueError(f"model_name must be one of simple_convnet, aol_mlp, lipschitz_convnet, "
                     f"aol_convnet, cpl_convnet, unified_convnet; got {model_name!r}")
