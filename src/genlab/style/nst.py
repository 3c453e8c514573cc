"""Neural style transfer (Gatys, Ecker and Bethge 2016): optimise an image so that its deep
features match a content image's and its feature correlations (Gram matrices) a style image's.

Losses (the lectures' formulas, with the normalisations said here):

- ``gram(F)``: for F of shape (N, C, H, W), ``G = F F^T / (C H W)`` (N, C, C): the channel
  correlations averaged over the positions and divided by the channel count, so that layers of
  different sizes, and images of different sizes, give Grams of comparable scale.
- ``style_loss``: ``sum_l w_l * mean((G_l - A_l)^2)``, the mean over the C x C entries of the
  squared difference of the result's and the style's Grams. With ``G`` as above this is
  Gatys' ``E_l = 1/(4 N_l^2 M_l^2) sum (G - A)^2`` times ``4 / C_l^2`` (an MSE instead of a sum).
- ``content_loss``: the lecture's ``1/2 sum (F - P)^2``; ``stylize`` uses it normalised by the
  number of elements (``1/2 mean``) so that the weights do not depend on the image size
  (multi-scale runs one weight setting at several sizes).
- ``tv_loss``: total variation, the sum of the squared differences between horizontal and vertical
  neighbours (``reduction="sum"``); ``stylize`` uses ``"mean"`` (divided by the number of elements).

``stylize`` optimises the pixels (in [0, 1], clamped) with ``optimize_input``; the presets name
the network, the layers and the weights.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import GenlabError
from .features import FeatureExtractor, resolve_style_layers
from .optimize import OPTIMIZERS, optimize_input

INITS = ("content", "noise", "style")
MIN_SIDE = 16  # VGG's block5 needs 16 px (4 poolings), efficientnet's /32 stage works from 16 too
RANDOM_WARNING = ("random weights: the network is untrained, so the stylised image is meaningless "
                  "(only for tests and speed measurements)")


# ---------------------------------------------------------------- losses

def gram(f: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, C): ``F F^T / (C H W)``, F the activations flattened over positions."""
    n, c, h, w = f.shape
    x = f.reshape(n, c, h * w)
    if n == 1:  # one image (optimisation): a 2-D product, whose backward accumulates in place (~5% faster at 256 px)
        return (x[0] @ x[0].t()).unsqueeze(0) / (c * h * w)
    return x @ x.transpose(1, 2) / (c * h * w)


def content_loss(f: Tensor, p: Tensor, normalize: bool = False) -> Tensor:
    """``1/2 sum (F - P)^2`` (the lecture's L_content); ``normalize`` divides by ``F.numel()``."""
    d = 0.5 * (f - p).pow(2).sum()
    return d / f.numel() if normalize else d


def style_loss(grams: list[Tensor], targets: list[Tensor], weights: list[float]) -> Tensor:
    """``sum_l w_l * mean((G_l - A_l)^2)`` over the layers' Grams (see ``gram``)."""
    return sum(w * (g - a).pow(2).mean() for g, a, w in zip(grams, targets, weights))


def tv_loss(x: Tensor, reduction: str = "sum") -> Tensor:
    """Total variation of images (N, C, H, W): the sum of squared differences between each pixel
    and its right and lower neighbours; ``reduction="mean"`` divides that sum by ``x.numel()``."""
    s = (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum() + (x[..., 1:, :] - x[..., :-1, :]).pow(2).sum()
    return s / x.numel() if reduction == "mean" else s


# ---------------------------------------------------------------- colour

# NTSC YIQ. The I and Q rows sum to 0, so grey (R = G = B) has no chroma and Y is luminance.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
                    dtype=torch.float64)
_RGB = torch.linalg.inv(_YIQ)


def rgb_to_yiq(x: Tensor) -> Tensor:
    """(N, 3, H, W) RGB -> YIQ (computed in float64, returned in x's dtype)."""
    return torch.einsum("ij,njhw->nihw", _YIQ, x.double()).to(x.dtype)


def yiq_to_rgb(x: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB, x.double()).to(x.dtype)


