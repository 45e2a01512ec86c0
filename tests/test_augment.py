"""deep.augment (P&L Sec. 4.1 / 9.3 augmentation) and deep.pca_projection (Sec. 4.4, Table 1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from deep import augment as aug
from deep.pca_projection import (TABLE1_SUBSETS, PCRange, PCSubset, fit_pca, project, subset_for_dim)


def _images(n=6, c=2, h=7, w=5, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) + 0.5  # never 0


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# random crop

@given(st.integers(1, 4), st.integers(1, 3), st.integers(3, 9), st.integers(3, 9), st.integers(0, 4),
       st.integers(0, 10 ** 6))
def test_crop_output_is_a_window_of_the_padded_image(n, c, h, w, pad, seed):
    x = _images(n, c, h, w, seed % 97)
    out = aug.random_crop(x, pad, _gen(seed), fill=0.0)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    for i in range(n):
        windows = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(padded[i, :, dy:dy + h, dx:dx + w], out[i])]
        assert windows, f"image {i} is not a crop of its padded version"


def test_crop_offsets_cover_the_range_uniformly():
    # 2000 single-pixel images with a marker: the marker's position gives the offset.
    n, pad = 2000, 2
    x = torch.zeros(n, 1, 5, 5)
    x[:, :, 2, 2] = 1.0
    out = aug.random_crop(x, pad, _gen(1))
    # marker moves by (pad - offset); it stays inside (|shift| <= 2 < 3)
    pos = out.reshape(n, -1).argmax(1)
    rows = pos // 5
    counts = np.bincount(rows.numpy(), minlength=5)
    assert counts.sum() == n and (counts > 0).all()
    # uniform over 5 offsets: each 400 +- 5 sd (sd = sqrt(2000 * .2 * .8) ~ 17.9)
    assert np.all(np.abs(counts - 400) < 90), counts


def test_crop_zero_padding_is_identity_and_fill_is_used():
    x = _images()
    assert torch.equal(aug.random_crop(x, 0, _gen()), x)
    out = aug.random_crop(torch.zeros(50, 1, 4, 4), 3, _gen(2), fill=0.7)
    vals = set(np.unique(out.numpy()).astype(np.float64).round(6).tolist())
    assert vals <= {0.0, 0.7} and 0.7 in vals


# ---------------------------------------------------------------------------------------------
# flip and erase

def test_flip_is_mirror_or_identity_with_half_probability():
    x = _images(n=2000, c=1, h=3, w=4)
    out = aug.random_flip(x, _gen(3))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    frac = float(mirrored.float().mean())
    assert abs(frac - 0.5) < 0.05  # sd 0.011, seed fixed
    assert torch.equal(aug.random_flip(x, _gen(3), p=0.0), x)


def test_erase_sets_exactly_one_patch_per_image_to_value():
    x = _images(n=300, c=3, h=6, w=6)
    out = aug.random_erase(x, 2, _gen(4), p=1.0, value=0.0)
    changed = (out != x)
    assert bool((changed.any(1) == changed.all(1)).all())          # all channels together
    per_img = changed[:, 0].flatten(1).sum(1)
    assert bool((per_img == 4).all())
    for i in range(0, 300, 37):                                   # the 4 pixels form a 2x2 square
        ys, xs = torch.nonzero(changed[i, 0], as_tuple=True)
        assert ys.max() - ys.min() == 1 and xs.max() - xs.min() == 1
    assert float(out[changed].abs().max()) == 0.0
    assert torch.equal(aug.random_erase(x, 2, _gen(4), p=0.0), x)
    frac = float((aug.random_erase(x, 2, _gen(5), p=0.5) != x).flatten(1).any(1).float().mean())
    assert abs(frac - 0.5) < 0.1   # 300 draws, sd 0.029


# ---------------------------------------------------------------------------------------------
# pipeline, reproducibility, dataset presets

def test_same_generator_seed_same_augmentation_different_seed_differs():
    f = aug.make_augment(aug.config_for_dataset("cifar10"))
    x = _images(n=64, c=3, h=8, w=8)
    a, b = f(x, _gen(11)), f(x, _gen(11))
    assert torch.equal(a, b)
    assert not torch.equal(a, f(x, _gen(12)))


def test_dataset_presets():
    m = aug.config_for_dataset("mnist")
    assert m.crop_padding == 4 and m.flip is False and m.erase_size == 0     # Sec. 9.3, no flip (digits)
    c = aug.config_for_dataset("cifar10")
    assert c.crop_padding == 4 and c.flip is True and c.erase_size == 2      # Sec. 4.1
    assert aug.make_augment(aug.config_for_dataset("cifar10", enabled=False)) is None  # Sec. 4.3
    # MNIST augmentation never mirrors: an asymmetric image is never flipped.
    x = torch.zeros(200, 1, 8, 8)
    x[:, :, 3:5, 0] = 1.0                                    # bar on the left edge
    out = aug.make_augment(m)(x, _gen(0))
    cols = torch.nonzero(out.sum(dim=(0, 1, 2)))[:, 0]
    assert int(cols.max()) <= 4                              # crop shifts by <= 4, never mirrors to col 7


def test_pad_to_centres_and_fills_with_mean():
    x = _images(n=3, c=1, h=28, w=28)
    mean = x.mean(dim=(0, 2, 3))
    out = aug.pad_to(x, 32, mean)
    assert out.shape == (3, 1, 32, 32)
    assert torch.equal(out[:, :, 2:30, 2:30], x)
    border = out.clone()
    border[:, :, 2:30, 2:30] = mean[0]
    assert torch.allclose(border - mean[0], torch.zeros_like(border))  # 0 after mean subtraction
    assert torch.allclose(out.mean(dim=(0, 2, 3)), mean, atol=1e-6)    # mean unchanged


def test_bad_input_names_parameter():
    with pytest.raises(ValueError, match="crop_padding"):
        aug.AugmentConfig(crop_padding=-1)
    with pytest.raises(ValueError, match="erase_prob"):
        aug.AugmentConfig(erase_prob=1.5)
    with pytest.raises(ValueError, match="x must be a"):
        aug.random_flip(torch.zeros(3, 4), _gen())
    with pytest.raises(TypeError, match="generator"):
        aug.random_crop(torch.zeros(1, 1, 4, 4), 1, 0)
    with pytest.raises(ValueError, match="size"):
        aug.pad_to(torch.zeros(1, 1, 28, 28), 20)
    with pytest.raises(ValueError, match="dataset"):
        aug.config_for_dataset("imagenet")


# ---------------------------------------------------------------------------------------------
# PCA projection (Table 1)

def _correlated(n=400, d=12, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) * np.geomspace(3, 0.01, d)
    return torch.from_numpy((rng.normal(size=(n, d)) @ a.T + 0.3).reshape(n, 1, 3, 4))


def test_pca_matches_covariance_eigendecomposition():
    x = _correlated()
    b = fit_pca(x, block=64)
    flat = x.reshape(len(x), -1).numpy()
    lam = np.sort(np.linalg.eigvalsh(np.cov(flat, rowvar=False)))[::-1]
    assert np.allclose(b.variances, lam, rtol=1e-10, atol=1e-12)
    assert np.allclose(b.components.T @ b.components, np.eye(12), atol=1e-10)
    assert np.all(np.diff(b.variances) <= 1e-12)


@given(st.integers(1, 12), st.integers(1, 12))
def test_projection_properties(a, b):
    lo, hi = min(a, b), max(a, b)
    x = _correlated(seed=1)
    basis = fit_pca(x)
    s = PCSubset((PCRange(lo, hi),))
    p = project(x, basis, s)
    # idempotent
    assert torch.allclose(project(p, basis, s), p, atol=1e-10)
    # complement: P_S(x) + P_{S^c}(x) - mu = x
    rest = [r for r in ((1, lo - 1), (hi + 1, 12)) if r[0] <= r[1]]
    mu = torch.from_numpy(basis.mean).reshape(1, 1, 3, 4)
    if rest:
        q = project(x, basis, PCSubset(tuple(PCRange(*r) for r in rest)))
        assert torch.allclose(p + q - mu, x, atol=1e-10)
        assert abs(basis.explained_variance(s)
                   + basis.explained_variance(PCSubset(tuple(PCRange(*r) for r in rest))) - 1) < 1e-12
    else:
        assert torch.allclose(p, x, atol=1e-10)
    # variance of the projected training data = explained variance of the subset
    flat_p = p.reshape(len(p), -1).numpy()
    flat_x = x.reshape(len(x), -1).numpy()
    frac = flat_p.var(axis=0, ddof=1).sum() / flat_x.var(axis=0, ddof=1).sum()
    assert abs(frac - basis.explained_variance(s)) < 1e-10


def test_table1_ranges_scaled_for_mnist():
    got = {k: subset_for_dim(k, 784).label for k in TABLE1_SUBSETS}
    assert got == {"1-16": "1-4", "1-512": "1-131", "513-3072": "132-784", "2049-3072": "524-784",
                   "1-16&513-3072": "1-4&132-784"}
    assert subset_for_dim("513-3072", 3072).label == "513-3072"
    # 1-512 and 513-3072 partition every dimension's spectrum
    for d in (10, 784, 1000, 3072):
        a = subset_for_dim("1-512", d).indices(d)
        b = subset_for_dim("513-3072", d).indices(d)
        assert np.array_equal(np.sort(np.concatenate([a, b])), np.arange(d))


def test_pca_bad_input():
    with pytest.raises(ValueError, match="must not overlap"):
        PCSubset((PCRange(1, 5), PCRange(5, 9)))
    with pytest.raises(ValueError, match="stop must be >= start"):
        PCRange(5, 2)
    with pytest.raises(ValueError, match="exceeds the data dimension"):
        PCSubset((PCRange(1, 20),)).indices(12)
    with pytest.raises(ValueError, match="subset must be one of"):
        subset_for_dim("1-8", 784)
    with pytest.raises(ValueError, match="basis has dimension"):
        project(torch.zeros(2, 1, 2, 2), fit_pca(_correlated()), PCSubset((PCRange(1, 2),)))
