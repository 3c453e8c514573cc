"""What a CNN has learned: its first-layer filters and the feature maps of its layers.

The lectures ("What are CNNs learning?"): the first layers detect small features such as edges
and colour contrasts, later layers compound them into more complex features. This module makes
that visible for any genlab backbone (or a classifier run's backbone):

- ``first_layer_filters(backbone)``: the first convolution's weights, each filter min-max
  normalised on its own so that its pattern shows whatever its scale;
- ``feature_maps(backbone, x, layers)``: the activations of named layers for an input, captured
  with forward hooks during ONE forward pass (eval mode, no gradients), so every map comes from
  the very computation the classifier does;
- ``resolve_layers(backbone, names)``: layer names to modules; a name is a stage name
  (``stem``, ``layer1``, ...: the output of the stage's last module) or any module name of
  ``backbone.net`` (``layer2.0.conv1``, ``features.3``);
- ``inspect_to_dir(...)``: the PNG files of ``genlab inspect``; ``feature_panel_png(...)``: one
  figure with the input and a few channels of several layers (matplotlib, Agg).
"""
from __future__ import annotations

import difflib
import io
import math
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import GenlabError

FILTER_PX = 48  # nearest-neighbour upscaling: a filter tile is at least this many pixels wide
MAP_PX = 48  # ... and a feature-map tile at least this many


def _layer_names(backbone) -> tuple[list[str], list[str]]:
    """(stage names, module names of ``backbone.net``), in order."""
    stages = [name for name, _ in backbone.stages()]
    modules = [name for name, _ in backbone.net.named_modules() if name]
    return stages, modules


def _stage_output_module(backbone, name: str, mods: list[nn.Module]) -> nn.Module:
    """The module whose output is the stage's output: its last module that runs in the forward
    pass (a timm stage may hold a parameter-only group, which never runs)."""
    from .backbones import _ParamGroup

    run = [m for m in mods if not isinstance(m, _ParamGroup)]
    if not run:
        raise GenlabError(f"layer {name!r}: stage of {backbone.name} holds parameters only, it has no output; "
                          "name one of its modules instead (genlab inspect --list-layers)")
    return run[-1]