def match_luminance(style_y: Tensor, content_y: Tensor) -> Tensor:
    """The style luminance shifted and scaled to the content's mean and standard deviation
    (Gatys et al. 2017, luminance-only transfer), clamped to [0, 1]."""
    s, c = style_y.double(), content_y.double()
    out = (s - s.mean()) * (c.std() / s.std().clamp_min(1e-8)) + c.mean()
    return out.clamp(0, 1).to(style_y.dtype)


def combine_luminance(y: Tensor, content: Tensor) -> Tensor:
    """RGB with the luminance ``y`` (N, 1, H, W) and the chroma (I, Q) of ``content`` (N, 3, H, W).
    Where ``y`` with that chroma would leave the RGB cube, ``y`` is clipped per pixel to the range
    that stays inside it (never empty: the content's own luminance lies in it), so the chroma is
    kept exactly and the result is a valid image in [0, 1]."""
    yiq = rgb_to_yiq(content.double())
    off = torch.einsum("ij,njhw->nihw", _RGB[:, 1:], yiq[:, 1:])  # each RGB channel minus its Y part
    a = _RGB[:, 0].view(1, 3, 1, 1)  # ~1
    lo, hi = ((0 - off) / a).amax(1, keepdim=True), ((1 - off) / a).amin(1, keepdim=True)
    yy = torch.minimum(torch.maximum(y.double(), lo), hi)
    return yiq_to_rgb(torch.cat([yy, yiq[:, 1:]], 1)).clamp(0, 1).to(content.dtype)


# ---------------------------------------------------------------- images

