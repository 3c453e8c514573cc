"""SSIM against a direct scipy computation of Wang et al.'s formula, against torchmetrics, and
against closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import genlab
from genlab.errors import GenlabError
from genlab.metrics.image import ssim


def ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float, size=11, sigma=1.5) -> float:
    """One grey image pair, straight from the paper: Gaussian-weighted local statistics over the
    window positions inside the image, the SSIM map, its mean."""
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (t / sigma) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    half = size // 2

    def filt(a):
        return ndimage.correlate(a, w, mode="constant")[half:-half, half:-half]

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    m = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(m.mean())


def _pair(seed=0, n=4, c=1, h=28, w=28):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some spatial structure
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_ssim_matches_a_direct_scipy_computation():
    x, y = _pair(h=28, w=33)
    got = ssim(x, y)
    want = [ssim_reference(x[i, 0].numpy(), y[i, 0].numpy(), 1.0) for i in range(len(x))]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    assert 0.2 < got.min() and got.max() < 0.99  # a real, non-trivial comparison


def test_ssim_map_matches_torchmetrics_inside_the_border():
    """torchmetrics 1.9 reflect-pads and averages the whole map; on the positions whose window lies
    inside the image its map must equal ours, so the mean of its cropped map is our value."""
    tm = pytest.importorskip("torchmetrics.functional.image", reason="torchmetrics is the reference; pip install torchmetrics")
    x, y = _pair(seed=1, n=3, c=3, h=32, w=24)
    for scale in (1.0, 2.0, 255.0):
        xs, ys = x * scale, y * scale
        got = ssim(xs, ys, data_range=scale)
        _, full = tm.structural_similarity_index_measure(xs, ys, data_range=scale, reduction="none", return_full_image=True)
        want = full[..., 5:-5, 5:-5].flatten(1).mean(1)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_ssim_closed_forms():
    x, y = _pair(seed=2)
    torch.testing.assert_close(ssim(x, x), torch.ones(len(x), dtype=torch.float64))
    torch.testing.assert_close(ssim(x, y), ssim(y, x))  # symmetric
    # constant images: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.3, 0.7
    ca, cb = torch.full((1, 1, 12, 12), a, dtype=torch.float64), torch.full((1, 1, 12, 12), b, dtype=torch.float64)
    c1 = 0.01**2
    assert ssim(ca, cb).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)
    # an image against its negative (structure inverted) scores below zero
    assert ssim(x, 1 - x).max() < 0


def test_ssim_bad_input_says_what_is_wrong():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(GenlabError, match="8x8, smaller than the 11x11 window"):
        ssim(x, x)
    with pytest.raises(GenlabError, match="differ in shape"):
        ssim(torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 13))
    with pytest.raises(GenlabError, match="data_range must be > 0"):
        ssim(torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12), data_range=0)
    with pytest.raises(GenlabError, match="positive odd"):
        ssim(torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12), kernel_size=4)


def test_eval_batch_reports_ssim_on_the_data_range():
    torch.manual_seed(0)
    kw = dict(hidden=[32], latent=4)
    m = genlab.create_model("ae", shape=(1, 12, 12), value_range=(-1.0, 1.0), **kw)
    x = torch.rand(5, 1, 12, 12) * 2 - 1
    out = m.eval_batch(x)
    with torch.no_grad():
        r = m.reconstruct(x).reshape(x.shape)
    want = [ssim_reference(r[i, 0].double().numpy() + 1, x[i, 0].double().numpy() + 1, 2.0) for i in range(5)]
    np.testing.assert_allclose(out["ssim"].numpy(), want, rtol=1e-5, atol=1e-7)  # reconstruction in float32
    small = genlab.create_model("ae", shape=(1, 8, 8), **kw)
    assert "ssim" not in small.eval_batch(torch.rand(3, 1, 8, 8))  # too small for the window
