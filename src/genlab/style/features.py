"""Activations of named layers of a frozen backbone, in one forward pass that stops early.

Style transfer evaluates the network hundreds of times, and only up to its deepest loss layer
(VGG16's block5_conv3 is 30 of its 38 modules, and the three dense layers would dominate the
cost), so ``FeatureExtractor`` records the wanted layers with forward hooks and aborts the
forward pass as soon as the last one has run: nothing after it is computed.

Layer names (``resolve_style_layers``):

- any module name of ``backbone.net`` (torchvision VGG16: ``features.8``) or stage name
  (``block2``, efficientnet_lite0's ``blocks_s8``), as ``genlab inspect --list-layers`` prints;
- on torchvision's VGG16/VGG19 (and their _bn variants) also the Keras names
  ``blockB_convC`` (Keras' conv layers include the ReLU, so: the ReLU output after the C-th conv
  of block B) and ``blockB_pool``, and the Gatys/Caffe names ``convB_C`` (the conv output, before
  the ReLU; before the BatchNorm in _bn variants), ``reluB_C`` (after the ReLU) and ``poolB``.
  Example: VGG16 ``block2_conv2`` = ``relu2_2`` = ``features.8``, ``conv2_2`` = ``features.7``.
"""
from __future__ import annotations

import difflib

import torch
from torch import Tensor, nn

from ..errors import GenlabError


class _Stop(Exception):
    """Raised by a hook once every wanted layer has run, to end the forward pass there."""


def is_vgg(net: nn.Module) -> bool:
    from torchvision.models import VGG

    return isinstance(net, VGG)


def vgg_layer_names(net: nn.Module) -> dict[str, str]:
    """Keras and Gatys names of a torchvision VGG's ``features`` -> module names (empty for any
    other network). Blocks end at each pooling layer; convs count from 1 within a block."""
    if not is_vgg(net):
        return {}
    out, b, c = {}, 1, 0
    for i, m in enumerate(net.features):
        name = f"features.{i}"
        if isinstance(m, nn.Conv2d):
            c += 1
            out[f"conv{b}_{c}"] = name
        elif isinstance(m, nn.ReLU):
            out[f"relu{b}_{c}"] = out[f"block{b}_conv{c}"] = name
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            out[f"pool{b}"] = out[f"block{b}_pool"] = name
            b, c = b + 1, 0
    return out


def use_avg_pool(net: nn.Module) -> int:
    """Replace every ``nn.MaxPool2d`` of ``net`` (in place) by an ``nn.AvgPool2d`` of the same
    kernel, stride, padding and ceil mode; Gatys et al. found average pooling gives slightly more
    appealing results. Nothing else changes. Returns how many were replaced."""
    swaps = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.MaxPool2d)]
    for name, m in swaps:
        if m.dilation not in (1, (1, 1)) or m.return_indices:
            raise GenlabError(f"{name}: a dilated or index-returning max pooling has no average pooling equivalent")
        parent, _, attr = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, attr,
                nn.AvgPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode))
    return len(swaps)


def resolve_style_layers(backbone, names: list[str]) -> list[tuple[str, nn.Module]]:
    """``names`` as (name, module) pairs (see the module docstring for the forms a name takes).
    An unknown name raises a GenlabError naming it, with the closest known names."""
    from ..transfer.inspect import resolve_layers

    alias = vgg_layer_names(backbone.net)
    modules = dict(backbone.net.named_modules())
    out = []
    for name in names:
        if name in alias:
            out.append((name, modules[alias[name]]))
            continue
        try:
            out.extend(resolve_layers(backbone, [name]))
        except GenlabError:
            known = list(alias) + [s for s, _ in backbone.stages()] + [n for n in modules if n]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            forms = ("blockB_convC (Keras), convB_C / reluB_C (Gatys), features.N, " if alias else "") + \
                "a stage or module name"
            raise GenlabError(f"unknown layer {name!r} of {backbone.name}{hint}; use {forms} "
                              f"(genlab inspect --backbone {backbone.name} --list-layers)") from None
    return out


class FeatureExtractor(nn.Module):
    """``extractor(image)`` -> {layer name: activation} for images in [0, 1] (N, 3, H, W).

    The image is normalised with the backbone's mean and std, then ``backbone.net`` runs in eval
    mode, its parameters frozen, until the last wanted layer has produced its output; the rest of
    the network never runs. Gradients flow to the image. ``forward(image, layers)`` may ask for a
    subset of the layers given here (and stops after the last of those). A module that runs
    several times in a pass gives its first output.

    Construction changes the backbone in place: parameters frozen, in-place activations made
    out-of-place (so a conv output recorded before its ReLU is not overwritten; no value changes),
    and with ``pool="avg"`` max pooling swapped for average pooling (``use_avg_pool``).
    """

    def __init__(self, backbone, layers: list[str], *, pool: str = "max"):
        super().__init__()
        if pool not in ("max", "avg"):
            raise GenlabError(f"pool {pool!r}: expected 'max' or 'avg'")
        if pool == "avg":
            use_avg_pool(backbone.net)
        for m in backbone.net.modules():
            if getattr(m, "inplace", None) is True:
                m.inplace = False
        backbone.requires_grad_(False).eval()
        self.backbone = backbone
        self.layers = list(dict.fromkeys(layers))
        if not self.layers:
            raise GenlabError("no layers to extract")
        self._names: dict[int, list[str]] = {}
        self._handles = []
        for name, m in resolve_style_layers(backbone, self.layers):
            self._names.setdefault(id(m), []).append(name)
            if len(self._names[id(m)]) == 1:
                self._handles.append(m.register_forward_hook(self._hook))
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1), persistent=False)
        self._want: set[str] = set()
        self._out: dict[str, Tensor] = {}

    def remove(self) -> None:
        """Take the hooks off the backbone's modules (the extractor no longer works)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, module, _inp, output):
        for name in self._names.get(id(module), ()):
            if name in self._want and name not in self._out:
                self._out[name] = output
        if self._want and len(self._out) == len(self._want):
            raise _Stop

    def forward(self, image: Tensor, layers: list[str] | None = None) -> dict[str, Tensor]:
        want = list(dict.fromkeys(layers)) if layers is not None else self.layers
        unknown = [n for n in want if n not in self.layers]
        if unknown:
            raise GenlabError(f"layer {unknown[0]!r} was not given to this FeatureExtractor ({', '.join(self.layers)})")
        self.backbone.eval()
        self._want, self._out = set(want), {}
        try:
            self.backbone.net((image - self.mean) / self.std)
        except _Stop:
            pass
        finally:
            out, self._want, self._out = self._out, set(), {}
        missing = [n for n in want if n not in out]
        if missing:
            raise GenlabError(f"layer {missing[0]!r} of {self.backbone.name} did not run in the forward pass; "
                              "choose another layer")
        return {n: out[n] for n in want}