def load_image(path: str | Path) -> Tensor:
    """An image file as RGB (1, 3, H, W) in [0, 1]; a missing, truncated or unreadable file
    raises a DataError naming it (see :func:`genlab.data.files.open_image`)."""
    from ..data.files import open_image

    im = open_image(Path(path), "RGB")
    a = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    w, h = im.size
    return a.view(h, w, 3).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def _as_image(x, what: str) -> Tensor:
    if isinstance(x, (str, Path)):
        return load_image(x)
    if not isinstance(x, Tensor):
        raise GenlabError(f"{what}: expected an image file or a tensor, got {type(x).__name__}")
    x = x.detach().float()
    x = x.unsqueeze(0) if x.ndim == 3 else x.view(1, 1, *x.shape) if x.ndim == 2 else x
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise GenlabError(f"{what}: expected one image (3, H, W) or (1, 3, H, W), got shape {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _fit(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled so that the longer side is ``side``."""
    s = side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def resize(x: Tensor, hw: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


# ---------------------------------------------------------------- presets

@dataclass(frozen=True)
class Preset:
    backbone: str
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    style_layer_weights: tuple[float, ...]
    content_weight: float
    style_weight: float
    tv_weight: float
    pool: str
    about: str


# Loss weights: lite0's were chosen by eye (skimage's chelsea in the style of its
# immunohistochemistry image, 128-160 px: content and style terms end comparable, tv 10 removes the
# checkerboard of the strided depthwise convs). The VGG presets' style weight 1e6 is the scale the
# PyTorch tutorial uses with these Grams on torchvision-normalised inputs; it was not tried here,
# as no VGG weights were available offline.
_LITE0_STYLE = ("bn1", "blocks.1.0.bn2", "blocks.2.0.bn2", "blocks.3.0.bn2", "blocks.5.0.bn2")
PRESETS: dict[str, Preset] = {
    "lectures": Preset(
        "vgg16", ("block2_conv2",), ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"),
        (0.2,) * 5, 1.0, 1e6, 1.0, "max",
        "the lectures' Keras example: VGG16, content block2_conv2, style the last conv of each block (ReLU outputs)"),
    # Gatys' Caffe VGG19 ran its ReLUs in place, so the blobs called conv4_2 etc. held the
    # rectified outputs: in torchvision's terms relu4_2 and relu1_1 ... relu5_1.
    "gatys": Preset(
        "vgg19", ("relu4_2",), ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        (0.2,) * 5, 1.0, 1e6, 0.0, "avg",
        "Gatys et al. 2016: VGG19 with average pooling, content conv4_2, style conv1_1 ... conv5_1 (rectified)"),
    # efficientnet_lite0 (ReLU6, no squeeze-excitation): the rectified depthwise outputs of the
    # first block at each resolution (/2 stem, /4, /8, /16, /32), the analogue of VGG's
    # conv1_1 ... conv5_1; content at the /8 stage output, as conv4_2 sits at /8 in VGG.
    "lite0": Preset(
        "efficientnet_lite0", ("blocks_s8",), _LITE0_STYLE, (0.2,) * 5, 1.0, 1e6, 10.0, "max",
        "efficientnet_lite0 (ImageNet weights offline): content blocks_s8, style the first rectified "
        "depthwise output at /2, /4, /8, /16, /32"),
}


def _layers(arg, default: tuple[str, ...], what: str) -> list[str]:
    if arg is None:
        return list(default)
    names = [n.strip() for n in (arg.split(",") if isinstance(arg, str) else arg) if n and n.strip()]
    if not names:
        raise GenlabError(f"{what}: expected at least one layer name")
    return names


def build_style_backbone(name: str, weights: str | None = None, *, allow_download: bool = False,
                         random_weights: bool = False, seed: int = 0, keep_head: bool = False,
                         purpose: str = "stylise with"):
    """The backbone for input optimisation (style transfer, visualisation): pretrained
    (``weights`` None or "imagenet": the cached ImageNet weights, a WeightsError naming the
    missing file otherwise; or a weights file), or with ``random_weights`` a seeded random init,
    with a warning that results are meaningless; never random weights unasked. ``keep_head``
    keeps the ImageNet 1000-class head (its units are then ImageNet classes)."""
    from ..transfer.backbones import build_backbone

    if random_weights:
        if weights not in (None, "none"):
            raise GenlabError(f"random weights and weights={weights!r}: choose one")
        warnings.warn(RANDOM_WARNING, stacklevel=3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_backbone(name, 1000, "none")
    if weights == "none":
        raise GenlabError(f"weights='none' would {purpose} an untrained network; pass random_weights=True "
                          "(--random-weights) if that is really meant")
    w = weights or "imagenet"
    return build_backbone(name, 1000, w, allow_download=allow_download, keep_head=keep_head and w == "imagenet")


def _fail_fast(name: str, weights, allow_download: bool, random_weights: bool, check_layers) -> None:
    """Bad layer names and missing ImageNet weights found on the architecture built on the meta
    device (no memory, no initialisation: instant), before the seconds a real VGG takes to build."""
    from ..transfer.backbones import build_backbone, pretrained_source

    with torch.device("meta"):
        check_layers(build_backbone(name, 1000, "none"))
        if not random_weights and weights in (None, "imagenet") and not allow_download \
                and pretrained_source(name) is None:
            build_backbone(name, 1000, "imagenet")  # raises the WeightsError naming the missing file


def stylize(content, style, *, preset: str = "lectures", backbone=None, weights: str | None = None,
            allow_download: bool = False, content_layers=None, style_layers=None, style_layer_weights=None,
            content_weight: float | None = None, style_weight: float | None = None, tv_weight: float | None = None,
            optimizer: str = "lbfgs", steps: int = 200, lr: float | None = None, init: str = "content",
            size: int | None = None, preserve_color: bool = False, scales: int = 1, seed: int = 0,
            random_weights: bool = False, pool: str | None = None, device=None, callback=None
            ) -> tuple[Tensor, dict]:
    """Stylise ``content`` with ``style`` (image files, or tensors (3, H, W) / (1, 3, H, W) in [0, 1]).

    Everything not given comes from ``PRESETS[preset]``. ``backbone``: a name for
    ``build_backbone`` or a built ``Backbone`` (then ``weights`` and ``random_weights`` are
    ignored). ``weights``: None (ImageNet, never downloaded unless ``allow_download``; a missing
    file raises the WeightsError naming it) or a weights file. ``random_weights`` builds a seeded
    untrained network, for tests and timing only (warns). Layers: names as in
    ``genlab.style.features``; ``style_layer_weights`` default equal (1/number of layers).

    Minimises ``content_weight * sum_l 1/2 mean (F_l - P_l)^2 + style_weight * style_loss +
    tv_weight * tv_loss(x, "mean")`` over the pixels (clamped to [0, 1]) with ``optimizer``
    "lbfgs" (``steps`` = iterations = loss evaluations) or "adam" (``steps``
    steps, ``lr`` default 0.02), ``steps`` at every scale. ``init``: the content image, uniform
    noise (seeded) or the style image resized to the content's size.

    ``size``: the result's longer side (default: the content's own size); the aspect ratio is
    kept, and the style image is resized to the same longer side. ``scales=N`` runs at
    ``size / 2^(N-1)``, ..., ``size / 2``, ``size``, each scale starting from the previous result
    upsampled (bilinear). ``preserve_color``: luminance-only transfer (Gatys et al. 2017): the
    style's YIQ luminance matched to the content's mean and std, the optimisation on luminance
    (fed to the network as grey RGB), then the result's luminance combined with the content's I
    and Q (``combine_luminance``).

    Returns the image (1, 3, H, W) in [0, 1] and a history: per loss evaluation ``total``,
    ``content``, ``style``, ``tv`` (the weighted terms, summing to ``total``) and ``seconds``
    (cumulative); ``scale_starts`` (index of each scale's first evaluation), ``sizes``,
    ``final`` (the losses of the returned image at the last scale), ``backbone``, ``weights``,
    the layers and weights used. ``callback(i, x, parts)`` as in ``optimize_input`` (``i`` counts
    over all scales); returning True stops the current scale.
    """
    from ..transfer.backbones import Backbone

    if preset not in PRESETS:
        raise GenlabError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if optimizer not in OPTIMIZERS:
        raise GenlabError(f"optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    if init not in INITS:
        raise GenlabError(f"init {init!r}: expected one of {', '.join(INITS)}")
    for what, v in (("steps", steps), ("scales", scales)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise GenlabError(f"{what}: expected a positive integer, got {v!r}")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise GenlabError(f"size: expected a positive number of pixels, got {size!r}")
    c_layers = _layers(content_layers, p.content_layers, "content layers")
    s_layers = _layers(style_layers, p.style_layers, "style layers")
    s_weights = [1.0 / len(s_layers)] * len(s_layers) if style_layer_weights is None and style_layers is not None \
        else list(p.style_layer_weights if style_layer_weights is None else style_layer_weights)
    if len(s_weights) != len(s_layers):
        raise GenlabError(f"style layer weights: {len(s_weights)} weights for {len(s_layers)} style layers")
    cw, sw, tw = (p.content_weight if content_weight is None else content_weight,
                  p.style_weight if style_weight is None else style_weight,
                  p.tv_weight if tv_weight is None else tv_weight)
    for what, v in (("content weight", cw), ("style weight", sw), ("tv weight", tw), *(
            (f"style layer weight {i}", w) for i, w in enumerate(s_weights))):
        if not math.isfinite(v) or v < 0:
            raise GenlabError(f"{what}: expected a finite number >= 0, got {v}")

    content_img, style_img = _as_image(content, "content"), _as_image(style, "style")
    h, w = content_img.shape[-2:] if size is None else _fit(*content_img.shape[-2:], size)
    sizes = [_fit(h, w, max(1, round(max(h, w) / 2 ** k))) for k in range(scales - 1, 0, -1)] + [(h, w)]
    if min(sizes[0]) < MIN_SIDE:
        raise GenlabError(f"size: the {'coarsest scale' if scales > 1 else 'image'} would be {sizes[0][1]}x"
                          f"{sizes[0][0]} px; the networks need at least {MIN_SIDE} px on the shorter side "
                          "(raise --size or lower --scales)")

    def check_layers(b):
        try:
            resolve_style_layers(b, c_layers + s_layers)
        except GenlabError as e:
            if b.name == p.backbone or (content_layers is not None and style_layers is not None):
                raise
            raise GenlabError(f"{e}; preset {preset}'s layers are for {p.backbone}: give content and style layers "
                              f"for {b.name}") from None

    if isinstance(backbone, Backbone):
        bb = backbone
    else:
        name = backbone or p.backbone
        _fail_fast(name, weights, allow_download, random_weights, check_layers)
        bb = build_style_backbone(name, weights, allow_download=allow_download, random_weights=random_weights,
                                  seed=seed)
    if bb.in_channels != 3:
        raise GenlabError(f"{bb.name}: style transfer needs a 3-channel (RGB) backbone")
    check_layers(bb)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ext = FeatureExtractor(bb, c_layers + s_layers, pool=pool or p.pool).to(dev)
    gen = torch.Generator().manual_seed(seed)

    hist: dict = {"total": [], "content": [], "style": [], "tv": [], "seconds": [], "scale_starts": [],
                  "sizes": [list(s) for s in sizes]}
    try:
        result = _run_scales(ext, content_img, style_img, sizes, hist, c_layers, s_layers, s_weights, cw, sw, tw,
                             optimizer, steps, lr, init, preserve_color, gen, dev, callback)
    finally:
        ext.remove()  # the hooks stay on the backbone's modules otherwise
    hist.update(backbone=bb.name, weights=bb.weights, preset=preset, optimizer=optimizer, init=init,
                content_layers=c_layers, style_layers=s_layers, style_layer_weights=s_weights,
                content_weight=cw, style_weight=sw, tv_weight=tw, evaluations=len(hist["total"]))
    return result.detach().cpu(), hist


def _run_scales(ext, content_img, style_img, sizes, hist, c_layers, s_layers, s_weights, cw, sw, tw, optimizer,
                steps, lr, init, preserve_color, gen, dev, callback) -> Tensor:
    """``stylize``'s coarse-to-fine loop; fills ``hist`` and returns the result image."""
    x = None
    for k, hw in enumerate(sizes):
        c_rgb = resize(content_img, hw).to(dev)
        s_rgb = resize(style_img, _fit(*style_img.shape[-2:], max(hw))).to(dev)
        if preserve_color:
            c_y = rgb_to_yiq(c_rgb)[:, :1]
            s_y = match_luminance(rgb_to_yiq(s_rgb)[:, :1], c_y)
            c_in, s_in = c_y.expand(-1, 3, -1, -1), s_y.expand(-1, 3, -1, -1)
        else:
            c_in, s_in = c_rgb, s_rgb
        with torch.no_grad():
            targets_c = ext(c_in, c_layers)
            targets_s = [gram(f) for f in ext(s_in, s_layers).values()]
        if x is not None:
            x0 = F.interpolate(x, size=hw, mode="bilinear", align_corners=False).clamp(0, 1)
        elif init == "content":
            x0 = c_in[:, :1] if preserve_color else c_in
        elif init == "style":
            x0 = resize(s_in[:, :1] if preserve_color else s_in, hw)
        else:
            x0 = torch.rand((1, 1 if preserve_color else 3, *hw), generator=gen).to(dev)

        def loss_fn(v: Tensor, targets_c=targets_c, targets_s=targets_s) -> tuple[Tensor, dict]:
            img = v.expand(-1, 3, -1, -1) if preserve_color else v
            f = ext(img)
            lc = cw * sum(content_loss(f[n], targets_c[n], normalize=True) for n in c_layers)
            ls = sw * style_loss([gram(f[n]) for n in s_layers], targets_s, s_weights)
            lt = tw * tv_loss(v, "mean")
            return lc + ls + lt, {"content": float(lc.detach()), "style": float(ls.detach()), "tv": float(lt.detach())}

        offset, t_off = len(hist["total"]), hist["seconds"][-1] if hist["seconds"] else 0.0
        cb = None if callback is None else \
            (lambda i, v, parts, o=offset, s=k: callback(o + i, v, {**parts, "scale": s}))
        res = optimize_input(x0, loss_fn, steps=steps, optimizer=optimizer, lr=lr, clamp=(0.0, 1.0), callback=cb)
        hist["scale_starts"].append(offset)
        for key in ("total", "content", "style", "tv"):
            hist[key] += res.history.get(key, [])
        hist["seconds"] += [t + t_off for t in res.history["seconds"]]
        x = res.x
        if k == len(sizes) - 1:
            with torch.no_grad():
                total, parts = loss_fn(x)
            hist["final"] = {"total": float(total), **parts}
    return combine_luminance(x, c_rgb) if preserve_color else x.clamp(0, 1)
