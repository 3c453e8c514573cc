"""Feature visualisation by activation maximisation: what input excites a filter most?

The lectures' "(almost) style transfer": instead of matching feature statistics, gradient-ascend
an image from small random noise so that one channel ("filter") of one layer of a frozen network
fires as strongly as possible. The objective of an image ``x`` (pixels in [0, 1], normalised
with the backbone's mean and std inside, as ``FeatureExtractor`` does) is

    mean over positions of a_F(L)(x)  -  l2 * mean((x - 0.5)^2),

(a layer without positions, e.g. a Linear head, gives its unit F), maximised with Adam through
the shared input-optimisation loop ``optimize_input`` (which minimises, so the loss is its
negative), with the usual regularisers that keep the result from turning into high-frequency
noise:

- jitter: at every step the image is rolled (circularly) by a random offset of up to ``jitter``
  px in each direction before it enters the network; the gradient flows back through the roll,
  so this is exactly "roll, gradient step, roll back" (``roll``);
- blur: every ``blur_every`` steps the image is smoothed by a Gaussian of ``blur_sigma`` px
  (``gaussian_blur``, circular padding like the roll, so the image mean is kept exactly);
- clamping to [0, 1] after every step (``optimize_input``'s ``clamp``).

``visualize_layer`` optimises several filters at once, one image per filter in one batch: the
loss is the sum of the images' own objectives, the network runs in eval mode (no batch
statistics), and Adam's update is element-wise, so each image follows its own optimisation.
Adam rather than L-BFGS: the jitter makes the objective change from step to step, which breaks
L-BFGS's curvature pairs, and L-BFGS would couple the images of a batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import GenlabError
from .features import FeatureExtractor, resolve_style_layers
from .optimize import optimize_input

MIN_SIZE = 16


# ---------------------------------------------------------------- regularisers

def roll(x: Tensor, dy: int, dx: int) -> Tensor:
    """``x`` (..., H, W) shifted circularly by ``dy`` rows down and ``dx`` columns right:
    ``out[..., (i + dy) % H, (j + dx) % W] == x[..., i, j]``; ``roll(roll(x, dy, dx), -dy, -dx)``
    is ``x`` exactly."""
    return torch.roll(x, shifts=(int(dy), int(dx)), dims=(-2, -1))


def gaussian_kernel(sigma: float, max_radius: int | None = None) -> Tensor:
    """The 1-D Gaussian of ``sigma`` px, radius ceil(3 sigma) (at most ``max_radius``), summing
    to 1 (float64)."""
    r = max(1, math.ceil(3 * sigma))
    if max_radius is not None:
        r = max(0, min(r, max_radius))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Images (N, C, H, W) blurred per channel by a separable Gaussian of ``sigma`` px with
    circular padding (the image wraps around, as under ``roll``; the radius is cut to the image
    size less one). The kernel sums to 1 and the padding is circular, so every image's
    per-channel mean is unchanged. ``sigma <= 0``: ``x`` itself."""
    if sigma <= 0:
        return x
    n, c, h, w = x.shape
    out = x.reshape(n * c, 1, h, w)
    for size, horizontal in ((w, True), (h, False)):
        k = gaussian_kernel(sigma, size - 1).to(device=x.device, dtype=x.dtype)
        r = (k.numel() - 1) // 2
        if r == 0:
            continue
        if horizontal:
            out = F.conv2d(F.pad(out, (r, r, 0, 0), mode="circular"), k.view(1, 1, 1, -1))
        else:
            out = F.conv2d(F.pad(out, (0, 0, r, r), mode="circular"), k.view(1, 1, -1, 1))
    return out.reshape(n, c, h, w)


# ---------------------------------------------------------------- networks

def build_visual_backbone(name: str, weights: str | None = None, *, allow_download: bool = False,
                          random_weights: bool = False, seed: int = 0):
    """The network to visualise: ImageNet weights (``weights`` None or "imagenet", the cached
    file, with the source's 1000-class head kept so that the head's units are ImageNet classes; a
    WeightsError naming the missing file otherwise), a weights file, or with ``random_weights`` a
    seeded random init (warns: nothing learned to see)."""
    from .nst import build_style_backbone

    return build_style_backbone(name, weights, allow_download=allow_download, random_weights=random_weights,
                                seed=seed, keep_head=True, purpose="visualise")


def _check_fast(name: str, layer: str, weights, allow_download: bool, random_weights: bool) -> None:
    """A bad layer name or missing ImageNet weights, found on the architecture built on the meta
    device (instant), before a real VGG takes seconds to build."""
    from ..transfer.backbones import build_backbone, pretrained_source

    with torch.device("meta"):
        resolve_style_layers(build_backbone(name, 1000, "none"), [layer])
        if not random_weights and weights in (None, "imagenet") and not allow_download \
                and pretrained_source(name) is None:
            build_backbone(name, 1000, "imagenet")  # raises the WeightsError naming the missing file


