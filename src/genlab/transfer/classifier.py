"""``classifier``: a backbone (pretrained or not) with a new head, trained by one of the
lectures' strategies.

The lectures (ECEN 478, "Freeze and Fine-tune"): frozen layers are not updated during
back-propagation, fine-tuned layers are; learning rates can differ per layer; and the size of
the data set decides how much to freeze:

1. very small data set: freeze all layers but the new softmax head (``linear-probe``);
2. small data set: freeze many layers, train few (``freeze:N`` with N = all stages but the last);
3. large data set: freeze few layers, train more (``freeze:1``, the stem only).

Strategies (``strategy=``):

- ``linear-probe``: the backbone frozen; the head is trained on features computed once (a torch
  ``Linear`` with the ``train.*`` settings, or scikit-learn's multinomial logistic regression with
  ``probe_head=logreg``, whose coefficients then become the ``Linear``'s weights);
- ``freeze:N``: the first N stages frozen (``genlab list backbones`` names the stages);
- ``finetune``: every layer trained at ``train.lr``;
- ``discriminative``: every layer trained, stage i of S at ``lr * lr_decay**(S - i)`` (the head at
  ``lr``; Howard and Ruder's layer-wise learning-rate decay);
- ``gradual``: the head alone first, then one more stage unfrozen from the top at each phase, all
  layers in the last phase (ULMFiT's gradual unfreezing); phases are ``gradual_every`` steps,
  or the run divided into S + 1 equal phases;
- ``auto``: the lectures' rule above on the labelled examples per class (thresholds
  ``auto_thresholds``); the choice and the reason are printed and kept in ``config.json``.

Frozen stages are in inference mode throughout (their BatchNorm statistics and dropout do not
move), and their parameters do not require gradients, so back-propagation stops at the first
trained stage: a frozen layer costs a forward pass only. Inputs are adapted to the backbone:
grey images repeated to three channels (colour to grey for a one-channel backbone), resized to
its input size (``image_size``, antialiased bilinear) and normalised with its mean and std.
Inception v3's auxiliary classifier is trained with weight ``aux_weight`` (0.4, as torchvision's
reference recipe) and ignored at prediction time.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import choice, field
from ..errors import ConfigError
from ..models.base import GenModel
from ..registry import register_model

_STRATEGY = re.compile(r"^(linear-probe|finetune|discriminative|gradual|auto|freeze:\d+)$")


@dataclass
class ClassifierConfig:
    """A backbone with a new head (the `model.*` fields of `genlab train classifier`)."""

    backbone: str = field("small-cnn", "backbone name (genlab list backbones), or timm:NAME")
    weights: str = field("auto", "imagenet, none (random init), or a .pth/.safetensors file; auto: imagenet where the backbone has pretrained weights, none for small-cnn")
    strategy: str = field("auto", "linear-probe, freeze:N, finetune, discriminative, gradual, or auto (the lectures' rule on the data set's size)")
    probe_head: str = choice("torch", ("torch", "logreg"), "linear-probe head: a torch Linear trained with train.*, or scikit-learn's logistic regression")
    logreg_c: float = field(1.0, "inverse L2 strength of probe_head=logreg (scikit-learn's C)")
    image_size: int = field(0, "side length inputs are resized to (0: the backbone's own input size)")
    lr_decay: float = field(0.5, "discriminative: learning-rate factor per stage below the head")
    gradual_every: int = field(0, "gradual: steps between unfreezing stages (0: the run in S + 1 equal phases)")
    aux_weight: float = field(0.4, "inception_v3: weight of the auxiliary classifier's loss in training")
    label_smoothing: float = field(0.0, "label smoothing of the cross-entropy")
    auto_thresholds: list[int] = field([50, 500], "auto: labelled examples per class below the first are 'very small' (linear-probe), below the second 'small' (freeze all stages but the last), else 'large' (freeze the stem only)")
    download: bool = field(False, "allow torchvision to download ImageNet weights missing from the torch hub cache")
    num_classes: int = field(0, "classes of the head (0: from the data set)")
    class_names: list[str] = field([], "class names (from the data set)")
    chosen_strategy: str = field("", "the strategy auto chose (set by genlab)")
    strategy_reason: str = field("", "why auto chose it (set by genlab)")

    def validate(self) -> None:
        if not _STRATEGY.match(self.strategy):
            raise ConfigError(f"strategy: expected linear-probe, freeze:N, finetune, discriminative, gradual or auto, got {self.strategy!r}")
        if self.chosen_strategy and (not _STRATEGY.match(self.chosen_strategy) or self.chosen_strategy == "auto"):
            raise ConfigError(f"chosen_strategy: not a strategy: {self.chosen_strategy!r}")
        if self.image_size and self.image_size < 8:
            raise ConfigError(f"image_size: expected 0 (the backbone's) or at least 8, got {self.image_size}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay: expected a value in (0, 1], got {self.lr_decay}")
        if self.gradual_every < 0 or self.num_classes < 0:
            raise ConfigError("gradual_every: gradual_every and num_classes must be non-negative")
        if self.logreg_c <= 0:
            raise ConfigError(f"logreg_c: expected a positive value, got {self.logreg_c}")
        if self.aux_weight < 0 or not 0 <= self.label_smoothing < 1:
            raise ConfigError("aux_weight: aux_weight must be >= 0 and label_smoothing in [0, 1)")
        t = self.auto_thresholds
        if len(t) != 2 or not 0 < t[0] <= t[1]:
            raise ConfigError(f"auto_thresholds: expected two counts [very_small, large] with 0 < a <= b, got {t}")


def auto_strategy(per_class: float, num_stages: int, thresholds=(50, 500)) -> tuple[str, str]:
    """The lectures' rule: (strategy, reason) for ``per_class`` labelled examples per class."""
    small, large = thresholds
    if per_class < small:
        return "linear-probe", (f"very small data set ({per_class:.0f} labelled examples per class < {small}): "
                                "freeze every layer, train only the new head")
    if per_class < large:
        n = max(num_stages - 1, 0)
        return f"freeze:{n}", (f"small data set ({per_class:.0f} per class, {small} to {large}): "
                               f"freeze {n} of {num_stages} stages, train the last stage and the head")
    return "freeze:1", (f"large data set ({per_class:.0f} per class >= {large}): freeze only the stem, "
                        "fine-tune the rest")


