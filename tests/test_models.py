"""Models of P&L Sec. 4.1 / 4.5: shapes on MNIST and CIFAR-10 inputs, config validation, one
tiny epoch on real MNIST lowers the loss, and whole-model Lipschitz checks (exact Jacobian,
power iteration, adversarial pairs)."""
from __future__ import annotations

import pytest
import torch

from deep.data import balanced_subset, to_tensor_images
from deep.layers import AOLConv2d, CPLConv2d, PixelUnshuffle
from deep.lipschitz_check import (adversarial_lipschitz, exact_operator_norm,
                                  power_iteration_lipschitz)
from deep.losses import as_loss_fn, default_loss
from deep.models import (MODEL_NAMES, AOLMLPConfig, LipschitzConvNetConfig, SimpleConvNetConfig,
                         build_model, input_config, make_config, set_input_mean)
from deep.trainer import TrainConfig, fit

TOL = 1e-4

SMALL = {
    "simple_convnet": {"base_width": 4},
    "lipschitz_convnet": {"base_width": 4},
    "aol_convnet": {"base_width": 4},
    "cpl_convnet": {"base_width": 4},
    "unified_convnet": {"base_width": 4},
    "aol_mlp": {"width": 32, "depth": 8},
}


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("dataset,pad", [("mnist", False), ("mnist", True), ("cifar10", False)])
def test_forward_shapes(name, dataset, pad):
    cfg = {**input_config(dataset, pad=pad), **SMALL[name]}
    torch.manual_seed(0)
    model = build_model(name, cfg)
    x = torch.rand(3, cfg["in_channels"], cfg["input_size"], cfg["input_size"])
    with torch.no_grad():
        out = model.train()(x)   # train mode: CPL uses its cheap one-step power iteration
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    assert model.lipschitz == (name != "simple_convnet")


def test_lipschitz_convnet_structure_matches_section_4_1():
    cfg = make_config("cpl_convnet", **input_config("mnist"))   # defaults: the paper's sizes
    assert (cfg.base_width, cfg.blocks, cfg.convs_per_block, cfg.padded_size) == (64, 5, 3, 32)
    small = build_model("cpl_convnet", {**input_config("mnist"), "base_width": 4})
    assert sum(isinstance(m, CPLConv2d) for m in small.modules()) == 15
    aol = build_model("aol_convnet", {**input_config("cifar10"), "base_width": 4})
    # 5 blocks of 3 convs; the last block works on 2x2 maps with 1x1 kernels
    assert sum(isinstance(m, AOLConv2d) and m.kernel_size == 3 for m in aol.modules()) == 12
    assert sum(isinstance(m, AOLConv2d) and m.kernel_size == 1 for m in aol.modules()) == 3
    assert sum(isinstance(m, PixelUnshuffle) for m in aol.modules()) == 5
    assert aol.net[-1].linear.in_features == 4 * 2 ** 5   # base width doubled per block, 1x1 map
    mlp = make_config("aol_mlp", **input_config("cifar10"))
    assert mlp.hidden_width == 3072 and mlp.depth == 8   # Sec. 4.1 / 9.3 widths
    assert make_config("aol_mlp", **input_config("mnist")).hidden_width == 1024
    assert make_config("unified_convnet").init == "delta_orthogonal"
    simple = build_model("simple_convnet", {"base_width": 4})
    assert sum(isinstance(m, torch.nn.Conv2d) for m in simple.modules()) == 8
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in simple.modules()) == 8