def _backbone(backbone, layer, weights, allow_download, random_weights, seed):
    from ..transfer.backbones import Backbone

    if isinstance(backbone, Backbone):
        return backbone
    if not isinstance(backbone, str):
        raise GenlabError(f"backbone: expected a name or a Backbone, got {type(backbone).__name__}")
    _check_fast(backbone, layer, weights, allow_download, random_weights)
    return build_visual_backbone(backbone, weights, allow_download=allow_download, random_weights=random_weights,
                                 seed=seed)


def _target(name: str, act: Tensor, channels: list[int]) -> Tensor:
    """(N,): each image's mean activation of its own channel (``channels[i]`` for image i)."""
    idx = torch.arange(act.shape[0], device=act.device)
    ch = torch.as_tensor(channels, device=act.device)
    if act.ndim == 4:
        return act[idx, ch].mean(dim=(-2, -1))
    if act.ndim == 2:
        return act[idx, ch]
    if act.ndim == 3:  # tokens (N, L, D): a unit's mean over the tokens
        return act[idx, :, ch].mean(dim=-1)
    raise GenlabError(f"layer {name!r}: its output has shape {tuple(act.shape)}, not (N, C, H, W) or (N, D)")


# ---------------------------------------------------------------- the optimisation

def visualize_layer(backbone, layer: str, filters: int | list[int] = 16, *, size: int = 128, steps: int = 100,
                    lr: float = 0.05, jitter: int = 4, blur_every: int = 4, blur_sigma: float = 0.5,
                    l2: float = 0.0, noise: float = 0.02, seed: int = 0, weights: str | None = None,
                    allow_download: bool = False, random_weights: bool = False, device=None
                    ) -> tuple[Tensor, dict]:
    """Activation maximisation of several filters of ``layer``, one image per filter, optimised
    together in one batch (see the module docstring for the objective and the regularisers).

    ``backbone``: a built ``Backbone`` (used as it is; frozen and set to eval mode in place, as
    ``FeatureExtractor`` does) or a name (then ``weights``, ``allow_download`` and
    ``random_weights`` as in ``build_visual_backbone``). ``layer``: a stage or module name, or on
    VGG a Keras / Gatys name (``genlab.style.features``). ``filters``: a count K (the first K
    channels) or a list of channel indices. Each image starts as grey 0.5 plus Gaussian noise of
    standard deviation ``noise`` (seeded), ``size`` px square, with the backbone's channels.
    ``steps`` Adam steps of learning rate ``lr``; ``jitter`` px of random roll per step (0: none);
    a Gaussian blur of ``blur_sigma`` px every ``blur_every`` steps (0: none); ``l2``: the weight
    of the penalty ``mean((x - 0.5)^2)``.

    Returns the images (K, C, size, size) in [0, 1] on the CPU and a history: per step
    ``activation`` (the target activations averaged over the K images, at the jittered input
    the step was taken from), ``total`` (the loss, summed over the images) and ``seconds``; per
    filter ``start`` (the mean target activation of the initial noise, not jittered) and ``end``
    (of the result); ``filters``, ``layer``, ``backbone``, ``weights``, ``size``, ``steps``.
    """
    for what, v in (("steps", steps), ("size", size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise GenlabError(f"{what}: expected a positive integer, got {v!r}")
    if size < MIN_SIZE:
        raise GenlabError(f"size: expected at least {MIN_SIZE} px, got {size}")
    for what, v in (("jitter", jitter), ("blur_every", blur_every)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise GenlabError(f"{what}: expected an integer >= 0, got {v!r}")
    for what, v in (("lr", lr), ("blur_sigma", blur_sigma), ("l2", l2), ("noise", noise)):
        if not math.isfinite(v) or v < 0 or (what == "lr" and v == 0):
            raise GenlabError(f"{what}: expected a finite number {'> 0' if what == 'lr' else '>= 0'}, got {v}")
    bb = _backbone(backbone, layer, weights, allow_download, random_weights, seed)
    resolve_style_layers(bb, [layer])  # a bad name fails before any work
    if isinstance(filters, int) and not isinstance(filters, bool):
        if filters < 1:
            raise GenlabError(f"filters: expected a positive count, got {filters}")
        channels = list(range(filters))
    else:
        channels = [int(c) for c in filters]
        if not channels:
            raise GenlabError("filters: expected at least one channel index")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ext = FeatureExtractor(bb, [layer]).to(dev)
    gen = torch.Generator().manual_seed(seed)
    try:
        try:  # the layer's width, from one small forward pass
            with torch.no_grad():
                probe = ext(torch.full((1, bb.in_channels, size, size), 0.5, device=dev))[layer]
        except RuntimeError as e:  # e.g. small-cnn's dense layer at another size than 28 px
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GenlabError(f"{bb.name} at {size} px: the forward pass to layer {layer!r} failed ({msg}); "
                              f"try --size {bb.input_size}") from None
        width = _width(probe, layer)
        bad = [c for c in channels if not 0 <= c < width]
        if bad:
            raise GenlabError(f"filter {bad[0]}: layer {layer!r} of {bb.name} has {width} channels (0 to {width - 1})")
        k = len(channels)
        x0 = (0.5 + noise * torch.randn((k, bb.in_channels, size, size), generator=gen)).clamp(0, 1).to(dev)
        shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=gen).tolist() if jitter else None
        step = {"i": 0}

        def activations(v: Tensor) -> Tensor:
            return _target(layer, ext(v)[layer], channels)

        def loss_fn(v: Tensor) -> tuple[Tensor, dict]:
            i = step["i"]
            inp = roll(v, *shifts[i]) if shifts is not None and i < len(shifts) else v
            a = activations(inp)
            pen = (v - 0.5).pow(2).mean(dim=(1, 2, 3))
            total = (-a + l2 * pen).sum()
            return total, {"activation": float(a.detach().mean()), "l2": float(pen.detach().mean())}

        def after(i: int, v: Tensor, _parts: dict) -> None:
            # ``v`` is the optimised tensor itself (``optimize_input`` passes ``x.detach()``, which
            # shares its storage); blurring it in place smooths the image the next step starts from
            step["i"] = i + 1
            if blur_every and blur_sigma > 0 and (i + 1) % blur_every == 0:
                with torch.no_grad():
                    v.copy_(gaussian_blur(v, blur_sigma))

        with torch.no_grad():
            start = activations(x0)
        res = optimize_input(x0, loss_fn, steps=steps, optimizer="adam", lr=lr, clamp=(0.0, 1.0), callback=after)
        with torch.no_grad():
            end = activations(res.x)
    finally:
        ext.remove()
    hist = {"activation": res.history["activation"], "total": res.history["total"],
            "seconds": res.history["seconds"], "start": [float(s) for s in start.cpu()],
            "end": [float(e) for e in end.cpu()], "filters": channels, "layer": layer, "backbone": bb.name,
            "weights": bb.weights, "size": size, "steps": res.evaluations}
    return res.x.clamp(0, 1).cpu(), hist


def _width(act: Tensor, layer: str) -> int:
    if act.ndim in (2, 4):
        return int(act.shape[1])
    if act.ndim == 3:
        return int(act.shape[-1])
    raise GenlabError(f"layer {layer!r}: its output has shape {tuple(act.shape)}, not (N, C, H, W) or (N, D)")


def visualize_filter(backbone, layer: str, channel: int, *, size: int = 128, steps: int = 100, lr: float = 0.05,
                     jitter: int = 4, blur_every: int = 4, blur_sigma: float = 0.5, seed: int = 0, l2: float = 0.0,
                     noise: float = 0.02, weights: str | None = None, allow_download: bool = False,
                     random_weights: bool = False, device=None) -> tuple[Tensor, dict]:
    """The image (1, C, size, size) in [0, 1] that maximises the mean activation of filter
    ``channel`` of ``layer``, and its history, as ``visualize_layer`` with ``filters=[channel]``
    (``start`` and ``end`` are then plain numbers)."""
    img, hist = visualize_layer(backbone, layer, [channel], size=size, steps=steps, lr=lr, jitter=jitter,
                                blur_every=blur_every, blur_sigma=blur_sigma, l2=l2, noise=noise, seed=seed,
                                weights=weights, allow_download=allow_download, random_weights=random_weights,
                                device=device)
    hist.update(start=hist["start"][0], end=hist["end"][0], filter=channel)
    return img, hist


# ---------------------------------------------------------------- files

def image_png(images: Tensor) -> bytes:
    """One image (1, C, H, W) as a PNG of exactly H x W px; several as a grid (``grid_png``, one
    px of white between tiles, no enlargement). Grey images stay grey."""
    from ..images import grid_png

    if images.shape[0] == 1:
        import io

        import numpy as np
        from PIL import Image

        x = images[0].detach().float().cpu().clamp(0, 1)
        a = (x.numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()
    return grid_png(images, upscale=1)


def write_visualization(out, images: Tensor) -> None:
    """``images`` to the PNG file ``out``, atomically (see ``image_png``)."""
    from ..io import atomic_write_bytes

    atomic_write_bytes(out, image_png(images))


def summary(hist: dict, seconds: float | None = None) -> str:
    """One line: backbone, layer, filter(s), mean activation at the start and the end."""
    s, e = hist["start"], hist["end"]
    s = sum(s) / len(s) if isinstance(s, list) else s
    e = sum(e) / len(e) if isinstance(e, list) else e
    f = hist["filters"]
    which = f"filter {f[0]}" if len(f) == 1 else f"filters {f[0]}-{f[-1]} (mean of {len(f)})"
    secs = hist["seconds"][-1] if seconds is None and hist["seconds"] else (seconds or 0.0)
    return (f"visualize: {hist['backbone']} ({hist['weights']}) layer {hist['layer']} {which}: mean activation "
            f"{s:.4g} -> {e:.4g} after {hist['steps']} Adam steps at {hist['size']} px in {secs:.1f} s")


__all__ = ["build_visual_backbone", "gaussian_blur", "image_png", "roll", "summary", "visualize_filter",
           "visualize_layer", "write_visualization"]
