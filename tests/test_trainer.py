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


# ---- several processes (torchrun / DistributedDataParallel) ----------------------------------

def _ddp_problem():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(101, 6, generator=g)          # 101 = 6 batches of 16 + one of 5 (2 + 3)
    y = (x[:, 0] - x[:, 2] > 0).long()
    return x, y


def _ddp_model():
    torch.manual_seed(2)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2))


def _noise(xb, gen):
    """A random augmentation drawn from the trainer's generator."""
    return xb + 0.1 * torch.randn(xb.shape, generator=gen)


def _adv_loss(model, xb, yb):
    """Adversarial-training shape (deep.methods RST/TRADES): an input gradient, then two
    forward passes of the (DDP-wrapped) model contributing to one loss."""
    xa = xb.clone().requires_grad_(True)
    g, = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xa), yb), xa)
    xa = (xb + 0.1 * g.sign()).detach()
    return _loss(model, xb, yb) + 0.5 * _loss(model, xa, yb)


_DDP_CFG = dict(epochs=3, batch_size=16, lr=0.3, seed=4)


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        x, y = _ddp_problem()
        model = _ddp_model()
        hist = fit(model, _adv_loss, x, y, TrainConfig(**_DDP_CFG), augment=_noise,
                   checkpoint=f"{out_dir}/ck.pt")
        torch.save({"state": model.state_dict(), "loss": [h["train_loss"] for h in hist]},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_equals_one_process(tmp_path):
    """2 processes on the CPU (gloo): each trains on half of every global batch of 16 (the last,
    uneven batch of 5: 2 + 3), with an adversarial-training-shaped loss; the parameters equal
    one process's up to reduction order (1e-5),
    the epoch losses agree, both ranks hold the same model, and rank 0 wrote the checkpoint."""
    import torch.multiprocessing as mp

    x, y = _ddp_problem()
    ref = _ddp_model()
    ref_hist = fit(ref, _adv_loss, x, y, TrainConfig(**_DDP_CFG), augment=_noise)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    moved = 0.0
    start = _ddp_model().state_dict()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=0, atol=1e-5)
        assert torch.equal(r0["state"][k], r1["state"][k])
        moved = max(moved, float((v - start[k]).abs().max()))
    assert moved > 0.05                                    # training really changed the weights
    assert r0["loss"] == pytest.approx([h["train_loss"] for h in ref_hist], abs=1e-5)
    ck = torch.load(tmp_path / "ck.pt", weights_only=False)
    assert ck["epoch"] == _DDP_CFG["epochs"] - 1


def test_ddp_rejects_batch_smaller_than_world(monkeypatch):
    import deep.trainer as tr

    monkeypatch.setattr(tr, "distributed_context", lambda model, device: (0, 4, model))
    x, y = _ddp_problem()
    with pytest.raises(ValueError, match="batch_size"):
        fit(_ddp_model(), _loss, x[:99], y[:99], TrainConfig(epochs=1, batch_size=16))
