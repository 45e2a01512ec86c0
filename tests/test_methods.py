"""Training objectives of YRZSC Sec. 5.1 / App. A.0.2 (deep.methods) and the networks of App. A
(deep.models_yang)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from deep.methods import (METHODS, MethodConfig, gr_penalty, input_gradient, llr_delta, llr_terms,
                          make_loss, parse_method_spec, per_example_loss)
from deep.models_yang import CNN1, CNN2, ModelConfig, WideResNet, build_model
from deep.trainer import TrainConfig, fit


def _toy_data(n=96, classes=3, side=6, seed=0):
    """Class c images: Bernoulli-ish pattern with mean intensity depending on c, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    base = (y.float() + 0.5) / classes
    x = (base.view(-1, 1, 1, 1) + 0.15 * torch.randn(n, 1, side, side, generator=g)).clamp(0, 1)
    return x, y


def _mlp(side=6, classes=3, dropout=0.0, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(side * side, 16), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, classes))
    return nn.Sequential(*layers).to(dtype)


# ---- each method trains ---------------------------------------------------------------------

SPECS = ["natural", "gr", "llr", "at", "rst:2", "trades:6"]


@pytest.mark.parametrize("spec", SPECS)
def test_one_tiny_epoch_lowers_the_methods_own_loss(spec):
    x, y = _toy_data()
    model = _mlp(dropout=0.1)
    cfg = parse_method_spec(spec, eps=0.05, steps=3)
    loss_fn = make_loss(cfg)

    def full_loss():
        torch.manual_seed(123)          # same attack starts and dropout masks before and after
        model.train()
        return float(loss_fn(model, x, y).detach())

    before = full_loss()
    hist = fit(model, loss_fn, x, y, TrainConfig(epochs=1, batch_size=16, lr=0.02, optimizer="adam",
                                                 schedule="constant", seed=0))
    after = full_loss()
    assert len(hist) == 1
    assert after < before - 1e-3, (spec, before, after)


def test_cnn1_with_dropout_lowers_its_trades_loss():
    """CNN1 keeps dropout (YRZSC App. A); one epoch of TRADES must lower its TRADES loss measured
    under the same masks and attack starts before and after (was: only 'the loss is finite')."""
    x, y = _toy_data(n=16, classes=2, side=8)
    torch.manual_seed(0)
    model = CNN1(n_classes=2, image_size=8, dropout=0.3)
    loss_fn = make_loss(parse_method_spec("trades:1", eps=0.05, steps=2))

    def full_loss():
        torch.manual_seed(7)
        model.train()
        return float(loss_fn(model, x, y).detach())

    before = full_loss()
    hist = fit(model, loss_fn, x, y, TrainConfig(epochs=1, batch_size=8, lr=0.01, optimizer="adam",
                                                 schedule="constant", seed=0))
    assert len(hist) == 1
    assert full_loss() < before - 1e-3


# ---- input gradients (GR and LLR) -----------------------------------------------------------

def _central_fd_grad(model, x, y, h=1e-6):
    g = torch.zeros_like(x)
    flat = x.reshape(len(x), -1)
    for j in range(flat.shape[1]):
        e = torch.zeros_like(flat)
        e[:, j] = h
        lp = per_example_loss(model, (flat + e).view_as(x), y)
        lm = per_example_loss(model, (flat - e).view_as(x), y)
        g.reshape(len(x), -1)[:, j] = (lp - lm) / (2 * h)
    return g


def test_input_gradient_matches_central_differences_and_is_nonzero():
    x, y = _toy_data(n=5, side=3)
    x, model = x.double(), _mlp(side=3, dtype=torch.float64)
    model.eval()
    _, g = input_gradient(model, x, y)
    fd = _central_fd_grad(model, x, y)
    assert g.flatten(1).norm(dim=1).min() > 1e-3          # never the all-zero gradient
    torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-9)


