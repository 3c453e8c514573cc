"""Feed-forward style transfer (Johnson, Alahi and Fei-Fei 2016): a transformation network trained
with perceptual losses, so that stylising an image is one forward pass instead of an optimisation.

``style-net`` (a registered model, trained by the engine: ``genlab train style-net --style
STYLE.jpg --data folder:PHOTOS --set image_size=256``):

- the transformation network: a reflection-padded 9x9 conv, two stride-2 3x3 convs (x1/4), 5
  residual blocks (conv-IN-ReLU-conv-IN plus the input), two upsampling layers back to the input's
  size, and a 9x9 conv to RGB; instance normalisation (affine) after every conv but the last, ReLU
  after every norm outside the residual branch's end. ``width`` (32, the paper's) is the first
  layer's channels; the others are 2x and 4x it. ``upsample``: ``resize`` (nearest-neighbour
  upsampling then a 3x3 conv, the "resize-convolution" of Odena et al. 2016, which avoids the
  checkerboard of strided transposed convs) or ``transposed`` (3x3 fractionally strided convs, as
  in the paper). Each upsampling layer returns exactly the size its downsampling layer received,
  so any image of at least 5x5 pixels comes back at its own size (the network is fully
  convolutional; reflection padding keeps borders free of dark frames). The output passes through
  a sigmoid into [0, 1] (the paper's scaled tanh, 0.5 + 0.5 tanh(a), is sigmoid(2a)).
- the loss (``loss(x)``), with the style preset's network, layers and weights (``genlab.style.nst``
  ``PRESETS``) and y = net(x): ``content_weight * sum_l 1/2 mean (F_l(y) - F_l(x))^2`` at the
  content layers (the input is its own content target) + ``style_weight * style_loss`` of y's
  Grams against the fixed style image's (computed once, kept as non-persistent buffers) +
  ``tv_weight * tv_loss(y, "mean")``: exactly the terms ``genlab stylize`` optimises, so weights
  carry over. The logged ``content``, ``style`` and ``tv`` are the weighted terms (they sum to
  ``loss``).

The loss network is frozen (no gradients, eval mode) and is not a submodule: it is outside
``parameters()`` (so outside the optimizer) and outside the state dict (``model.safetensors``
holds the transformation network only, ~1.7M parameters at width 32). It is built when a new run
starts (``init_weights``), or on the first ``loss`` call (a resumed run, a model made with
``create_model``), from the preset: ImageNet weights from the local cache (a WeightsError naming
the missing file otherwise; only ``lite0`` has them offline here), a ``loss_net_weights`` file,
or with ``random_weights`` a seeded untrained network (tests and timing only; warns). So a
reloaded run stylises images without the style image or the loss network's weights, but
continuing its training (``--resume``) needs both again.

``stylize_files(model, images, out)`` runs a trained network over image files (``genlab
stylize --net RUN_DIR IMAGES... --out DIR_OR_FILE``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import choice, field
from ..errors import ConfigError, DataError, GenlabError
from ..models.base import GenModel
from ..registry import register_model
from .nst import MIN_SIDE, PRESETS, content_loss, gram, load_image, resize, style_loss, tv_loss

MIN_NET_SIDE = 5  # the 9x9 reflection padding needs 5 px; the x1/4 level's 3x3 padding needs 2 px there
_PRESET_DEFAULT = -1.0


# ---------------------------------------------------------------- the transformation network

class _Conv(nn.Sequential):
    """Reflection padding then a conv (same size at stride 1, ceil(H/2) at stride 2)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