@register_model("classifier", "a backbone (pretrained or not) with a new head: linear probe, freeze:N, fine-tune, discriminative, gradual or auto")
class Classifier(GenModel):
    """An image classifier made of a backbone and a new head; see the module docstring."""

    Config = ClassifierConfig
    name = "classifier"
    uses_labels = True
    classifies = True
    labelled_only = True  # unlabelled training examples (y = -1) are dropped before training

    def __init__(self, config: ClassifierConfig, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        from .backbones import build_backbone

        if len(self.shape) != 3:
            raise ConfigError(f"classifier: needs images (C x H x W), the data set's items have shape {self.shape}")
        if not self.unit_range:
            raise ConfigError(f"classifier: needs images with values in [0, 1], the data set's span {self.value_range}")
        if config.num_classes < 2:
            raise ConfigError(f"num_classes: a classifier needs at least 2 classes, got {config.num_classes}")
        # random weights here; pretrained ones come from init_weights() on a new run (a reloaded
        # run's weights come from its own files)
        self.backbone = build_backbone(config.backbone, config.num_classes, "none")
        bb = self.backbone
        self.image_size = config.image_size or bb.input_size
        if self.image_size < bb.min_size:
            raise ConfigError(f"image_size: {config.backbone} needs inputs of at least {bb.min_size} px, got {self.image_size}")
        self.register_buffer("mean", torch.tensor(bb.mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(bb.std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self._stages = bb.stages()
        self.num_stages = len(self._stages)
        self.strategy = config.chosen_strategy or config.strategy
        if self.strategy == "auto":  # built outside genlab.train: decide when data is known
            self.strategy = "finetune"
        self.frozen = self._initially_frozen()
        self.weights_source = "random init"
        self._apply_freeze()

    # --- strategy -----------------------------------------------------------------------------
    @classmethod
    def prepare_config(cls, cfg: dict, data) -> tuple[dict, str | None]:
        """Fill the fields that come from the data set (classes, the auto strategy); returns the
        config and a message for the user (the auto choice) or None."""
        cfg = dict(cfg)
        y = data.train.y
        if y is None:
            raise ConfigError(f"classifier: data set {data.name} has no labels")
        if not cfg.get("num_classes"):
            cfg["num_classes"] = max(data.num_classes, int(y.max()) + 1 if len(y) else 0)
        if not cfg.get("class_names") and data.classes:
            cfg["class_names"] = list(data.classes)
        msg = None
        if cfg.get("strategy", "auto") == "auto":
            from .backbones import build_backbone

            counts = torch.bincount(y[y >= 0], minlength=cfg["num_classes"]).float()
            per_class = float(counts[counts > 0].median()) if (counts > 0).any() else 0.0
            stages = len(build_backbone(cfg.get("backbone", "small-cnn"), 2, "none").stages())
            thresholds = cfg.get("auto_thresholds", [50, 500])
            w = cfg.get("weights", "auto")
            if w == "none" or (w == "auto" and cfg.get("backbone", "small-cnn") == "small-cnn"):
                cfg["chosen_strategy"] = "finetune"
                cfg["strategy_reason"] = ("network without pretrained weights (weights none): there is nothing to "
                                          "transfer, so every layer trains")
            else:
                cfg["chosen_strategy"], cfg["strategy_reason"] = auto_strategy(per_class, stages, thresholds)
            msg = f"strategy auto: {cfg['chosen_strategy']}, because a {cfg['strategy_reason']}"
        return cfg, msg

    def init_weights(self) -> None:
        """Load the pretrained weights the config names (a new run only)."""
        from .backbones import build_backbone

        w = self.config.weights
        if w == "auto":
            w = "none" if self.config.backbone == "small-cnn" else "imagenet"
        if w == "none":
            return
        from pathlib import Path

        if Path(w).expanduser().is_dir():
            self._load_from_run(Path(w).expanduser())
            return
        src = build_backbone(self.config.backbone, self.config.num_classes, w, allow_download=self.config.download)
        # the body from the pretrained network, the head as this model drew it (seeded)
        mine = self.backbone.state_dict()
        head_keys = {k for k, _ in self._named_head_tensors()}
        theirs = src.state_dict()
        mine.update({k: v for k, v in theirs.items() if k not in head_keys})
        self.backbone.load_state_dict(mine)
        self.weights_source = src.weights

    def _load_from_run(self, path) -> None:
        """The backbone of another genlab classifier run (its head is left out): the two-phase
        transfer of the Keras example, trained on one task and retrained on another."""
        import json

        from safetensors.torch import load_file

        from .backbones import WeightsError

        cfg_path, weights = path / "config.json", path / "model.safetensors"
        if not cfg_path.is_file() or not weights.is_file():
            raise WeightsError(f"weights {path}: a folder, but not a genlab run (config.json and model.safetensors expected)")
        cfg = json.loads(cfg_path.read_text())
        theirs = cfg.get("model_config", {}).get("backbone")
        if cfg.get("model") != "classifier" or theirs != self.config.backbone:
            raise WeightsError(f"weights {path}: a {cfg.get('model')} run with backbone {theirs!r}, "
                               f"expected a classifier run with backbone {self.config.backbone!r}")
        head = {k for k, _ in self._named_head_tensors()}
        body = {k[len("backbone."):]: v for k, v in load_file(str(weights)).items()
                if k.startswith("backbone.") and k[len("backbone."):] not in head}
        mine = self.backbone.state_dict()
        bad = [k for k in body if k not in mine or mine[k].shape != body[k].shape]
        missing = [k for k in mine if k not in head and k not in body]
        if bad or missing:
            raise WeightsError(f"weights {path}: its backbone does not fit (mismatched {bad[:3]}, missing {missing[:3]})")
        mine.update(body)
        self.backbone.load_state_dict(mine)
        self.weights_source = f"run {path.resolve()} (its backbone; a new head)"

    def _named_head_tensors(self):
        ids = {id(t) for m in self.backbone.head_modules() for t in [*m.parameters(), *m.buffers()]}
        return [(k, v) for k, v in self.backbone.state_dict(keep_vars=True).items() if id(v) in ids]

    def _initially_frozen(self) -> int:
        s = self.strategy
        if s == "linear-probe":
            return self.num_stages
        if s.startswith("freeze:"):
            n = int(s.split(":")[1])
            if n > self.num_stages:
                names = ", ".join(name for name, _ in self._stages)
                raise ConfigError(f"strategy: freeze:{n} but {self.config.backbone} has {self.num_stages} stages ({names})")
            return n
        if s == "gradual":
            return self.num_stages
        return 0  # finetune, discriminative

    def frozen_at(self, step: int, total: int) -> int:
        """Stages frozen at ``step`` (only ``gradual`` changes it during the run)."""
        if self.strategy != "gradual":
            return self.frozen
        every = self.config.gradual_every or max(1, math.ceil(total / (self.num_stages + 1)))
        return max(0, self.num_stages - step // every)

    def set_step(self, step: int, total: int) -> None:
        n = self.frozen_at(step, total)
        if n != self.frozen:
            self.frozen = n
            self._apply_freeze()

    def _apply_freeze(self) -> None:
        for i, (_, mods) in enumerate(self._stages):
            for m in mods:
                m.requires_grad_(i >= self.frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for _, mods in self._stages[:self.frozen]:  # frozen stages stay in inference mode
            for m in mods:
                m.eval()
        return self

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups: one per stage and one for the head, with the strategy's rates."""
        s = self.num_stages
        decay = self.config.lr_decay if self.strategy == "discriminative" else 1.0
        groups = []
        for i, (name, mods) in enumerate(self._stages):
            params = [p for m in mods for p in m.parameters()]
            if params:
                groups.append({"params": params, "lr": lr * decay ** (s - i), "name": name})
        head = [p for m in self.backbone.head_modules() for p in m.parameters()]
        groups.append({"params": head, "lr": lr, "name": "head"})
        return groups

    def make_optimizers(self, cfg) -> dict:
        from ..train.engine import _make_optimizer

        groups = self.param_groups(cfg.lr)
        if self.strategy not in ("gradual",):  # parameters that never train stay out of the optimizer
            groups = [g for g in groups if any(p.requires_grad for p in g["params"])]
        opt = _make_optimizer(groups, cfg, cfg.lr, (0.9, 0.999))
        for grp in opt.param_groups:
            grp["base_lr"] = grp["lr"]
        return {"main": opt}

    # --- the network --------------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the backbone's channels, size and normalisation."""
        c = self.backbone.in_channels
        if x.shape[1] == 1 and c == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and c == 1:
            x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        elif x.shape[1] != c:
            raise ConfigError(f"classifier: {self.config.backbone} takes 1 or 3 channels, got {x.shape[1]}")
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.image_size)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of images in [0, 1] (the main head only)."""
        out = self.backbone(self.prepare_input(x))
        return out[0] if isinstance(out, tuple) else out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The features that feed the head (``genlab features``, the linear probe)."""
        return self.backbone.embed(self.prepare_input(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.backbone(self.prepare_input(x))
        ls = self.config.label_smoothing
        if isinstance(out, tuple):
            logits, aux = out
            xent = F.cross_entropy(logits, y, label_smoothing=ls)
            aux_xent = F.cross_entropy(aux, y, label_smoothing=ls)
            loss = xent + self.config.aux_weight * aux_xent
            extra = {"aux_xent": aux_xent.detach()}
        else:
            logits, xent, extra = out, F.cross_entropy(out, y, label_smoothing=ls), {}
            loss = xent
        acc = (logits.argmax(1) == y).float().mean()
        return {"loss": loss, "xent": xent.detach(), "accuracy": acc, **extra}

    def train_step(self, x: torch.Tensor, y: torch.Tensor, update, step: int, total: int) -> dict:
        out = self.loss(x, y)
        update("main", out["loss"])
        out["loss"] = out["loss"].detach()
        out["frozen_stages"] = torch.tensor(float(self.frozen))
        return out

    @torch.no_grad()
    def eval_batch(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per example: accuracy (1 correct, 0 wrong) and xent (cross-entropy, nats)."""
        logits = self.forward(x)
        return {"accuracy": (logits.argmax(1) == y).to(x.dtype), "xent": F.cross_entropy(logits, y, reduction="none")}

    def reconstruct(self, x):
        from ..errors import GenlabError

        raise GenlabError("classifier: has no decoder (it classifies; see genlab predict)")

    # --- the linear probe: features once, then the head ------------------------------------
    @property
    def trains_directly(self) -> bool:
        return self.strategy == "linear-probe"

    def features(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The head's inputs for images ``x``, in batches in eval mode, on the CPU."""
        from ..uses import _batched, _EvalMode

        with _EvalMode(self):
            return _batched(self.encode, x, next(self.parameters()).device, batch_size)

    def head_linear(self) -> nn.Linear:
        lin = [m for m in self.backbone.head_modules() if isinstance(m, nn.Linear)]
        return lin[0]

    def fit_probe(self, feats: torch.Tensor, y: torch.Tensor, cfg, log) -> dict:
        """Train the head on fixed features: scikit-learn's logistic regression, or the torch
        Linear with the train.* settings (shuffled mini-batches, seeded). ``log(rec)`` gets
        metric lines. Returns the step count."""
        lin = self.head_linear()
        if self.config.probe_head == "logreg":
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(C=self.config.logreg_c, max_iter=2000)
            clf.fit(feats.double().numpy(), y.numpy())
            w = torch.zeros_like(lin.weight)
            b = torch.zeros_like(lin.bias)
            classes = torch.as_tensor(clf.classes_)
            if len(classes) == 2 and lin.out_features == 2:  # scikit-learn's binary form: one logit for class 1
                w[1], b[1] = torch.as_tensor(clf.coef_[0]).float(), float(clf.intercept_[0])
            else:
                w[classes] = torch.as_tensor(clf.coef_).float()
                b[classes] = torch.as_tensor(clf.intercept_).float()
                missing = [c for c in range(lin.out_features) if c not in set(classes.tolist())]
                b[missing] = -1e4  # a class without training examples is never predicted
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            log({"step": 1, "epoch": 1.0, "split": "train", "solver_iterations": int(clf.n_iter_.max()),
                 "accuracy": float(clf.score(feats.double().numpy(), y.numpy()))})
            return 1
        from ..train.engine import epoch_order, lr_at, make_optimizer

        n = len(feats)
        bs = min(cfg.batch_size, n)
        per_epoch = math.ceil(n / bs)
        total = cfg.total_steps(per_epoch)
        opt = make_optimizer(list(lin.parameters()), cfg)
        dev = lin.weight.device
        feats, y = feats.to(dev), y.to(dev)
        step = 0
        while step < total:
            epoch, _ = divmod(step, per_epoch)
            order = epoch_order(n, cfg.seed, epoch).to(dev)
            sums = [0.0, 0.0, 0]
            for b in range(per_epoch):
                idx = order[b * bs:(b + 1) * bs]
                logits = lin(feats[idx])
                loss = F.cross_entropy(logits, y[idx], label_smoothing=self.config.label_smoothing)
                for grp in opt.param_groups:
                    grp["lr"] = grp["base_lr"] * lr_at(cfg, step, total) / cfg.lr
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                sums[0] += float(loss.detach()) * len(idx)
                sums[1] += float((logits.argmax(1) == y[idx]).sum())
                sums[2] += len(idx)
                if step >= total:
                    break
            log({"step": step, "epoch": round(step / per_epoch, 4), "split": "train",
                 "loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2]})
        return step


@torch.no_grad()
def classification_report(model, data, split: str = "test", batch_size: int = 256) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true
    class, columns: predicted) of ``model`` on a split, by scikit-learn's metrics."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from ..uses import _batched, _EvalMode

    x, y = data.eval_inputs(split)
    with _EvalMode(model):
        pred = _batched(lambda b: model(b).argmax(1), x, next(model.parameters()).device, batch_size)
    k = model.config.num_classes
    labels = list(range(k))
    yt, yp = y.cpu().numpy(), pred.numpy()
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
    names = model.config.class_names or [str(i) for i in labels]
    return {
        "accuracy": float((yt == yp).mean()),
        "per_class": [{"class": names[i], "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                       "support": int(s[i])} for i in labels],
        "confusion": confusion_matrix(yt, yp, labels=labels).tolist(),
        "class_names": names,
        "n": int(len(yt)),
    }