def test_gr_penalty_approximates_squared_gradient_norm():
    """Finlay & Oberman: ((L(x + h d) - L(x)) / h)^2 -> ||grad_x L||_2^2 as h -> 0."""
    x, y = _toy_data(n=6, side=3)
    x, model = x.double(), _mlp(side=3, dtype=torch.float64)
    model.eval()
    _, g = input_gradient(model, x, y)
    exact = g.flatten(1).norm(dim=1) ** 2
    _, pen = gr_penalty(model, x, y, h=1e-6)
    assert float(exact.min()) > 1e-6
    torch.testing.assert_close(pen, exact, rtol=1e-4, atol=0.0)
    _, pen_coarse = gr_penalty(model, x, y, h=0.5)      # finite h differs: the check can fail
    assert not torch.allclose(pen_coarse, exact, rtol=1e-4)


def _same_mask_reference(model, x, y, state):
    """(losses, ||grad_x L||^2) of one forward pass whose dropout masks come from RNG ``state``."""
    torch.set_rng_state(state)
    xg = x.detach().clone().requires_grad_(True)
    losses = per_example_loss(model, xg, y)
    (g,) = torch.autograd.grad(losses.sum(), xg)
    return losses.detach(), g.flatten(1).norm(dim=1) ** 2


@pytest.mark.parametrize("net", ["mlp_dropout_0.5", "cnn1"])
def test_gr_penalty_is_squared_gradient_norm_of_the_same_dropout_mask(net):
    """In train mode with dropout, the GR penalty must be ||grad_x L||^2 of the loss it returns
    (same dropout mask: the one drawn from the RNG state at the call). The old code took the
    direction d from another mask, so the penalty was (grad L_B . d_A)^2, 0.2-0.4 of it."""
    if net == "cnn1":
        x, y = _toy_data(n=16, side=8)
        torch.manual_seed(0)
        model = CNN1(n_classes=3, image_size=8).double()
    else:
        x, y = _toy_data(n=16, side=6)
        model = _mlp(dropout=0.5, dtype=torch.float64)
    x = x.double()
    model.train()
    torch.manual_seed(1)
    state = torch.get_rng_state()
    loss_x, pen = gr_penalty(model, x, y, h=1e-7)
    ref_loss, ref_sq = _same_mask_reference(model, x, y, state)
    keep = ref_sq > 1e-6                       # ratio well defined (all rows in practice)
    assert int(keep.sum()) >= 12
    ratio = pen.detach()[keep] / ref_sq[keep]
    assert float((ratio - 1).abs().max()) < 1e-4, ratio
    torch.testing.assert_close(loss_x.detach(), ref_loss, rtol=1e-12, atol=1e-12)
    # the penalty is differentiable w.r.t. the parameters (it is trained on)
    grads = torch.autograd.grad(pen.sum(), [p for p in model.parameters()], allow_unused=True)
    assert sum(float(g.norm()) for g in grads if g is not None) > 0


def test_trades_kl_compares_clean_and_adversarial_under_one_dropout_mask():
    """TRADES' KL(f(x) || f(x')) measures the change from x to x'; with x' = x (up to 1e-12) it
    must vanish in train mode with dropout. Two forward passes with independent masks gave a KL
    of O(0.1) even at x' = x. (KL = loss(beta=1) - loss(beta=0) under the same seed.)"""
    x, y = _toy_data(n=16, side=6)
    model = _mlp(dropout=0.5, dtype=torch.float64)
    x = x.double()
    model.train()

    def loss(beta):
        torch.manual_seed(5)
        return float(make_loss(MethodConfig("trades", weight=beta, eps=1e-12, steps=1))(model, x, y).detach())

    kl = loss(1.0) - loss(0.0)
    assert abs(kl) < 1e-9, kl
    # the mask is still random: another seed gives another clean loss
    torch.manual_seed(6)
    other = float(make_loss(MethodConfig("trades", weight=0.0, eps=1e-12, steps=1))(model, x, y).detach())
    assert abs(other - loss(0.0)) > 1e-6