@pytest.mark.parametrize("make,exc", [
    (lambda: build_model("resnet"), ValueError),
    (lambda: build_model("aol_mlp", SimpleConvNetConfig()), TypeError),
    (lambda: build_model("cpl_convnet", LipschitzConvNetConfig(conv="aol")), ValueError),
    (lambda: make_config("aol_mlp", widht=10), ValueError),
    (lambda: LipschitzConvNetConfig(base_width=7), ValueError),
    (lambda: LipschitzConvNetConfig(base_width=2, in_channels=3), ValueError),
    (lambda: LipschitzConvNetConfig(conv="sll"), ValueError),
    (lambda: LipschitzConvNetConfig(kernel_size=4), ValueError),
    (lambda: LipschitzConvNetConfig(blocks=0), ValueError),
    (lambda: AOLMLPConfig(width=33), ValueError),
    (lambda: AOLMLPConfig(depth=2.5), TypeError),
    (lambda: SimpleConvNetConfig(input_size=4), ValueError),
    (lambda: SimpleConvNetConfig(num_classes=1), ValueError),
    (lambda: input_config("imagenet"), ValueError),
])
def test_config_validation(make, exc):
    with pytest.raises(exc):
        make()


def test_build_model_accepts_dict_and_config_and_sets_mean():
    a = build_model("aol_convnet", {"base_width": 4, "blocks": 2, "input_size": 8, "in_channels": 1})
    assert isinstance(a.config, LipschitzConvNetConfig) and a.config.padded_size == 8
    b = build_model("lipschitz_convnet", LipschitzConvNetConfig(conv="cpl", base_width=4, blocks=1))
    assert b.config.conv == "cpl"
    x = torch.rand(5, 1, 8, 8)
    mean = set_input_mean(a, x)
    assert torch.allclose(mean, x.mean(dim=(0, 2, 3)))


# ----------------------------------------------------------------------------------------------
# one tiny epoch on real MNIST lowers the loss
# ----------------------------------------------------------------------------------------------
TRAIN = {   # (config overrides, learning rate)
    "simple_convnet": ({"base_width": 4}, 0.05),
    "aol_mlp": ({"width": 64, "depth": 4}, 0.1),
    "aol_convnet": ({"base_width": 4, "blocks": 2, "convs_per_block": 1}, 0.1),
    "cpl_convnet": ({"base_width": 4, "blocks": 2, "convs_per_block": 1}, 0.05),
    "unified_convnet": ({"base_width": 4, "blocks": 2, "convs_per_block": 1}, 0.05),
}


@pytest.fixture(scope="module")
def tiny_mnist(mnist_train):
    images, labels = mnist_train
    idx = balanced_subset(labels, 256, seed=0)
    return to_tensor_images(images[idx]), torch.from_numpy(labels[idx]).long()


@pytest.mark.parametrize("name", sorted(TRAIN))
def test_one_tiny_epoch_lowers_loss(name, tiny_mnist):
    x, y = tiny_mnist
    overrides, lr = TRAIN[name]
    torch.manual_seed(0)
    model = build_model(name, {**input_config("mnist"), **overrides})
    set_input_mean(model, x)
    crit = default_loss(name, **({"t": 1.0} if name == "unified_convnet" else {}))
    # BatchNorm: compare in train mode (batch statistics) so running stats do not blur the test
    mode = model.train if name == "simple_convnet" else model.eval

    def full_loss():
        mode()
        with torch.no_grad():
            return float(crit(model(x), y))

    before = full_loss()
    history = fit(model, as_loss_fn(crit), x, y,
                  TrainConfig(epochs=1, batch_size=32, lr=lr, schedule="constant", seed=0))
    after = full_loss()
    assert len(history) == 1
    assert after < before, f"{name}: loss {before:.4f} -> {after:.4f}"


# ----------------------------------------------------------------------------------------------
# whole-model Lipschitz checks
# ----------------------------------------------------------------------------------------------
TINY_LIP = {
    "aol_convnet": {"in_channels": 1, "input_size": 8, "num_classes": 4, "base_width": 4, "blocks": 2,
                    "convs_per_block": 1, "init": "kaiming"},
    "cpl_convnet": {"in_channels": 1, "input_size": 8, "num_classes": 4, "base_width": 4, "blocks": 2,
                    "convs_per_block": 1, "init": "kaiming"},
    "unified_convnet": {"in_channels": 1, "input_size": 8, "num_classes": 4, "base_width": 4, "blocks": 2,
                        "convs_per_block": 1},
    "aol_mlp": {"in_channels": 1, "input_size": 8, "num_classes": 4, "width": 16, "depth": 4,
                "pad_to": None, "init": "kaiming"},
}


