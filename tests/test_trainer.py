"""deep.trainer: deterministic, resumable training (developers' guide: same seed, same result;
resume after interruption gives the same final metrics as an uninterrupted run)."""
from __future__ import annotations

import pytest
import torch

from deep.trainer import TrainConfig, fit


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def _model():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(16, 2))


def _loss(model, xb, yb):
    return torch.nn.functional.cross_entropy(model(xb), yb)


def test_training_lowers_loss_and_is_reproducible():
    x, y = _problem()
    cfg = TrainConfig(epochs=6, batch_size=16, lr=0.2, seed=3)
    h1 = fit(_model(), _loss, x, y, cfg)
    h2 = fit(_model(), _loss, x, y, cfg)
    assert h1[-1]["train_loss"] < h1[0]["train_loss"]
    assert [r["train_loss"] for r in h1] == [r["train_loss"] for r in h2]


def test_resume_equals_uninterrupted(tmp_path):
    x, y = _problem()
    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.2, seed=7)
    m_full = _model()
    h_full = fit(m_full, _loss, x, y, cfg)
    ck = tmp_path / "ck.pt"
    m_a = _model()
    fit(m_a, _loss, x, y, cfg, checkpoint=ck, stop_after_epochs=2)   # "interrupted" after 2 epochs
    m_b = _model()                                                     # fresh process, same command
    h_res = fit(m_b, _loss, x, y, cfg, checkpoint=ck)
    assert [r["train_loss"] for r in h_res] == [r["train_loss"] for r in h_full]
    for p, q in zip(m_full.parameters(), m_b.parameters()):
        assert torch.equal(p, q)


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="x and y must have the same length"):
        fit(_model(), _loss, torch.zeros(3, 5), torch.zeros(2, dtype=torch.long), TrainConfig())


def test_checkpoint_with_other_config_is_refused(tmp_path):
    x, y = _problem()
    ck = tmp_path / "ck.pt"
    fit(_model(), _loss, x, y, TrainConfig(epochs=2, batch_size=32, seed=0), checkpoint=ck)
    with pytest.raises(ValueError, match="different configuration"):
        fit(_model(), _loss, x, y, TrainConfig(epochs=3, batch_size=32, seed=0), checkpoint=ck)