def test_llr_terms_share_one_dropout_mask():
    """gamma = |L(x + delta) - L(x) - delta . grad_x L| with L, grad_x L and L(x + delta) from one
    dropout mask (drawn after the eval-mode search for delta): a replay reproduces it exactly."""
    x, y = _toy_data(n=8, side=4)
    model = _mlp(side=4, dropout=0.5, dtype=torch.float64)
    x = x.double()
    cfg = MethodConfig("llr", eps=0.1, llr_steps=2)
    model.train()
    torch.manual_seed(3)
    t = llr_terms(model, x, y, cfg)
    torch.manual_seed(3)
    model.eval()
    _, g0 = input_gradient(model, x, y)
    delta = llr_delta(model, x, y, g0, cfg.eps, cfg.llr_steps, cfg.llr_step_size)
    model.train()
    state = torch.get_rng_state()
    loss_x, grad = input_gradient(model, x, y)
    torch.set_rng_state(state)
    loss_d = per_example_loss(model, x + delta, y).detach()
    dot = (delta.flatten(1) * grad.flatten(1)).sum(1)
    torch.testing.assert_close(t["gamma"].detach(), (loss_d - loss_x - dot).abs(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(t["grad_dot"].detach(), dot.abs(), rtol=1e-10, atol=1e-12)
    # with a mask drawn independently for L(x + delta) gamma would differ by O(0.1)
    loss_other = per_example_loss(model, x + delta, y).detach()
    assert float((loss_other - loss_d).abs().max()) > 1e-3


def test_llr_terms_use_the_true_input_gradient_and_backpropagate():
    x, y = _toy_data(n=6, side=3)
    x, model = x.double(), _mlp(side=3, dtype=torch.float64)
    model.eval()
    cfg = MethodConfig("llr", eps=0.1, llr_steps=5)
    torch.manual_seed(0)
    t = llr_terms(model, x, y, cfg)
    # recompute |delta^T grad| with the finite-difference gradient at the same delta
    torch.manual_seed(0)
    _, g0 = input_gradient(model, x, y)
    delta = llr_delta(model, x, y, g0, cfg.eps, cfg.llr_steps, cfg.llr_step_size)
    fd = _central_fd_grad(model, x, y)
    expected = (delta.flatten(1) * fd.flatten(1)).sum(1).abs()
    assert float(expected.detach().min()) > 1e-6        # the public code's term is always 0
    torch.testing.assert_close(t["grad_dot"].detach(), expected, rtol=1e-5, atol=1e-9)
    # the mu term reaches the parameters (double back-propagation through grad_x L)
    grads = torch.autograd.grad(t["grad_dot"].sum(), list(model.parameters()))
    assert sum(float(g.norm()) for g in grads) > 1e-6


def test_llr_delta_stays_in_ball_and_box_and_ascends():
    x, y = _toy_data(n=12, side=4)
    model = _mlp(side=4, dtype=torch.float64)
    x = x.double()
    _, g0 = input_gradient(model, x, y)
    delta = llr_delta(model, x, y, g0, eps=0.1, steps=8, step_size=0.03)
    assert float(delta.abs().max()) <= 0.1 + 1e-12
    assert float((x + delta).min()) >= 0 and float((x + delta).max()) <= 1

    def gval(d):
        with torch.no_grad():
            base = per_example_loss(model, x, y)
            return (per_example_loss(model, x + d, y) - base - (d.flatten(1) * g0.flatten(1)).sum(1)).abs()

    gen = torch.Generator().manual_seed(1)
    rand = [((x + 0.1 * (2 * torch.rand(x.shape, generator=gen, dtype=x.dtype) - 1)).clamp(0, 1) - x)
            for _ in range(10)]
    assert float(gval(delta).mean()) > max(float(gval(r).mean()) for r in rand)


# ---- registry and configuration -------------------------------------------------------------

def test_spec_parsing_is_exact():
    c = parse_method_spec("trades:6")
    assert (c.name, c.weight, c.spec, c.label) == ("trades", 6.0, "trades:6", "TRADES(β=6)")
    assert parse_method_spec("rst:2").label == "RST(λ=2)"
    assert parse_method_spec("AT").spec == "at" and parse_method_spec("at").weight is None
    assert parse_method_spec("trades").weight == 6.0
    for bad in ("strades:6", "trade", "tradesx:6", "trades6", "", "foo:1"):
        with pytest.raises(ValueError, match="method"):
            parse_method_spec(bad)
    for bad in ("trades:abc", "trades:", "trades:nan", "rst:inf"):
        with pytest.raises(ValueError):
            parse_method_spec(bad)
    with pytest.raises(TypeError):
        parse_method_spec(6)


def test_registry_rejects_unknown_names_and_bad_parameters():
    with pytest.raises(ValueError, match="method must be one of"):
        MethodConfig("tradez")
    with pytest.raises(ValueError, match="method must be one of"):
        make_loss("madry")
    with pytest.raises(TypeError):
        make_loss(3.0)
    with pytest.raises(ValueError, match="takes no parameter"):
        MethodConfig("at", weight=1.0)
    with pytest.raises(ValueError, match="takes no parameter"):
        parse_method_spec("natural:1")
    with pytest.raises(ValueError, match="weight"):
        MethodConfig("trades", weight=-1.0)
    with pytest.raises(ValueError, match="eps"):
        MethodConfig("at", eps=0.0)
    with pytest.raises(ValueError, match="steps"):
        MethodConfig("at", steps=0)
    with pytest.raises(TypeError, match="steps"):
        MethodConfig("at", steps=2.5)
    with pytest.raises(ValueError, match="gr_h"):
        MethodConfig("gr", gr_h=0.0)
    with pytest.raises(ValueError, match="step_size"):
        MethodConfig("at", step_size=-0.1)
    assert MethodConfig("at", eps=0.1).step_size == pytest.approx(0.02)   # Table 5: eps/5
    assert set(METHODS) == {"natural", "gr", "llr", "at", "rst", "trades"}


# ---- networks (Appendix A) ------------------------------------------------------------------

def test_networks_match_appendix_a_shapes():
    cnn1 = CNN1()
    assert cnn1.classifier[0].in_features == 9216 and cnn1.classifier[-1].out_features == 10
    assert sum(isinstance(m, nn.Conv2d) for m in cnn1.modules()) == 2
    assert sum(isinstance(m, nn.Linear) for m in cnn1.modules()) == 2
    cnn2 = CNN2()
    assert sum(isinstance(m, nn.Conv2d) for m in cnn2.modules()) == 4
    assert sum(isinstance(m, nn.Linear) for m in cnn2.modules()) == 3
    assert cnn2.classifier[0].in_features == 1024
    x = torch.rand(2, 1, 28, 28)
    assert cnn1(x).shape == (2, 10) and cnn2(x).shape == (2, 10)
    wrn = WideResNet(depth=10, width=1, mean=(0.5, 0.5, 0.5))
    assert wrn(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in WideResNet(depth=16, width=2).modules()) == 1 + 12 + 3


def test_dropout_option_and_validation():
    rates = lambda m: sorted(d.p for d in m.modules()                                # noqa: E731
                             if isinstance(d, nn.modules.dropout._DropoutNd))
    assert rates(CNN1()) == [0.25, 0.5] and rates(CNN2()) == [0.5]
    assert rates(CNN1(dropout=0.2)) == [0.2, 0.2] and rates(CNN2(dropout=0.0)) == [0.0]
    assert rates(WideResNet(depth=10, width=1, dropout=0.3)) == [0.3, 0.3, 0.3]
    with pytest.raises(ValueError, match="dropout"):
        CNN1(dropout=1.0)
    with pytest.raises(ValueError, match="depth"):
        WideResNet(depth=12)
    with pytest.raises(ValueError, match="model"):
        ModelConfig(name="resnet")
    assert isinstance(build_model(ModelConfig("cnn2")), CNN2)


def test_fit_refuses_numpy_arrays_naming_the_parameter():
    import numpy as np
    x, y = _toy_data(n=8)
    model = _mlp()
    cfg = TrainConfig(epochs=1, batch_size=4)
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor"):
        fit(model, make_loss("natural"), x.numpy(), y, cfg)
    with pytest.raises(TypeError, match=r"^y must be a torch.Tensor"):
        fit(model, make_loss("natural"), x, np.asarray(y), cfg)


# ---- protocol of the YRZSC authors' code ----------------------------------------------------

def test_gr_defaults_are_the_authors_step_and_weight():
    """GR: h = 1 and beta = 1/2 in Appendix A.0.2's formula (the authors' lambda = 1 on
    sum (dl)^2 / 2 with the tulip step 1); the old defaults were h = 0.01, beta = 1."""
    cfg = MethodConfig("gr")
    assert (cfg.gr_h, cfg.weight, cfg.spec) == (1.0, 0.5, "gr:0.5")
    x, y = _toy_data(n=8, side=4)
    x, model = x.double(), _mlp(side=4, dtype=torch.float64)
    model.eval()
    xg = x.clone().requires_grad_(True)
    losses = per_example_loss(model, xg, y)
    (g,) = torch.autograd.grad(losses.sum(), xg)
    d = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    dl = per_example_loss(model, x + 1.0 * d, y) - losses.detach()
    expect = losses.detach().mean() + 0.5 * (dl ** 2).mean()
    got = make_loss(cfg)(model, x, y)
    torch.testing.assert_close(got.detach(), expect.detach(), rtol=1e-12, atol=1e-12)


def test_at_and_rst_attack_in_train_mode_with_dropout():
    """AT / RST: the inner PGD runs with the model as it is during training (train mode, dropout
    on), as the authors' code; the old code switched to eval mode for the attack."""
    from deep.attacks import pgd

    x, y = _toy_data(n=16, side=6)
    model = _mlp(dropout=0.5)
    model.train()
    cfg = MethodConfig("at", eps=0.1, steps=3)
    torch.manual_seed(11)
    got = make_loss(cfg)(model, x, y).detach()
    torch.manual_seed(11)
    xa = pgd(model, x, y, 0.1, steps=3, step_size=cfg.step_size, eval_model=False)
    expect = torch.nn.functional.cross_entropy(model(xa), y).detach()
    assert torch.equal(got, expect)
    torch.manual_seed(11)
    xa_eval = pgd(model, x, y, 0.1, steps=3, step_size=cfg.step_size)
    assert not torch.equal(xa_eval, xa)
    rst = MethodConfig("rst", weight=2.0, eps=0.1, steps=3)
    torch.manual_seed(12)
    got = make_loss(rst)(model, x, y).detach()
    torch.manual_seed(12)
    xa = pgd(model, x, y, 0.1, steps=3, step_size=rst.step_size, eval_model=False)
    ce = torch.nn.functional.cross_entropy
    expect = (ce(model(x), y) + 2.0 * ce(model(xa), y)).detach()
    assert torch.equal(got, expect)


def test_trades_inner_attack_is_eval_mode_from_the_trades_start():
    """TRADES: inner PGD in eval mode from x + 0.001 N(0, 1) (TRADES' and the authors' code);
    the old code started uniformly in the whole ball."""
    from deep.methods import inner_attack

    seen = []

    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp(dropout=0.5)

        def forward(self, z):
            seen.append((z.detach().clone(), self.training))
            return self.net(z)

    x, y = _toy_data(n=32, side=6)
    model = Rec().train()
    inner_attack(model, x, y, MethodConfig("trades", eps=0.1, steps=2), loss="kl")
    assert all(not training for _, training in seen)
    start = seen[1][0] - x
    assert float(start.abs().max()) < 0.006 and 0.0009 < float(start.std()) < 0.0011
    assert model.training


def test_cnn1_drops_whole_feature_maps_after_the_convolutions():
    """CNN1's first dropout is ``Dropout2d`` (the PyTorch example as cited and the authors' copy):
    in train mode each of the 64 feature maps is kept or zeroed as a whole."""
    torch.manual_seed(0)
    model = CNN1()
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    assert isinstance(drops[0], nn.Dropout2d) and drops[0].p == 0.25
    model.train()
    feats = model.features[:-1](torch.rand(4, 1, 28, 28))      # before Flatten: (4, 64, 12, 12)
    zero_maps = (feats == 0).flatten(2).all(dim=2)
    partly = (feats == 0).flatten(2).any(dim=2) & ~zero_maps
    assert 0.1 < float(zero_maps.float().mean()) < 0.45       # about 1/4 of the maps dropped
    pre = model.features[:-2](torch.rand(4, 1, 28, 28))
    assert float((pre > 0).float().mean()) > 0.1
    assert not bool(partly[zero_maps].any())