def _norm(c: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(c, affine=True)


class ResidualBlock(nn.Module):
    """conv3-IN-ReLU-conv3-IN plus the input (no ReLU after the sum, as in Johnson et al.'s
    supplementary material)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_Conv(c, c, 3), _norm(c), nn.ReLU(), _Conv(c, c, 3), _norm(c))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """x2 upsampling to an exact target size: nearest-neighbour resize then a reflection-padded
    3x3 conv (``resize``), or a 3x3 transposed conv of stride 2 (``transposed``)."""

    def __init__(self, cin: int, cout: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode == "resize":
            self.conv = _Conv(cin, cout, 3)
        else:
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if self.mode == "resize":
            return self.conv(F.interpolate(x, size=size, mode="nearest"))
        return self.conv(x, output_size=list(size))  # output_padding chosen to hit the size


class TransformNet(nn.Module):
    """Johnson et al.'s image transformation network; see the module docstring."""

    def __init__(self, width: int = 32, blocks: int = 5, upsample: str = "resize", in_channels: int = 3):
        super().__init__()
        w = width
        self.head = nn.Sequential(_Conv(in_channels, w, 9), _norm(w), nn.ReLU())
        self.down1 = nn.Sequential(_Conv(w, 2 * w, 3, 2), _norm(2 * w), nn.ReLU())
        self.down2 = nn.Sequential(_Conv(2 * w, 4 * w, 3, 2), _norm(4 * w), nn.ReLU())
        self.res = nn.Sequential(*(ResidualBlock(4 * w) for _ in range(blocks)))
        self.up1, self.norm1 = Upsample(4 * w, 2 * w, upsample), _norm(2 * w)
        self.up2, self.norm2 = Upsample(2 * w, w, upsample), _norm(w)
        self.tail = _Conv(w, 3, 9)

    def logits(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < MIN_NET_SIDE:
            raise GenlabError(f"style-net: images need at least {MIN_NET_SIDE}x{MIN_NET_SIDE} pixels, "
                              f"got {x.shape[-1]}x{x.shape[-2]}")
        h0 = self.head(x)
        h1 = self.down1(h0)
        h = self.res(self.down2(h1))
        h = F.relu(self.norm1(self.up1(h, tuple(h1.shape[-2:]))))
        h = F.relu(self.norm2(self.up2(h, tuple(h0.shape[-2:]))))
        return self.tail(h)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(x))


# ---------------------------------------------------------------- the model

@dataclass
class StyleNetConfig:
    """Feed-forward style transfer (the `model.*` fields of `genlab train style-net`)."""

    style: str = field("", "the style image (png, jpg, ...); stored as an absolute path (--style PATH)")
    preset: str = choice("lite0", tuple(PRESETS), "loss network, layers and default weights of genlab.style's presets (lite0: efficientnet_lite0, whose ImageNet weights are available offline; lectures: VGG16; gatys: VGG19)")
    content_weight: float = field(_PRESET_DEFAULT, "weight of the content loss (-1: the preset's)")
    style_weight: float = field(_PRESET_DEFAULT, "weight of the style loss (-1: the default, 2e5 for lite0, a fifth of stylize's 1e6, else the preset's)")
    tv_weight: float = field(_PRESET_DEFAULT, "weight of the total-variation loss, mean squared neighbour difference (-1: the preset's)")
    content_layers: list[str] = field([], "content layers (empty: the preset's)")
    style_layers: list[str] = field([], "style layers, equally weighted (empty: the preset's, with its layer weights)")
    style_size: int = field(0, "the style image's longer side in pixels when its Grams are computed (0: the training images' side)")
    width: int = field(32, "channels of the first conv layer (the downsampling layers have 2x and 4x)")
    residual_blocks: int = field(5, "residual blocks at 1/4 resolution")
    upsample: str = choice("resize", ("resize", "transposed"), "upsampling layers: nearest resize + conv (no checkerboard) or transposed conv (the paper's)")
    loss_net_weights: str = field("", "the loss network's weights: empty for the cached ImageNet weights, or a .pth/.safetensors state dict")
    download: bool = field(False, "allow torchvision to download the loss network's ImageNet weights if missing from the torch hub cache")
    random_weights: bool = field(False, "an untrained, seeded loss network: the result is meaningless (tests and speed measurements only; warns)")

    def validate(self) -> None:
        for name in ("content_weight", "style_weight", "tv_weight"):
            v = getattr(self, name)
            if not math.isfinite(v) or (v < 0 and v != _PRESET_DEFAULT):
                raise ConfigError(f"{name}: expected a finite weight >= 0 (or -1 for the preset's), got {v}")
        if self.width < 1 or self.residual_blocks < 0:
            raise ConfigError(f"width: expected width >= 1 and residual_blocks >= 0, got {self.width} and "
                              f"{self.residual_blocks}")
        if self.style_size != 0 and self.style_size < MIN_SIDE:
            raise ConfigError(f"style_size: expected 0 (the training images' side) or at least {MIN_SIDE}, got "
                              f"{self.style_size}")
        if self.random_weights and self.loss_net_weights:
            raise ConfigError("random_weights: random_weights and loss_net_weights exclude each other; choose one")


# The style weight a transformation network gets by default, where it differs from the preset's
# (which is tuned for optimising one image). lite0: 240 Adam steps (lr 1e-3, batch 4) at 256 px on
# 10 photos with starry-night: the optimisation's 1e6 loses much of the photos' content, 5e4 keeps
# the content and takes on the palette but hardly any texture, 2e5 keeps the content and takes on
# more of the texture (genlab bench style-net measures the result). The VGG presets' were never
# tried (no VGG weights offline) and stay the preset's.
NET_STYLE_WEIGHT = {"lite0": 2e5}


def _resolved(cfg: StyleNetConfig) -> dict:
    """The preset's values where the config leaves them to it (the style weight from
    ``NET_STYLE_WEIGHT`` where it has the preset)."""
    p = PRESETS[cfg.preset]
    pick = lambda v, d: d if v == _PRESET_DEFAULT else v  # noqa: E731
    s_layers = list(cfg.style_layers) or list(p.style_layers)
    return {"content_weight": pick(cfg.content_weight, p.content_weight),
            "style_weight": pick(cfg.style_weight, NET_STYLE_WEIGHT.get(cfg.preset, p.style_weight)),
            "tv_weight": pick(cfg.tv_weight, p.tv_weight),
            "content_layers": list(cfg.content_layers) or list(p.content_layers),
            "style_layers": s_layers,
            "style_layer_weights": ([1.0 / len(s_layers)] * len(s_layers) if cfg.style_layers
                                    else list(p.style_layer_weights))}


def _style_path(style: str) -> Path:
    if not style:
        raise ConfigError("style: name the style image (genlab train style-net --style STYLE.jpg, or "
                          "--set style=PATH)")
    p = Path(style).expanduser()
    if not p.is_file():
        raise DataError(f"style image {style}: no such file")
    return p.resolve()


class _LossNet:
    """The frozen loss network (a FeatureExtractor) with its layers and weights. A plain object,
    so that nn.Module never registers it: not in parameters(), state_dict() or the optimizer."""

    def __init__(self, ext, c_layers, s_layers, s_weights, cw, sw, tw):
        self.ext, self.c_layers, self.s_layers, self.s_weights = ext, c_layers, s_layers, s_weights
        self.cw, self.sw, self.tw = cw, sw, tw


@register_model("style-net", "feed-forward style transfer, Johnson et al. 2016: a transformation network trained with "
                "perceptual losses (--style STYLE.jpg --data folder:PHOTOS)")
class StyleNet(GenModel):
    """A transformation network trained to paint images in one style; see the module docstring."""

    Config = StyleNetConfig
    name = "style-net"

    def __init__(self, config: StyleNetConfig, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        if len(self.shape) != 3 or self.shape[0] not in (1, 3):
            raise ConfigError(f"style-net: needs images (1 or 3 x H x W), the data set's items have shape {self.shape}")
        if not self.unit_range:
            raise ConfigError(f"style-net: needs images with values in [0, 1], the data set's span {self.value_range}")
        self.net = TransformNet(config.width, config.residual_blocks, config.upsample)
        self._loss: _LossNet | None = None

    # --- configuration from the data / a new run ---------------------------------------------
    @classmethod
    def prepare_config(cls, cfg: dict, data) -> tuple[dict, str | None]:
        """A new run: the style image checked and stored absolute, the preset's loss weights
        written out (so config.json says what was used; empty layer lists stay the preset's)."""
        from ..config import from_dict

        cfg = dict(cfg)
        cfg["style"] = str(_style_path(cfg.get("style", "")))
        r = _resolved(from_dict(StyleNetConfig, cfg, where="model style-net"))
        for key in ("content_weight", "style_weight", "tv_weight"):
            cfg[key] = r[key]
        side = max(data.shape[1:]) if len(data.shape) == 3 else 0
        msg = (f"style-net: training on {side}x{side} px images (data.image_size); Johnson et al. trained at 256 "
               "(--set image_size=256)") if 0 < side < 128 else None
        return cfg, msg

    def init_weights(self) -> None:
        """A new run: build the loss network now, so a missing style image or missing weights
        stop the run before its directory is made."""
        self.loss_network()

    def loss_network(self):
        """The frozen ``FeatureExtractor`` of the loss (built on first use)."""
        return self._loss_net().ext

    def _loss_net(self) -> _LossNet:
        if self._loss is None:
            with torch.random.fork_rng(devices=[]):  # building a network draws init values: keep training's RNG
                self._loss = self._build_loss()
        return self._loss

    def _build_loss(self) -> _LossNet:
        from .features import FeatureExtractor, resolve_style_layers
        from .nst import build_style_backbone

        cfg, p = self.config, PRESETS[self.config.preset]
        r = _resolved(cfg)
        style_img = load_image(_style_path(cfg.style))
        bb = build_style_backbone(p.backbone, cfg.loss_net_weights or None, allow_download=cfg.download,
                                  random_weights=cfg.random_weights, seed=0)
        resolve_style_layers(bb, r["content_layers"] + r["style_layers"])  # a bad name: one clear error
        ext = FeatureExtractor(bb, r["content_layers"] + r["style_layers"], pool=p.pool)
        side = cfg.style_size or max(self.shape[1:])
        h, w = style_img.shape[-2:]
        s = side / max(h, w)
        hw = (max(1, round(h * s)), max(1, round(w * s)))
        if min(hw) < MIN_SIDE:
            raise GenlabError(f"style image {cfg.style}: {hw[1]}x{hw[0]} px at style_size {side}; the loss network "
                              f"needs {MIN_SIDE} px on the shorter side (raise style_size)")
        device = next(self.parameters()).device
        ext.to(device)
        with torch.no_grad():
            feats = ext(resize(style_img, hw).to(device), r["style_layers"])
        for i, n in enumerate(r["style_layers"]):
            self.register_buffer(f"style_gram_{i}", gram(feats[n]), persistent=False)
        self.weights_source = f"transformation network: random init; loss network {bb.name}: {bb.weights}"
        return _LossNet(ext, r["content_layers"], r["style_layers"], r["style_layer_weights"],
                        r["content_weight"], r["style_weight"], r["tv_weight"])

    def _ready(self, x: Tensor) -> tuple[_LossNet, Tensor]:
        ln = self._loss_net()
        if ln.ext.mean.device != x.device:  # the engine moved the model after the loss network was built
            ln.ext.to(x.device)
        return ln, (x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)

    def style_grams(self) -> list[Tensor]:
        ln = self._loss_net()
        return [getattr(self, f"style_gram_{i}") for i in range(len(ln.s_layers))]

    # --- the network --------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Images (N, 1 or 3, H, W) in [0, 1] -> stylised RGB (N, 3, H, W) in [0, 1], same size."""
        return self.net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)

    def stylize(self, x: Tensor) -> Tensor:
        return self(x)

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        ln, x = self._ready(x)
        y = self.net(x)
        f = ln.ext(y)
        with torch.no_grad():
            target = ln.ext(x, ln.c_layers)
        lc = ln.cw * sum(content_loss(f[n], target[n], normalize=True) for n in ln.c_layers)
        ls = ln.sw * style_loss([gram(f[n]) for n in ln.s_layers], self.style_grams(), ln.s_weights)
        lt = ln.tw * tv_loss(y, "mean")
        return {"loss": lc + ls + lt, "content": lc.detach(), "style": ls.detach(), "tv": lt.detach()}

    @torch.no_grad()
    def eval_batch(self, x: Tensor) -> dict[str, Tensor]:
        """Per image: the weighted ``content``, ``style`` and ``tv`` terms and their sum ``loss``
        (their batch mean is ``loss(x)``)."""
        ln, x = self._ready(x)
        y = self.net(x)
        f, target = ln.ext(y), ln.ext(x, ln.c_layers)
        per = lambda t: t.flatten(1).mean(1)  # noqa: E731
        lc = ln.cw * sum(0.5 * per((f[n] - target[n]).pow(2)) for n in ln.c_layers)
        ls = ln.sw * sum(w * per((gram(f[n]) - a).pow(2)) for n, a, w in zip(ln.s_layers, self.style_grams(),
                                                                              ln.s_weights))
        tv = ((y[..., :, 1:] - y[..., :, :-1]).pow(2).flatten(1).sum(1)
              + (y[..., 1:, :] - y[..., :-1, :]).pow(2).flatten(1).sum(1)) / y[0].numel()
        lt = ln.tw * tv
        return {"loss": lc + ls + lt, "content": lc, "style": ls, "tv": lt}

    def extra_repr(self) -> str:
        return f"style={self.config.style!r}, preset={self.config.preset}"


# ---------------------------------------------------------------- stylising files

def output_files(images: list[str | Path], out: str | Path) -> list[Path]:
    """Where each image's result goes: ``out`` itself for one image and an ``out`` ending in
    .png, else ``out/STEM.png`` per image (``out`` a folder). Two results on one path, or a
    result on an input, raise a GenlabError."""
    out = Path(out)
    ins = [Path(p) for p in images]
    if not ins:
        raise GenlabError("name at least one image to stylise")
    if out.suffix:
        if out.suffix.lower() != ".png":
            raise GenlabError(f"--out {out}: expected a .png file name or a folder")
        if len(ins) > 1:
            raise GenlabError(f"--out {out}: {len(ins)} images need a folder, not one file name")
        if out.is_dir():
            raise GenlabError(f"--out {out}: a folder of that name exists")
        paths = [out]
    else:
        if out.exists() and not out.is_dir():
            raise GenlabError(f"--out {out}: exists and is not a folder")
        paths = [out / f"{p.stem}.png" for p in ins]
        seen: dict[Path, Path] = {}
        for p, q in zip(ins, paths):
            if q in seen:
                raise GenlabError(f"--out {out}: {seen[q]} and {p} would both be written to {q}")
            seen[q] = p
    resolved = {p.resolve() for p in ins}
    for q in paths:
        if q.resolve() in resolved:
            raise GenlabError(f"--out {out}: would overwrite the input {q}; choose another folder or name")
    return paths


@torch.inference_mode()
def stylize_files(model: StyleNet, images: list[str | Path], out: str | Path, *, size: int | None = None,
                  device=None) -> list[dict]:
    """Stylise image files with a trained ``style-net`` (e.g. ``genlab.load_run(RUN).model``) and
    write PNGs atomically (see ``output_files``). ``size``: the longer side each image is resized
    to first (aspect ratio kept; default: its own size). Returns per image ``input``, ``output``,
    ``size`` (W, H) and ``ms`` (the network's forward pass, in milliseconds; the first image
    includes warm-up). Every input is read before anything is written."""
    from ..io import atomic_write_bytes
    from .files import png_bytes

    if not isinstance(model, StyleNet):
        raise GenlabError(f"expected a style-net model, got {getattr(model, 'name', type(model).__name__)}")
    if size is not None and (not isinstance(size, int) or size < MIN_NET_SIDE):
        raise GenlabError(f"--size: expected at least {MIN_NET_SIDE} pixels, got {size}")
    paths = output_files(images, out)
    xs = []
    for p in images:
        x = load_image(p)
        if size is not None:
            h, w = x.shape[-2:]
            s = size / max(h, w)
            x = resize(x, (max(1, round(h * s)), max(1, round(w * s))))
        if min(x.shape[-2:]) < MIN_NET_SIDE:
            raise GenlabError(f"{p}: {x.shape[-1]}x{x.shape[-2]} px; the network needs at least {MIN_NET_SIDE} px "
                              "on the shorter side")
        xs.append(x)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    was_training = model.training
    model.eval().to(dev)
    results = []
    try:
        for p, q, x in zip(images, paths, xs):
            x = x.to(dev)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            y = model(x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            ms = (time.perf_counter() - t0) * 1000
            q.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(q, png_bytes(y.cpu()))
            results.append({"input": str(p), "output": str(q), "size": (int(y.shape[-1]), int(y.shape[-2])), "ms": ms})
    finally:
        model.train(was_training)
    return results
