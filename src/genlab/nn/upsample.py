"""2x up-sampling layers for decoders and generators, and the tools to compare them.

Three ways to double H and W (``make_upsample``):

* ``transposed``: a stride-2 transposed convolution (DCGAN). Each output pixel belongs to one of
  four phases (row parity x column parity) and each phase sees a different subset of the kernel
  taps, so unless the four sub-kernels happen to sum alike the output carries a period-2 pattern,
  the "checkerboard artifact" (Odena et al., 2016).
* ``pixelshuffle``: a convolution to ``4 * out_ch`` channels followed by ``PixelShuffle(2)``
  (sub-pixel convolution, Shi et al., 2016). It can represent every stride-2 transposed
  convolution (``transposed_to_pixelshuffle`` builds the equivalent) and computes no products with
  the zeros that a transposed convolution inserts between the input pixels.
* ``resize``: nearest-neighbour 2x up-sampling, then a 3x3 convolution. All four phases go through
  the same kernel, so a constant input stays constant away from the border: no checkerboard by
  construction, at the cost of a smoother output.

``checkerboard_energy`` measures the artifact: the share of an image's spectral energy at the
stride-2 (Nyquist) frequencies.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, GenlabError

UPSAMPLE_KINDS = ("transposed", "pixelshuffle", "resize")
DEFAULT_KERNEL = {"transposed": 4, "pixelshuffle": 3, "resize": 3}


class Upsample2x(nn.Sequential):
    """A layer stack mapping ``(N, in_ch, H, W)`` to ``(N, out_ch, 2H, 2W)``; ``kind`` names the method."""

    def __init__(self, kind: str, *layers: nn.Module):
        super().__init__(*layers)
        self.kind = kind

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _same_conv(in_ch: int, out_ch: int, k: int) -> list[nn.Module]:
    """A stride-1 convolution that keeps H and W; an even kernel pads one more at the bottom/right
    (explicitly: ``padding="same"`` would copy the input and warn on every call)."""
    if k % 2:
        return [nn.Conv2d(in_ch, out_ch, k, padding=k // 2)]
    return [nn.ZeroPad2d((k // 2 - 1, k // 2, k // 2 - 1, k // 2)), nn.Conv2d(in_ch, out_ch, k)]


def make_upsample(kind: str, in_ch: int, out_ch: int, kernel_size: int | None = None) -> Upsample2x:
    """A layer that doubles H and W exactly, for any input size.

    ``kernel_size`` defaults to 4 for ``transposed`` (the DCGAN 4x4, stride 2, padding 1) and to 3
    for the two others. A transposed convolution gives ``2H - 2 - 2p + k + output_padding`` rows, so
    an even ``k`` uses ``p = k/2 - 1`` and an odd ``k`` uses ``p = (k-1)/2`` with ``output_padding=1``.
    """
    if kind not in UPSAMPLE_KINDS:
        raise ConfigError(f"upsample: expected one of {', '.join(UPSAMPLE_KINDS)}, got {kind!r}")
    in_ch = _positive_int("in_ch", in_ch)
    out_ch = _positive_int("out_ch", out_ch)
    k = _positive_int("kernel_size", DEFAULT_KERNEL[kind] if kernel_size is None else kernel_size)
    if kind == "transposed":
        if k < 2:
            raise ConfigError(f"kernel_size: a stride-2 transposed convolution needs kernel_size >= 2, got {k}")
        return Upsample2x(kind, nn.ConvTranspose2d(in_ch, out_ch, k, 2, padding=(k - 1) // 2, output_padding=k % 2))
    if kind == "pixelshuffle":
        return Upsample2x(kind, *_same_conv(in_ch, 4 * out_ch, k), nn.PixelShuffle(2))
    return Upsample2x(kind, nn.Upsample(scale_factor=2, mode="nearest"), *_same_conv(in_ch, out_ch, k))


class Crop2d(nn.Module):
    """Removes ``(left, right, top, bottom)`` pixels from the last two dimensions."""

    def __init__(self, left: int, right: int, top: int, bottom: int):
        super().__init__()
        self.crop = (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.crop
        return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]

    def extra_repr(self) -> str:
        return "left={}, right={}, top={}, bottom={}".format(*self.crop)


def _phase_plan(k: int, p: int, op: int) -> tuple[list[list[int | None]], int, int, int]:
    """One spatial dimension of the conversion (see ``transposed_to_pixelshuffle``).

    Returns ``(taps, pad_before, pad_after, crop_after)``: ``taps[s][a]`` is the transposed-kernel
    tap that the sub-kernel of output phase ``s`` uses at window position ``a`` (None: a zero), the
    input padding before and after (negative: a crop) and the rows to crop from the output's end.
    """
    offsets = {s: {(s + p - t) // 2: t for t in range(k) if (t - s - p) % 2 == 0} for s in (0, 1)}
    ds = [d for s in (0, 1) for d in offsets[s]]
    d_min, d_max = min(ds), max(ds)
    size = d_max - d_min + 1
    taps = [[offsets[s].get(d_min + a) for a in range(size)] for s in (0, 1)]
    pad_before = -d_min
    # a length-L input gives L_out = 2(L - 1 - p) + k + op outputs; the convolution must give
    # ceil(L_out / 2) = L + pad_before + pad_after - size + 1 of them, whatever L is
    pad_after = -1 - p + math.ceil((k + op) / 2) - pad_before + size - 1
    return taps, pad_before, pad_after, (k + op) % 2


def transposed_to_pixelshuffle(convT: nn.ConvTranspose2d) -> nn.Sequential:
    """The exact equivalent of a stride-2 transposed convolution as ``Conv2d`` + ``PixelShuffle(2)``.

    Polyphase decomposition, per spatial dimension (the 2-D case is the product of the two).
    A transposed convolution with kernel ``w``, padding ``p`` computes
    ``y[o] = b + sum_t x[i] w[t]`` over the taps with ``o = 2i - p + t``. Write ``o = 2n + s``: the
    output phase ``s`` (0 or 1) only uses the taps ``t = s + p - 2d`` (every second tap, so of one
    parity) at the input ``i = n + d``, so ``y[2n + s] = b + sum_d x[n + d] w[s + p - 2d]``: an
    ordinary stride-1 correlation of ``x`` with the sub-kernel read backwards through every second
    tap of ``w``. Both phases share one window ``d_min..d_max`` (a missing tap is a zero), so one
    ``Conv2d`` with ``4 * out`` channels computes all phases at once and ``PixelShuffle(2)``
    interleaves them; padding the input by ``-d_min`` in front makes output ``n`` start at ``x[n + d_min]``
    (a negative padding, from a padding ``p >= k``, is a crop). The padding behind makes the length
    ``ceil(L_out / 2)`` for every input length; when ``k + output_padding`` is odd ``L_out`` is odd
    and the shuffled output has one extra row (column) that is cropped. Every ``(k, p, output_padding)``
    is covered; only stride 2, ``groups=1`` and ``dilation=1`` are supported.

    The result holds copies of the weights; it ignores a ``output_size=`` passed to the original's
    ``forward`` (it uses the module's own ``output_padding``).
    """
    if not isinstance(convT, nn.ConvTranspose2d):
        raise GenlabError(f"convT: expected an nn.ConvTranspose2d, got {type(convT).__name__}")
    if tuple(convT.stride) != (2, 2):
        raise GenlabError(f"convT: expected stride 2, got stride={tuple(convT.stride)}")
    if convT.groups != 1:
        raise GenlabError(f"convT: expected groups=1, got groups={convT.groups}")
    if tuple(convT.dilation) != (1, 1):
        raise GenlabError(f"convT: expected dilation=1, got dilation={tuple(convT.dilation)}")
    if not all(isinstance(v, int) for v in convT.padding):
        raise GenlabError(f"convT: expected integer padding, got padding={convT.padding!r}")
    (taps_h, top, bottom, crop_h), (taps_w, left, right, crop_w) = (
        _phase_plan(k, p, op) for k, p, op in zip(convT.kernel_size, convT.padding, convT.output_padding))
    w = convT.weight.detach()  # (in, out, kH, kW)
    cin, cout = w.shape[:2]
    conv = nn.Conv2d(cin, 4 * cout, (len(taps_h[0]), len(taps_w[0])), bias=convT.bias is not None,
                     device=w.device, dtype=w.dtype)
    kernel = torch.zeros(cout, 2, 2, cin, len(taps_h[0]), len(taps_w[0]), device=w.device, dtype=w.dtype)
    for sh in (0, 1):
        for sw in (0, 1):
            for a, th in enumerate(taps_h[sh]):
                for c, tw in enumerate(taps_w[sw]):
                    if th is not None and tw is not None:
                        kernel[:, sh, sw, :, a, c] = w[:, :, th, tw].T
    with torch.no_grad():
        # PixelShuffle(2) sends channel 4c + 2 sh + sw to output channel c at phase (sh, sw)
        conv.weight.copy_(kernel.reshape(4 * cout, cin, *kernel.shape[-2:]))
        if convT.bias is not None:
            conv.bias.copy_(convT.bias.detach().repeat_interleave(4))
    layers: list[nn.Module] = []
    pads = (left, right, top, bottom)
    if top == bottom >= 0 and left == right >= 0:
        conv.padding = (top, left)
    else:
        if any(v > 0 for v in pads):
            layers.append(nn.ZeroPad2d(tuple(max(v, 0) for v in pads)))
        if any(v < 0 for v in pads):
            layers.append(Crop2d(*(max(-v, 0) for v in pads)))
    layers += [conv, nn.PixelShuffle(2)]
    if crop_h or crop_w:
        layers.append(Crop2d(0, crop_w, 0, crop_h))
    return nn.Sequential(*layers)


def checkerboard_energy(images: torch.Tensor) -> torch.Tensor:
    """The share of each image's spectral energy at the stride-2 frequencies, in [0, 1].

    For every channel ``x`` (an ``H x W`` array, H and W even) of an image: remove its mean, take
    the 2-D DFT ``X`` and the power ``P = |X|^2``; the stride energy is
    ``P[H/2, 0] + P[0, W/2] + P[H/2, W/2]``, the power at the frequencies ``(pi, 0)``, ``(0, pi)``
    and ``(pi, pi)`` (cycles of period 2 down the rows, along the columns, and both). The result is
    the stride energy summed over the channels divided by the total power summed over the channels
    (by Parseval, ``H * W`` times the sum of squared deviations from the channel means). An image
    with no such energy (every channel constant, up to an RMS deviation of 8 machine epsilons of
    its largest magnitude, i.e. rounding) scores 0, not NaN.

    A period-2 pattern (the checkerboard of a transposed convolution, whose four output phases see
    different kernel taps) puts all its energy on these three frequencies, so ``(-1)^(i+j)`` scores
    1, while a smooth image has almost no energy there and scores about 0. Accepts ``(H, W)``,
    ``(C, H, W)`` or ``(N, C, H, W)``; returns a tensor of shape ``()``, ``()`` or ``(N,)``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() not in (2, 3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise GenlabError(f"images: expected a tensor of shape (H, W), (C, H, W) or (N, C, H, W), got {shape}")
    h, w = images.shape[-2:]
    if h % 2 or w % 2:
        raise GenlabError(f"images: checkerboard_energy needs even H and W (the Nyquist frequency), got {h}x{w}")
    x = images.to(torch.promote_types(images.dtype, torch.float32))  # fft2 needs float32 or float64
    if images.dim() < 4:
        x = x.reshape((1,) * (4 - images.dim()) + tuple(x.shape))
    dev = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(dev).abs() ** 2
    power[..., 0, 0] = 0  # zero up to rounding once the mean is removed
    stride = (power[..., h // 2, 0] + power[..., 0, w // 2] + power[..., h // 2, w // 2]).sum(-1)
    total = power.sum(dim=(-3, -2, -1))
    # rounding leaves a constant image a few ulps of noise, whose spectrum means nothing
    scale = x.abs().amax(dim=(-3, -2, -1))
    flat = dev.pow(2).mean(dim=(-3, -2, -1)).sqrt() <= 8 * torch.finfo(x.dtype).eps * scale
    share = torch.where(flat, torch.zeros_like(total), stride / total.clamp_min(torch.finfo(total.dtype).tiny))
    return share if images.dim() == 4 else share[0]
