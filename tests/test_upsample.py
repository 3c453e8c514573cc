"""Up-sampling layers: the exact transposed-conv -> conv + pixel-shuffle conversion, the three 2x
layers, and the checkerboard measure against patterns whose answer is known."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.errors import ConfigError, GenlabError
from genlab.nn.upsample import checkerboard_energy, make_upsample, transposed_to_pixelshuffle

# (kernel, padding, output_padding): the DCGAN layer, odd kernels that need output_padding to
# double, a kernel with no overlap, non-square ones, and paddings >= k (the input gets cropped).
CONFIGS = [
    (4, 1, 0), (3, 1, 1), (2, 0, 0), (5, 2, 1),
    (1, 0, 0), (3, 0, 0), (6, 2, 1), ((3, 4), (1, 2), (0, 1)), (2, 3, 1), (3, 4, 0),
]


def _convT(k, p, op, bias, dtype, seed):
    torch.manual_seed(seed)
    return nn.ConvTranspose2d(3, 5, k, 2, p, op, bias=bias).to(dtype)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("k,p,op", CONFIGS)
def test_conversion_is_exact_in_float64(k, p, op, bias):
    convT = _convT(k, p, op, bias, torch.float64, seed=CONFIGS.index((k, p, op)) + 100 * bias)
    conv = transposed_to_pixelshuffle(convT)
    assert isinstance(conv, nn.Sequential) and any(isinstance(m, nn.PixelShuffle) for m in conv)
    assert sum(isinstance(m, nn.Conv2d) for m in conv) == 1 and not any(isinstance(m, nn.ConvTranspose2d) for m in conv)
    g = torch.Generator().manual_seed(1)
    for h, w in ((5, 6), (8, 7), (4, 4)):  # one module for every input size
        x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
        with torch.no_grad():
            want, got = convT(x), conv(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k,p,op", CONFIGS[:4])
def test_conversion_is_exact_in_float32(k, p, op):
    convT = _convT(k, p, op, True, torch.float32, seed=3)
    conv = transposed_to_pixelshuffle(convT)
    assert all(t.dtype == torch.float32 for t in conv.state_dict().values())
    x = torch.randn(4, 3, 9, 10)
    with torch.no_grad():
        want, got = convT(x), conv(x)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_conversion_of_the_dcgan_layer_is_a_3x3_conv_and_copies_the_weights():
    """The textbook case: 4x4 stride 2 padding 1 is a 3x3 convolution (padding 1) to 4x the channels."""
    convT = nn.ConvTranspose2d(3, 5, 4, 2, 1)
    conv = transposed_to_pixelshuffle(convT)
    assert [type(m) for m in conv] == [nn.Conv2d, nn.PixelShuffle]
    assert conv[0].weight.shape == (20, 3, 3, 3) and conv[0].padding == (1, 1)
    # each phase uses 2x2 of the 3x3 window: 4 of the 9 taps, all 16 taps used once in total
    assert int((conv[0].weight[:4] != 0).sum()) == 16 * 3
    # ... which is the architecture of the pixelshuffle layer, so a trained transposed layer loads into it
    ps = make_upsample("pixelshuffle", 3, 5)
    ps.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(ps(x), convT(x), rtol=1e-5, atol=1e-6)
        conv[0].weight.zero_()
    assert convT.weight.abs().sum() > 0  # a copy, not a view


def test_conversion_refuses_what_it_does_not_cover():
    for bad, field in [
        (nn.ConvTranspose2d(3, 5, 4, 1, 1), "stride"),
        (nn.ConvTranspose2d(3, 5, 4, (2, 1), 1), "stride"),
        (nn.ConvTranspose2d(4, 6, 4, 2, 1, groups=2), "groups"),
        (nn.ConvTranspose2d(3, 5, 3, 2, 1, dilation=2), "dilation"),
        (nn.Conv2d(3, 5, 4, 2, 1), "ConvTranspose2d"),
    ]:
        with pytest.raises(GenlabError) as e:
            transposed_to_pixelshuffle(bad)
        assert str(e.value).startswith("convT") and field in str(e.value)


@pytest.mark.parametrize("kind", ["transposed", "pixelshuffle", "resize"])
@pytest.mark.parametrize("kernel_size", [None, 2, 3, 5])
def test_every_kind_doubles_height_and_width(kind, kernel_size):
    torch.manual_seed(0)
    layer = make_upsample(kind, 3, 5, kernel_size)
    assert layer.kind == kind
    for h, w in ((7, 7), (14, 14), (7, 10)):
        assert layer(torch.randn(2, 3, h, w)).shape == (2, 5, 2 * h, 2 * w)


def test_default_kernels():
    t, p, r = (make_upsample(k, 3, 5) for k in ("transposed", "pixelshuffle", "resize"))
    assert (t[0].kernel_size, t[0].stride, t[0].padding, t[0].output_padding) == ((4, 4), (2, 2), (1, 1), (0, 0))
    assert (p[0].kernel_size, p[0].padding, p[0].out_channels, p[1].upscale_factor) == ((3, 3), (1, 1), 20, 2)
    assert isinstance(r[0], nn.Upsample) and r[0].mode == "nearest" and (r[1].kernel_size, r[1].padding) == ((3, 3), (1, 1))


def test_make_upsample_refuses_bad_arguments():
    with pytest.raises(ConfigError) as e:
        make_upsample("bilinear", 3, 5)
    assert str(e.value).startswith("upsample") and "transposed, pixelshuffle, resize" in str(e.value)
    for kw, field in [({"in_ch": 0}, "in_ch"), ({"out_ch": 2.0}, "out_ch"), ({"kernel_size": 0}, "kernel_size")]:
        args = {"kind": "resize", "in_ch": 3, "out_ch": 5, **kw}
        with pytest.raises(ConfigError, match=f"^{field}"):
            make_upsample(**args)
    with pytest.raises(ConfigError, match="^kernel_size"):
        make_upsample("transposed", 3, 5, 1)


def _blob(h=32, w=32, sigma=4.0):
    i = torch.arange(h, dtype=torch.float64)[:, None] - (h - 1) / 2
    j = torch.arange(w, dtype=torch.float64)[None, :] - (w - 1) / 2
    return torch.exp(-(i**2 + j**2) / (2 * sigma**2))


def test_checkerboard_energy_of_known_patterns():
    i, j = torch.meshgrid(torch.arange(16), torch.arange(12), indexing="ij")
    board = ((-1.0) ** (i + j)).double()
    assert checkerboard_energy(board).item() == pytest.approx(1.0, abs=1e-12)
    # stripes of period 2 are stride frequencies too; a period-4 stripe is not
    assert checkerboard_energy((-1.0) ** i.double()).item() == pytest.approx(1.0, abs=1e-12)
    assert checkerboard_energy(torch.cos(math.pi / 2 * i.double())).item() == pytest.approx(0.0, abs=1e-12)
    assert checkerboard_energy(_blob()).item() < 1e-6
    # half and half: a blob plus a board of equal energy scores 1/2
    b = _blob(16, 12)
    mixed = b - b.mean() + board * (b - b.mean()).norm() / board.norm()
    assert checkerboard_energy(mixed).item() == pytest.approx(0.5, abs=1e-3)


def test_checkerboard_energy_of_constant_images_is_zero():
    for img in (torch.zeros(3, 8, 8), torch.full((2, 3, 8, 8), 0.1), torch.full((8, 6), 7, dtype=torch.int64)):
        e = checkerboard_energy(img)
        assert torch.isfinite(e).all() and (e == 0).all()


def test_checkerboard_energy_shapes_and_channels():
    board = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(4, 4)
    batch = torch.stack([torch.stack([board, _blob(8, 8).float()]), torch.stack([_blob(8, 8).float(), _blob(8, 8).float()])])
    e = checkerboard_energy(batch)
    assert e.shape == (2,) and checkerboard_energy(batch[0]).shape == () and checkerboard_energy(board).shape == ()
    # channels pool their energy: the board channel dominates the blob channel in image 0
    assert e[0] > 0.5 and e[1] < 1e-3
    assert checkerboard_energy(batch[1]).item() == pytest.approx(e[1].item())


def test_checkerboard_energy_refuses_bad_input():
    with pytest.raises(GenlabError, match="^images.*7x8"):
        checkerboard_energy(torch.zeros(1, 1, 7, 8))
    with pytest.raises(GenlabError, match="^images"):
        checkerboard_energy(torch.zeros(8))
    with pytest.raises(GenlabError, match="^images"):
        checkerboard_energy([[1.0, 2.0]])


@pytest.mark.parametrize("seed", range(5))
def test_untrained_transposed_conv_draws_a_checkerboard_on_a_constant_image(seed):
    """The four output phases of a 4x4 stride-2 transposed conv sum different taps, so a constant
    input comes out as a period-2 pattern; nearest-neighbour resize + conv stays flat inside.
    (Over 300 seeds with 3 channels at 16x16: transposed >= 0.60, resize <= 0.06.)"""
    torch.manual_seed(seed)
    x = torch.ones(1, 3, 16, 16)
    with torch.no_grad():
        t = checkerboard_energy(make_upsample("transposed", 3, 3)(x)).item()
        r = checkerboard_energy(make_upsample("resize", 3, 3)(x)).item()
    assert t > 0.4 and r < 0.1 and t > 4 * r
