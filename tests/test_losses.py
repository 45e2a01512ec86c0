"""Loss values against hand-computed cases (P&L Sec. 4.1, 4.3, Eq. 4)."""
from __future__ import annotations

import math

import pytest
import torch

from deep.losses import (OffsetCrossEntropy, SelfNormalizingCrossEntropy, TemperatureCrossEntropy,
                         as_loss_fn, default_loss)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_temperature_cross_entropy_hand_value():
    # scores (0.1, 0, -0.1), label 2, temperature 1/8 -> logits (0.8, 0, -0.8)
    loss = TemperatureCrossEntropy(1 / 8)(t([0.1, 0.0, -0.1]), torch.tensor([2]))
    expected = math.log(math.exp(0.8) + 1 + math.exp(-0.8)) + 0.8
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_offset_cross_entropy_hand_value():
    # scores (1, 0), label 0, offset 0.5, T 0.25: logits (2, 0); loss = 0.25 * log(1 + e^-2)
    loss = OffsetCrossEntropy(offset=0.5, temperature=0.25)(t([1.0, 0.0]), torch.tensor([0]))
    assert float(loss) == pytest.approx(0.25 * math.log1p(math.exp(-2.0)), rel=1e-12)
    # batch mean over two rows, second one with label 1: logits ((0 - 0.5)/0.25... ) hand-computed
    scores = t([1.0, 0.0], [0.0, 0.0])
    loss2 = OffsetCrossEntropy(offset=0.5, temperature=0.25)(scores, torch.tensor([0, 1]))
    second = 0.25 * math.log1p(math.exp(2.0))     # logits (0, -2), true class 1
    assert float(loss2) == pytest.approx((0.25 * math.log1p(math.exp(-2.0)) + second) / 2, rel=1e-12)


def test_offset_zero_temperature_one_is_plain_cross_entropy():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0])
    assert torch.allclose(OffsetCrossEntropy(0.0, 1.0)(s, y), torch.nn.functional.cross_entropy(s, y))


def test_self_normalizing_hand_value():
    # s = (3, 1), y = 0, t = 1: unbiased std = sqrt(2); z = (3/(1+sqrt2) - 1, 1/(1+sqrt2))
    d = 1 + math.sqrt(2)
    z0, z1 = 3 / d - 1, 1 / d
    expected = math.log(math.exp(z0) + math.exp(z1)) - z0
    loss = SelfNormalizingCrossEntropy(1.0)(t([3.0, 1.0]), torch.tensor([0]))
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    # population std (correction=0): std = 1
    z0, z1 = 3 / 2 - 1, 1 / 2
    loss0 = SelfNormalizingCrossEntropy(1.0, correction=0)(t([3.0, 1.0]), torch.tensor([0]))
    assert float(loss0) == pytest.approx(math.log(math.exp(z0) + math.exp(z1)) - z0, rel=1e-12)


def test_self_normalizing_t0_is_scale_invariant():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, 10, generator=g, dtype=torch.float64)
    y = torch.arange(6)
    f = SelfNormalizingCrossEntropy(0.0)
    assert torch.allclose(f(s, y), f(7.3 * s, y), rtol=1e-12)
    assert not torch.allclose(SelfNormalizingCrossEntropy(10.0)(s, y), SelfNormalizingCrossEntropy(10.0)(7.3 * s, y))


def test_self_normalizing_large_t_approaches_offset_ce():
    """t >> std(s): s/(std+t) - y ~ (s - t y)/t, i.e. OffsetCE with offset = temperature = t
    (without the leading factor t)."""
    g = torch.Generator().manual_seed(2)
    s = 0.01 * torch.randn(4, 10, generator=g, dtype=torch.float64)
    y = torch.tensor([1, 2, 3, 4])
    tt = 100.0
    snce = SelfNormalizingCrossEntropy(tt)(s, y)
    ox = OffsetCrossEntropy(offset=tt, temperature=tt)(s, y) / tt
    assert float(snce) == pytest.approx(float(ox), rel=1e-5)


def test_loss_gradients_push_margin_up():
    for crit in (TemperatureCrossEntropy(), OffsetCrossEntropy(), SelfNormalizingCrossEntropy(1.0)):
        s = torch.tensor([[0.3, 0.1, -0.2]], dtype=torch.float64, requires_grad=True)
        crit(s, torch.tensor([0])).backward()
        assert s.grad[0, 0] < 0 and s.grad[0, 1] > 0   # raise true score, lower the runner-up


def test_as_loss_fn_and_default_loss():
    # identity "model": scores = inputs, so the wrapped loss has the hand value of the offset CE
    # case above (scores (1, 0) label 0 and scores (0, 0) label 1, offset 0.5, T 0.25)
    model = torch.nn.Identity()
    x, y = t([1.0, 0.0], [0.0, 0.0]), torch.tensor([0, 1])
    fn = as_loss_fn(OffsetCrossEntropy(offset=0.5, temperature=0.25))
    expected = (0.25 * math.log1p(math.exp(-2.0)) + 0.25 * math.log1p(math.exp(2.0))) / 2
    assert float(fn(model, x, y)) == pytest.approx(expected, rel=1e-12)
    assert isinstance(default_loss("simple_convnet"), TemperatureCrossEntropy)
    assert default_loss("simple_convnet").temperature == 1 / 8
    ox = default_loss("cpl_convnet")
    assert (ox.offset, ox.temperature) == (0.25, 0.25)
    assert default_loss("unified_convnet", t=10.0).t == 10.0
    with pytest.raises(ValueError, match="trade-off"):
        default_loss("unified_convnet")
    with pytest.raises(ValueError, match="model_name"):
        default_loss("resnet")


@pytest.mark.parametrize("make,exc", [
    (lambda: TemperatureCrossEntropy(0.0), ValueError),
    (lambda: OffsetCrossEntropy(offset=-1.0), ValueError),
    (lambda: OffsetCrossEntropy(temperature=float("nan")), ValueError),
    (lambda: SelfNormalizingCrossEntropy(-0.5), ValueError),
    (lambda: SelfNormalizingCrossEntropy("1"), TypeError),
    (lambda: OffsetCrossEntropy()(torch.zeros(3), torch.tensor([0, 1, 2])), ValueError),
    (lambda: OffsetCrossEntropy()(torch.zeros(3, 2), torch.tensor([0, 1])), ValueError),
    (lambda: OffsetCrossEntropy()(torch.zeros(2, 2), torch.tensor([0.0, 1.0])), TypeError),
])
def test_bad_input(make, exc):
    with pytest.raises(exc):
        make()