def resolve_layers(backbone, names: list[str]) -> list[tuple[str, nn.Module]]:
    """``names`` as (name, module) pairs: a stage name gives the stage's last module (so its
    output is the stage's output), any other name a module of ``backbone.net``. Stage names win
    where both exist (ResNet's ``layer1`` is both and gives the same output). An unknown name
    raises a GenlabError naming it, with the closest known names."""
    stages = dict(backbone.stages())
    modules = dict(backbone.net.named_modules())
    out = []
    for name in names:
        if name in stages:
            out.append((name, _stage_output_module(backbone, name, stages[name])))
        elif name and name in modules:
            out.append((name, modules[name]))
        else:
            s, m = _layer_names(backbone)
            close = difflib.get_close_matches(name, list(dict.fromkeys(s + m)), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise GenlabError(f"unknown layer {name!r} of {backbone.name}{hint}; stages: {', '.join(s)} "
                              "(genlab inspect --list-layers lists every module)")
    return out


def list_layers(backbone) -> list[str]:
    """Lines for ``--list-layers``: the stages (with their modules), then every module of
    ``backbone.net`` with its type; the name comes first on each line."""
    ids = {id(m): n for n, m in backbone.net.named_modules()}
    stages = [(name, ", ".join(ids.get(id(m), type(m).__name__) for m in mods)) for name, mods in backbone.stages()]
    modules = [(n, type(m).__name__) for n, m in backbone.net.named_modules() if n]
    width = max(len(n) for n, _ in stages + modules)
    return ([f"{n.ljust(width)}  stage: {what}" for n, what in stages]
            + [f"{n.ljust(width)}  {what}" for n, what in modules])


def default_layers(backbone) -> list[str]:
    """Every stage, input to output."""
    return [name for name, _ in backbone.stages()]


def panel_layers(backbone) -> list[str]:
    """An early, a middle and the last stage (the first, middle and last of ``stages()``)."""
    names = default_layers(backbone)
    picks = [0, (len(names) - 1) // 2, len(names) - 1]
    return [names[i] for i in dict.fromkeys(picks)]


@torch.no_grad()
def feature_maps(backbone, x: Tensor, layers: list[str]) -> dict[str, Tensor]:
    """The activations of ``layers`` for the backbone input ``x`` (already normalised and resized,
    as ``Classifier.prepare_input`` does), name -> tensor on the CPU.

    Forward hooks record the outputs during ONE forward pass of ``backbone.net`` in eval mode
    (BatchNorm with its running statistics, no dropout) under ``torch.no_grad``; the backbone's
    training mode is restored afterwards. A module run more than once in the pass (a ResNet
    block's ReLU) gives its first call's output."""
    resolved = resolve_layers(backbone, list(layers))
    out: dict[str, Tensor] = {}

    def hook(name):
        def record(_mod, _inp, output):
            if name not in out:
                if isinstance(output, (tuple, list)):
                    output = next((o for o in output if isinstance(o, Tensor)), None)
                if isinstance(output, Tensor):
                    out[name] = output.detach().cpu()
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in resolved]
    was = backbone.training
    backbone.eval()
    try:
        dev = next(backbone.parameters()).device
        backbone.net(x.to(dev))
    finally:
        for h in handles:
            h.remove()
        backbone.train(was)
    missing = [name for name, _ in resolved if name not in out]
    if missing:
        raise GenlabError(f"layer {missing[0]!r} of {backbone.name} did not run in the forward pass (or gave no "
                          "tensor); choose another layer (genlab inspect --list-layers)")
    return {name: out[name] for name, _ in resolved}


def _minmax(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``t`` scaled to [0, 1] over ``dims`` (each slice on its own); a constant slice gives 0."""
    lo, hi = t.amin(dim=dims, keepdim=True), t.amax(dim=dims, keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (t - lo) / span.clamp_min(1e-12), torch.zeros_like(t))


def first_layer_filters(backbone) -> Tensor:
    """The first convolution's filters (N, C_in, h, w), each filter min-max normalised to [0, 1]
    over its own channels and pixels (a constant filter gives 0): raw weights have arbitrary
    scales, and what shows is each filter's pattern (an edge, a colour contrast), not its size."""
    w = backbone.first_conv().weight.detach().float().cpu()
    return _minmax(w, (1, 2, 3))


def _upscale(x: Tensor, px: int) -> Tensor:
    """(N, C, h, w) enlarged by an integer factor (nearest neighbour) to at least ``px`` wide."""
    k = max(1, math.ceil(px / max(x.shape[-1], x.shape[-2])))
    return x.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1) if k > 1 else x


def filters_png(backbone) -> bytes:
    """A grid of the first-layer filters: RGB tiles for 3 input channels, grey tiles otherwise
    (one per filter and input channel; a row per filter when there are several channels)."""
    from ..images import grid_png

    f = first_layer_filters(backbone)
    n, c = f.shape[:2]
    if c == 3:
        return grid_png(_upscale(f, FILTER_PX), upscale=1)
    tiles = f.reshape(n * c, 1, *f.shape[2:])
    return grid_png(_upscale(tiles, FILTER_PX), nrow=c if c > 1 else None, upscale=1)


def channel_maps(name: str, act: Tensor, channels: int) -> Tensor:
    """The first ``channels`` channels of one example's activation ``act`` (C, H, W) as (K, 1, H, W),
    each channel min-max normalised on its own. A vector (D,) (a layer after pooling) gives
    K 1x1 maps normalised together, since a single value has no range of its own."""
    if act.ndim == 3:
        return _minmax(act[:channels].float(), (1, 2)).unsqueeze(1)
    if act.ndim == 1:
        return _minmax(act[:channels].float(), (0,)).view(-1, 1, 1, 1)
    raise GenlabError(f"layer {name!r}: its output has shape {tuple(act.shape)} per example, not a feature map "
                      "(C, H, W) or a vector (D,); choose another layer (genlab inspect --list-layers)")


def feature_panel_png(image: Tensor, maps: dict[str, Tensor], channels: int = 8, title: str | None = None,
                      dpi: int = 100, palette: bool = True) -> bytes:
    """One figure (PNG bytes): the input image (C, H, W in [0, 1]) on the left, then one row per
    layer with its first ``channels`` channels (each min-max normalised, viridis; a constant
    channel, e.g. all zero after a ReLU, is dark), the row titled with the layer name and its
    activation's shape. ``maps`` as from ``feature_maps`` (batch of 1 or more; the first example
    is shown). ``palette`` stores 256 colours (PIL's fast octree): a third of the size of full RGB,
    with no visible loss on viridis maps and a photo."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = image[0] if image.ndim == 4 else image
    rows = [(name, act[0], channel_maps(name, act[0], channels)) for name, act in maps.items()]
    k = max(r[2].shape[0] for r in rows)
    fig = Figure(figsize=(2.6 + 1.15 * k, 0.5 + 1.45 * len(rows)))
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(len(rows), 1 + k, width_ratios=[2.2] + [1] * k, wspace=0.08, hspace=0.45,
                          left=0.01, right=0.99, bottom=0.02, top=0.86 if title else 0.9)
    ax = fig.add_subplot(gs[:, 0])
    img = image.detach().float().cpu().clamp(0, 1).numpy()
    ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray" if img.shape[0] == 1 else None,
              vmin=0, vmax=1)
    ax.set_title(f"input ({img.shape[-2]}x{img.shape[-1]})", fontsize=9)
    ax.axis("off")
    for i, (name, act, m) in enumerate(rows):
        for j in range(k):
            a = fig.add_subplot(gs[i, j + 1])
            a.axis("off")
            if j < m.shape[0]:
                a.imshow(m[j, 0].numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            if j == 0:
                shape = "x".join(str(s) for s in act.shape)
                a.set_title(f"{name}  ({shape}; channels 0-{m.shape[0] - 1})", loc="left", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    if not palette:
        return buf.getvalue()
    from PIL import Image

    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def read_image(backbone, path: str | Path) -> Tensor:
    """An image file for ``backbone``: RGB (grey for a 1-channel backbone), the short side resized
    to its input size and a centred square cropped, values in [0, 1], shape (1, C, S, S). A missing
    or unreadable file raises a DataError naming it."""
    from ..data.files import read_square

    a = read_square(Path(path), backbone.input_size, "L" if backbone.in_channels == 1 else "RGB")
    return torch.from_numpy(a.copy()).float().unsqueeze(0) / 255.0


def normalise(backbone, image: Tensor) -> Tensor:
    """Images in [0, 1] normalised with the backbone's mean and std."""
    mean = torch.tensor(backbone.mean, dtype=image.dtype).view(1, -1, 1, 1)
    std = torch.tensor(backbone.std, dtype=image.dtype).view(1, -1, 1, 1)
    return (image - mean) / std


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-+" else "_" for c in name)


def inspect_to_dir(backbone, out: str | Path, image: Tensor | None = None, *, prepare: Callable | None = None,
                   layers: list[str] | None = None, channels: int = 16, panel: bool = False,
                   title: str | None = None) -> list[Path]:
    """Write ``genlab inspect``'s pictures to the folder ``out`` and return their paths:

    - ``filters.png``: the first convolution's filters (always);
    - with ``image`` (1, C, H, W) in [0, 1]: ``input.png`` (the image) and ``features-<layer>.png``
      for each of ``layers`` (default: every stage), the first ``channels`` channels of the
      layer's activation, each min-max normalised, as a grid;
    - with ``panel``: ``panel.png``, the image and min(channels, 8) channels of ``layers`` (default:
      an early, a middle and the last stage) in one figure.

    ``prepare`` turns the image into the backbone's input (a classifier run's ``prepare_input``;
    default: normalise with the backbone's mean and std). All the maps come from one forward pass.
    Every file is written atomically."""
    from ..images import grid_png
    from ..io import atomic_write_bytes

    if channels < 1:
        raise GenlabError(f"--channels: expected a positive count, got {channels}")
    if image is None and (layers or panel):
        raise GenlabError(f"{'--panel' if panel else '--layers'}: feature maps need an IMAGE")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out}: exists and is not a folder")
    names = list(dict.fromkeys(layers)) if layers else default_layers(backbone)
    pnames = list(dict.fromkeys(layers)) if layers else panel_layers(backbone)
    resolve_layers(backbone, names)  # unknown names fail before anything is written
    files: list[tuple[Path, bytes]] = [(out / "filters.png", filters_png(backbone))]
    if image is not None:
        x = (prepare or (lambda t: normalise(backbone, t)))(image)
        acts = feature_maps(backbone, x, list(dict.fromkeys(names + (pnames if panel else []))))
        files.append((out / "input.png", grid_png(image[:1], upscale=0)))
        for name in names:
            files.append((out / f"features-{_safe(name)}.png",
                          grid_png(_upscale(channel_maps(name, acts[name][0], channels), MAP_PX), upscale=1)))
        if panel:
            files.append((out / "panel.png", feature_panel_png(image[0], {n: acts[n] for n in pnames},
                                                               min(channels, 8), title)))
    for path, data in files:
        atomic_write_bytes(path, data)
    return [p for p, _ in files]