@pytest.mark.parametrize("name", sorted(TINY_LIP))
def test_whole_model_is_one_lipschitz(name):
    torch.manual_seed(1)
    model = build_model(name, TINY_LIP[name]).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():   # random, large weights: the constraint must hold for any parameters
        for p in model.parameters():
            p.copy_(2.0 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    model.eval()
    x = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64)
    exact = [exact_operator_norm(model, (1, 8, 8), point=xi) for xi in x]
    assert max(exact) <= 1 + TOL
    power = power_iteration_lipschitz(model, x, iterations=60, generator=g)
    assert float(power.max()) <= 1 + TOL
    # power iteration reaches the exact local Jacobian norm
    assert torch.allclose(power, torch.tensor(exact, dtype=power.dtype), rtol=1e-3)
    adv = adversarial_lipschitz(model, x, steps=25, generator=g)
    assert float(adv.max()) <= 1 + TOL


def test_estimators_detect_a_non_lipschitz_map():
    """The estimators can fail: on a linear map of known norm 3 both find ~3."""
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(6, 4).double()
    with torch.no_grad():
        u, _, vh = torch.linalg.svd(torch.randn(4, 6, generator=g, dtype=torch.float64), full_matrices=False)
        lin.weight.copy_(u @ torch.diag(torch.tensor([3.0, 1.0, 0.5, 0.1], dtype=torch.float64)) @ vh)
    model = torch.nn.Sequential(torch.nn.Flatten(), lin)
    x = torch.randn(3, 1, 6, generator=g, dtype=torch.float64)
    assert exact_operator_norm(model, (1, 6)) == pytest.approx(3.0, rel=1e-12)
    assert float(power_iteration_lipschitz(model, x, iterations=60, generator=g).min()) == pytest.approx(3.0, rel=1e-8)
    assert float(adversarial_lipschitz(model, x, steps=60, generator=g).max()) >= 2.9


def test_cpl_model_resume_matches_uninterrupted(tmp_path):
    """The CPL power-iteration vector is a lazily shaped buffer: a checkpoint written mid-run
    restores it, so an interrupted and resumed run ends with the same weights and metrics."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 1, 8, 8, generator=g)
    y = torch.arange(48) % 4
    cfg = {"in_channels": 1, "input_size": 8, "num_classes": 4, "base_width": 4, "blocks": 2,
           "convs_per_block": 1}
    tc = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=3)
    loss = as_loss_fn(default_loss("cpl_convnet"))

    def evaluate(model, epoch):
        with torch.no_grad():
            return {"loss": float(default_loss("cpl_convnet")(model(x), y))}

    def fresh():
        torch.manual_seed(0)
        return build_model("cpl_convnet", cfg)

    full = fit(fresh(), loss, x, y, tc, evaluate=evaluate)
    ckpt = tmp_path / "run.ckpt"
    fit(fresh(), loss, x, y, tc, evaluate=evaluate, checkpoint=ckpt, stop_after_epochs=1)
    resumed_model = fresh()
    resumed = fit(resumed_model, loss, x, y, tc, evaluate=evaluate, checkpoint=ckpt)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in full]
    assert [h["train_loss"] for h in resumed] == [h["train_loss"] for h in full]


@pytest.mark.parametrize("spelling", ["fashion-mnist", "fashion_mnist", "Fashion-MNIST"])
def test_input_config_accepts_both_dataset_spellings(spelling):
    assert input_config(spelling) == input_config("mnist")
    assert input_config(spelling, pad=True)["input_size"] == 32


def test_input_config_names_allowed_datasets():
    assert input_config("svhn") == input_config("cifar10")
    with pytest.raises(ValueError, match=r"dataset .*mnist, fashion-mnist, cifar10, svhn"):
        input_config("imagenet")
    with pytest.raises(TypeError, match="dataset"):
        input_config(3)
