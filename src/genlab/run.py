"""Run directories and the high-level API: ``train(...)`` makes one, ``load_run(path)`` opens it.

A run directory holds ``config.json`` (its ``format``, model name and config, data config,
training config; a run of a newer format than this genlab reads is refused by name),
``model.safetensors``, ``state.pt`` (for exact resume), ``metrics.jsonl``, ``samples/*.png``,
``eval.json`` (test metrics at the end of training) and ``report.html`` once reported.
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import coerce_fields, fields_of, from_dict, load_toml
from .data import DataConfig, Dataset, load_data
from .errors import ConfigError, GenlabError, RunError
from .images import save_grid
from .io import atomic_write_json, read_jsonl
from .models import create_model, model_config_class
from .train import TrainConfig, fit
from .train.checkpoint import WEIGHTS, load_weights

CONFIG = "config.json"
# the layout of config.json: runs written before the field existed are format 1. Raise it when a
# change makes older genlab versions misread a run; a run of a newer format is refused by name.
CONFIG_FORMAT = 1
# data sets whose samples genlab can judge with a classifier it ships
SAMPLE_EXTRACTORS = {"mnist": "mnist-cnn", "fashion-mnist": "fashion-cnn"}


def route_overrides(model: str, items: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """Send each ``key=value`` to the model, train or data config. ``model.x``, ``train.x`` and
    ``data.x`` name the section; a bare key goes to the first section that has such a field."""
    sections = {"model": fields_of(model_config_class(model)), "train": fields_of(TrainConfig),
                "data": fields_of(DataConfig)}
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}}
    for key, value in items:
        if "." in key:
            sec, _, name = key.partition(".")
            if sec not in sections:
                raise ConfigError(f"--set {key}: unknown section {sec!r}; use model., train. or data.")
            if name not in sections[sec]:
                raise ConfigError(f"--set {key}: {sec} config has no field {name!r}; known: {', '.join(sorted(sections[sec]))}")
            out[sec][name] = value
            continue
        for sec, known in sections.items():
            if key in known:
                out[sec][key] = value
                break
        else:
            allk = sorted(set().union(*sections.values()))
            raise ConfigError(f"--set {key}: no model ({model}), train or data field of that name; known: {', '.join(allk)}")
    return out


def absolute_paths(cfg: DataConfig) -> DataConfig:
    """Store data paths absolute, so a run can be evaluated and reported from any folder."""
    changes = {}
    if cfg.root:
        changes["root"] = str(Path(cfg.root).expanduser().resolve())
    for prefix in ("folder:", "npz:"):
        if cfg.name.startswith(prefix):
            changes["name"] = prefix + str(Path(cfg.name[len(prefix):]).expanduser().resolve())
    return from_dict(DataConfig, {**asdict(cfg), **changes}) if changes else cfg


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "data"


def check_run_config(cfg: Any, cfg_path: Path) -> None:
    """The fields of a run's config.json that every command relies on, or a RunError naming the
    file and the field: a format newer than this genlab reads, a missing field, a model genlab
    does not know, a shape or value range that is not a list of numbers."""
    from .registry import MODELS

    if not isinstance(cfg, dict):
        raise RunError(f"{cfg_path}: expected a JSON object of fields, got {type(cfg).__name__}")
    fmt = cfg.get("format", 1)  # runs written before the field existed
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise RunError(f"{cfg_path}: field 'format': expected a positive integer, got {fmt!r}")
    if fmt > CONFIG_FORMAT:
        raise RunError(f"{cfg_path}: field 'format' is {fmt}, newer than this genlab ({__version__}) reads "
                       f"(format {CONFIG_FORMAT} or older); open the run with a newer genlab")
    for key in ("model", "model_config", "data", "train", "shape", "value_range"):
        if key not in cfg:
            raise RunError(f"{cfg_path}: field {key!r} is missing")
    name = cfg["model"]
    if not isinstance(name, str) or name not in MODELS:
        raise RunError(f"{cfg_path}: field 'model' names no model genlab knows ({name!r}); known: {', '.join(MODELS.names())}")
    for key in ("model_config", "data", "train"):
        if not isinstance(cfg[key], dict):
            raise RunError(f"{cfg_path}: field {key!r}: expected a JSON object of fields, got {cfg[key]!r}")
    shape = cfg["shape"]
    if (not isinstance(shape, list) or len(shape) not in (1, 3)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise RunError(f"{cfg_path}: field 'shape': expected [D] or [C, H, W] of positive integers, got {shape!r}")
    vr = cfg["value_range"]
    if (not isinstance(vr, list) or len(vr) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vr)
            or not vr[0] <= vr[1]):
        raise RunError(f"{cfg_path}: field 'value_range': expected [low, high] with low <= high, got {vr!r}")


def check_weights_fit(weights: Path, model: torch.nn.Module, model_name: str, cfg_path: Path) -> None:
    """A RunError naming the file, the parameter and both shapes when the weights in ``weights``
    are not those of the model ``cfg_path`` describes (another model, or config.json edited, e.g.
    to another latent size). A file that cannot be read is left to ``load_weights`` to report."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            stored = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception:  # missing or damaged: load_weights names the problem
        return
    from .train.checkpoint import compare_shapes

    missing, unexpected, bad = compare_shapes({k: list(v.shape) for k, v in model.state_dict().items()}, stored)
    if missing or unexpected:
        raise RunError(f"{weights}: not the weights of the {model_name!r} model that {cfg_path} describes "
                       f"(fields 'model' and 'model_config'): {len(missing)} of its parameters missing "
                       f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}")
    if bad:
        k, got, want = bad
        raise RunError(f"{weights}: parameter {k!r} has shape {got} in the file but {want} in the "
                       f"{model_name!r} model that {cfg_path} describes (fields 'model', 'model_config', 'shape'): "
                       "the weights are another model's, or config.json was changed after they were saved")


class Run:
    """An opened run directory."""

    def __init__(self, path: str | Path, best: bool = False):
        self.path = Path(path)
        self.best = best  # load best.safetensors (kept by train.quality_every) instead of the last weights
        cfg_path = self.path / CONFIG
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run directory")
        if not cfg_path.is_file():
            raise RunError(f"{cfg_path}: missing; {self.path} is not a genlab run directory")
        try:
            self.config = json.loads(cfg_path.read_text())
        except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
            raise RunError(f"{cfg_path}: not valid JSON ({e})") from None
        except OSError as e:
            raise RunError(f"{cfg_path}: cannot read it ({e})") from None
        check_run_config(self.config, cfg_path)
        self.model_name: str = self.config["model"]
        self.data_config = from_dict(DataConfig, self.config["data"], where=f"{cfg_path}: data")
        self.train_config = from_dict(TrainConfig, self.config["train"], where=f"{cfg_path}: train")
        self._model = None
        self._data: Dataset | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.model_name!r}, data={self.data_config.name!r})"

    @property
    def model(self):
        """The trained model, on the CPU, in eval mode."""
        if self._model is None:
            m = build_model(self.model_name, self.config["model_config"], self.config["shape"],
                            self.config["value_range"], where=f"{self.path / CONFIG}: model_config")
            if self.best and not (self.path / "best.safetensors").is_file():
                raise RunError(f"{self.path / 'best.safetensors'}: not found; --best needs a run trained with "
                               "train.quality_every=N")
            weights = self.path / ("best.safetensors" if self.best else WEIGHTS)
            check_weights_fit(weights, m, self.model_name, self.path / CONFIG)
            load_weights(weights, m)
            m.eval()
            self._model = m
        return self._model

    def data(self, root: str | None = None) -> Dataset:
        if self._data is None or root:
            cfg = self.data_config
            if root:
                cfg = from_dict(DataConfig, {**asdict(cfg), "root": root})
            self._data = load_data(cfg)
        return self._data

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def evaluate(self, split: str = "test", iwae_k: int = 0, root: str | None = None,
                 sample_metrics: bool = True, sample_n: int = 10000, **kw) -> dict:
        """The family's metrics: reconstruction errors (and nelbo, kl, nll_iwae for VAEs); for
        generative models on a data set with a shipped classifier (mnist: mnist-cnn,
        fashion-mnist: fashion-cnn) also FID, KID, IS and mode coverage of ``sample_n`` samples
        against the split; on the toy mixtures (ring8, grid25) modes captured, share of
        high-quality samples and reverse KL of 2500 samples (the PacGAN protocol); on stacked-mnist
        modes hit of 1000 and their KL to uniform over ``sample_n`` samples."""
        from .evaluate import evaluate

        out = evaluate(self.model, self.data(root), split, iwae_k=iwae_k, **kw)
        if hasattr(self.model, "num_stages"):  # classifiers: per-class precision/recall and the confusion matrix
            from .transfer.classifier import classification_report

            out.update(classification_report(self.model, self.data(root), split))
        name = self.data_config.name
        if sample_metrics and getattr(self.model, "generative", False) and name in SAMPLE_EXTRACTORS:
            from .metrics.api import compute_metrics

            r = compute_metrics(f"{name}:{split}", str(self.path), metrics=("fid", "kid", "is", "modes"),
                                extractor=SAMPLE_EXTRACTORS[name], n=sample_n, seed=kw.get("seed", 0),
                                data_root=root or self.data_config.root or None)
            out.update({k: r[k] for k in ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "modes_hit",
                                          "high_quality", "kl_to_uniform", "extractor")})
            out["n_samples"] = r["n_fake"]
        if sample_metrics:
            out.update(mixture_metrics(self.model, name, min(sample_n, 2500), seed=kw.get("seed", 0)))
            out.update(stacked_metrics(self.model, name, sample_n, seed=kw.get("seed", 0)))
        return out

    def sample(self, n: int = 64, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return self.model.sample(n, generator=g)


def mixture_metrics(model, data_name: str, n: int = 2500, seed: int = 0) -> dict:
    """For a generative model trained on a toy mixture (ring8, grid25): modes captured, share of
    high-quality samples and reverse KL of ``n`` samples, the PacGAN protocol (2500 samples,
    high quality within 3 std of the nearest mean). Empty for other models and data."""
    from .data.toy import MIXTURES

    if not getattr(model, "generative", False) or data_name not in MIXTURES:
        return {}
    from .metrics.modes import mixture_mode_coverage

    mix = MIXTURES[data_name]
    x = model.sample(n, generator=torch.Generator().manual_seed(seed)).reshape(n, -1)
    r = mixture_mode_coverage(x, mix.means, mix.std)
    return {"modes": r["modes"], "num_modes": r["num_modes"], "high_quality": r["high_quality"],
            "reverse_kl": r["reverse_kl"], "n_samples": n}


def stacked_metrics(model, data_name: str, n: int = 26000, seed: int = 0, extractor=None) -> dict:
    """For a generative model trained on stacked-mnist: modes hit of 1000 and the KL of the mode
    histogram to uniform over ``n`` samples, each channel classified by the shipped mnist-cnn
    (the VEEGAN/PacGAN protocol scores 26000 samples; ``extractor``: an mnist-cnn already
    built). Empty for other models and data."""
    if not getattr(model, "generative", False) or data_name != "stacked-mnist" or n < 1:
        return {}
    from .metrics.extractors import get_extractor
    from .metrics.modes import stacked_mnist_coverage

    g = torch.Generator().manual_seed(seed)
    x = torch.cat([model.sample(min(2000, n - i), generator=g).cpu() for i in range(0, n, 2000)])
    r = stacked_mnist_coverage(x, extractor or get_extractor("mnist-cnn"))
    return {"modes": r["modes"], "num_modes": r["num_modes"], "kl_to_uniform": r["kl_to_uniform"],
            "high_quality": r["high_quality"], "modes_high_quality": r["modes_high_quality"],
            "channel_kl": r["channel_kl"], "n_samples": n, "extractor": "mnist-cnn"}


def quality_probe(model, data: Dataset, data_name: str, n: int | None = None):
    """The periodic sample-quality check of a generative run, or None where genlab has none:
    mode coverage of ``n`` samples (default 2500, PacGAN's count) on ring8/grid25 (score:
    reverse KL; collapse: fewer than half the modes), and with ``n`` samples (default 2000) on
    stacked-mnist (score: KL to uniform; collapse: fewer than half the modes a uniform generator
    would hit) and,
    on mnist/fashion-mnist, FID of ``n`` samples against ``n`` test images with the shipped
    classifier (score: FID; collapse: half the classes or fewer predicted)."""
    from .data.toy import MIXTURES

    if not getattr(model, "generative", False):
        return None
    if data_name in MIXTURES:
        n_mix = n or 2500

        def probe(m):
            r = mixture_metrics(m, data_name, n_mix)
            return {**r, "score": r["reverse_kl"], "score_name": "reverse_kl",
                    "collapse": (f"{r['modes']} of {r['num_modes']} modes" if r["modes"] < r["num_modes"] / 2 else None)}
        return probe
    n = n or 2000
    if data_name == "stacked-mnist":
        from .metrics.extractors import get_extractor

        expected = 1000 * (1 - (1 - 1 / 1000) ** n)  # modes a uniform generator hits with n samples
        ext = get_extractor("mnist-cnn")  # built once, not at every check

        def probe(m):
            r = stacked_metrics(m, data_name, n, extractor=ext)
            return {k: r[k] for k in ("modes", "kl_to_uniform", "high_quality")} | {
                "score": r["kl_to_uniform"], "score_name": "kl_to_uniform",
                "collapse": (f"{r['modes']} of 1000 modes, a uniform generator hits about {expected:.0f} with {n} samples"
                             if r["modes"] < expected / 2 else None)}
        return probe
    if data_name in SAMPLE_EXTRACTORS and tuple(data.value_range) == (0.0, 1.0):
        from .metrics import core
        from .metrics.api import featurise
        from .metrics.extractors import get_extractor
        from .metrics.modes import mode_coverage

        ext = get_extractor(SAMPLE_EXTRACTORS[data_name])
        real = data.eval_inputs("test")[0][:n].cpu()
        fr, _ = featurise(real, ext, logits=False)

        def probe(m):
            x = m.sample(n, generator=torch.Generator().manual_seed(0)).cpu()
            ff, lf = featurise(x, ext, logits=True, use_cache=False)
            modes = mode_coverage(lf)
            k = lf.shape[1]
            fid = core.frechet_distance(fr, ff)
            return {"fid": fid, "modes_hit": modes["modes_hit"],
                    "kl_to_uniform": modes["kl_to_uniform"], "score": fid, "score_name": "fid",
                    "collapse": (f"{modes['modes_hit']} of {k} classes" if modes["modes_hit"] <= k / 2 else None)}
        return probe
    return None


def fit_probe(model, data: Dataset, cfg: TrainConfig, run_dir: Path) -> dict:
    """Train a linear probe: the frozen backbone's features of the training split computed once,
    then the head fitted on them; the run directory gets the same files as an engine run."""
    from .io import append_jsonl
    from .train import checkpoint as ckpt
    from .train.engine import resolve_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = resolve_device(cfg.device)
    model.to(dev)
    t0 = time.perf_counter()
    x, y = data.eval_inputs("train")
    feats = model.features(x)
    t_feat = time.perf_counter() - t0
    log = lambda rec: append_jsonl(run_dir / "metrics.jsonl", rec)  # noqa: E731
    torch.manual_seed(cfg.seed)
    steps = model.fit_probe(feats, data.train.y.cpu(), cfg, log)
    seconds = time.perf_counter() - t0
    log({"step": steps, "epoch": 1.0, "split": "epoch", "epoch_seconds": round(seconds, 3),
         "feature_seconds": round(t_feat, 3)})
    ckpt.save_checkpoint(run_dir, model, {"step": steps, "epoch": 1, "optimizer": {}, "rng": {"torch": torch.get_rng_state()},
                                          "elapsed": seconds, "total_steps": steps, "probe": True})
    return {"steps": steps, "epochs": 1.0, "seconds": seconds, "steps_per_epoch": steps, "final_loss": float("nan")}


def build_model(name: str, model_config: dict, shape, value_range, where: str = "model"):
    cls_cfg = from_dict(model_config_class(name), model_config, where=where)
    from .registry import MODELS

    return MODELS.get(name)(cls_cfg, tuple(shape), tuple(value_range))


def load_run(path: str | Path, best: bool = False) -> Run:
    """A run directory; ``best`` loads the best-scoring weights of its quality checks."""
    return Run(path, best=best)


def write_progress_grids(run_dir: Path, data: Dataset):
    """A callback for ``fit``: reconstructions of fixed test images (models with an encoder) and,
    for generative models, samples from fixed noise, saved as ``samples/recon_step_NNNNNNN.png``
    and ``samples/sample_step_NNNNNNN.png``. A conditional model's sample grid has one row per
    class (labels 0, 1, ... top to bottom), the same noise in every row and at every step. GANs
    have no encoder (their ``reconstruct`` only draws samples), so they get no reconstruction grid.
    All noise comes from seeded generators: training's RNG is untouched."""
    from .report.figures import has_encoder, is_conditional, num_classes, per_class_samples

    samples_dir = run_dir / "samples"
    x_fixed, _ = data.eval_inputs("test")
    x_fixed = x_fixed[:32]

    @torch.no_grad()
    def cb(model, epoch, step):
        model.eval()
        dev = next(model.parameters()).device
        x = x_fixed.to(dev)
        if len(data.shape) != 3:
            return
        if has_encoder(model):
            recon = model.reconstruct(x)
            grid = torch.cat([x[:16], recon[:16], x[16:32], recon[16:32]])
            save_grid(samples_dir / f"recon_step_{step:07d}.png", grid, nrow=16, value_range=data.value_range)
        if getattr(model, "generative", False):
            path = samples_dir / f"sample_step_{step:07d}.png"
            if is_conditional(model) and num_classes(model) > 0:
                k = num_classes(model)
                per_row = min(16, max(8, 64 // k))  # 8 per row for 8 or more classes, up to 16 for few
                xs, _ = per_class_samples(model, per_row, seed=1234, classes=range(min(k, 50)))
                save_grid(path, xs, nrow=per_row, value_range=data.value_range)
            else:
                g = torch.Generator().manual_seed(1234)
                save_grid(path, model.sample(64, generator=g), nrow=8, value_range=data.value_range)

    return cb


def read_config_file(config: str | Path, model: str | None) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """``--config FILE.toml`` as (model name, {"model": {...}, "train": {...}, "data": {...}}): the
    model named by a top-level ``model = "vae"`` or by ``name`` in the [model] table (it must agree
    with ``model`` from the command line), and the fields of each table, not yet checked."""
    sections: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}}
    file_cfg = load_toml(config)
    file_model = file_cfg.pop("model") if isinstance(file_cfg.get("model"), str) else None
    if isinstance(file_cfg.get("model"), dict) and "name" in file_cfg["model"]:
        file_model = file_cfg["model"].pop("name")
        if not isinstance(file_model, str):
            raise ConfigError(f"{config}: [model] name: expected a model name in quotes, e.g. name = \"vae\", got {file_model!r}")
    if file_model is not None:
        try:
            model_config_class(file_model)
        except GenlabError as e:
            raise ConfigError(f"{config}: {e}") from None
    if file_model is not None and model is not None and file_model != model:
        raise ConfigError(f"{config}: names model {file_model!r}, the command line {model!r}; drop one")
    for sec in sections:
        if sec in file_cfg:
            if not isinstance(file_cfg[sec], dict):
                raise ConfigError(f"{config}: [{sec}] must be a table, got {sec} = {file_cfg[sec]!r}")
            sections[sec].update(file_cfg[sec])
    return model or file_model, sections


def apply_train_defaults(model: str, sections: dict[str, dict[str, Any]]) -> None:
    """A model's own training defaults for a data set (``train_defaults(data_name)`` of its
    class, e.g. ``gan`` on ring8/grid25: batch 256, lr 5e-4 cosine, 20000 steps), filled into
    ``sections["train"]`` where the file, the command line and ``--set`` left a field unset;
    a default length (steps or epochs) applies only when neither was given."""
    from .registry import MODELS

    hook = getattr(MODELS.get(model), "train_defaults", None)
    if hook is None:
        return
    t = sections["train"]
    for k, v in hook(sections["data"].get("name")).items():
        if k in ("steps", "epochs") and ("steps" in t or "epochs" in t):
            continue
        t.setdefault(k, v)


def new_run_config(model: str | None, data: str | None, config: str | Path | None, items: list[tuple[str, Any]],
                   cli: dict[str, Any] | None = None, data_root: str | None = None
                   ) -> tuple[str, TrainConfig, DataConfig, dict[str, Any]]:
    """The checked configuration of a new run: (model name, train config, data config, model
    fields) from the config file, then the command line (``cli``: epochs, steps, batch_size, lr,
    seed, device; ``data``, ``data_root``), then the ``--set`` items. Reads no data; raises a
    ConfigError naming the field, the key or the file."""
    cli = dict(cli or {})
    sections: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}}
    if config is not None:
        model, sections = read_config_file(config, model)
    if model is None:
        raise ConfigError("model: name one, e.g. genlab.train('vae', ...) or `name = \"vae\"` in the [model] table")
    model_config_class(model)  # unknown model -> a clear error before anything else
    if config is not None:  # the file's own keys and types, named with the file
        classes = {"model": model_config_class(model), "train": TrainConfig, "data": DataConfig}
        for sec, vals in sections.items():
            coerce_fields(classes[sec], vals, where=f"{config}: [{sec}]")
    if data is not None:
        sections["data"]["name"] = data
    sections["data"].setdefault("name", "digits")
    if cli.get("epochs") is not None:
        sections["train"].pop("steps", None)
    if cli.get("steps") is not None:
        sections["train"].pop("epochs", None)
    sections["train"].update({k: v for k, v in cli.items() if v is not None})
    if data_root is not None:
        sections["data"]["root"] = data_root
    for sec, vals in route_overrides(model, items).items():
        sections[sec].update(vals)
    apply_train_defaults(model, sections)
    train_cfg = from_dict(TrainConfig, sections["train"], where="train")
    data_cfg = from_dict(DataConfig, sections["data"], where="data")
    from_dict(model_config_class(model), sections["model"], where=f"model {model}")
    return model, train_cfg, data_cfg, sections["model"]


def train(model: str | None = None, data: str | None = None, *, out: str | Path | None = None,
          config: str | Path | None = None, set: list[str] | dict | None = None, resume: bool = False,
          epochs: int | None = None, steps: int | None = None, batch_size: int | None = None,
          lr: float | None = None, seed: int | None = None, device: str | None = None,
          data_root: str | None = None, progress: bool = False, evaluate_at_end: bool = True) -> Run:
    """Train a model and return its :class:`Run`. Mirrors ``genlab train``.

    ``set`` takes ``["hidden=[400]", "train.lr=3e-4"]`` or a dict ``{"hidden": [400]}``.
    """
    from .config import parse_set

    for name, value in (("epochs", epochs), ("steps", steps), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: expected a positive number, got {value}")
    items: list[tuple[str, Any]] = []
    if isinstance(set, dict):
        items = list(set.items())
    elif set:
        items = parse_set(list(set))
    from .train import distributed as dist

    dist.setup(device or "auto")  # under torchrun: join the group; only rank 0 writes files

    if resume:
        if out is None:
            raise ConfigError("--resume: name the run directory to resume with --out RUN_DIR")
        run = Run(out)
        if model is not None and model != run.model_name:
            raise ConfigError(f"--resume: {out} holds a {run.model_name!r} run, not {model!r}")
        model = run.model_name
        cfg = run.config
        tcfg = dict(cfg["train"])
        extra = route_overrides(model, items)
        if extra["model"] or extra["data"]:
            raise ConfigError("--resume: only training fields (e.g. epochs, steps) can change when resuming")
        tcfg.update(extra["train"])
        if epochs is not None:
            tcfg.update(epochs=epochs, steps=0)
        if steps is not None:
            tcfg.update(steps=steps, epochs=0)
        for name, value in (("batch_size", batch_size), ("seed", seed)):
            value = extra["train"].get(name, value)
            if value is not None and value != cfg["train"][name]:
                raise ConfigError(f"--resume: {name} was {cfg['train'][name]} in {out}; changing it would break the exact resume")
        if lr is not None:
            tcfg["lr"] = lr
        if device is not None:
            tcfg["device"] = device
        train_cfg = from_dict(TrainConfig, tcfg, where="train")
        data_cfg = run.data_config
        if data_root:
            data_cfg = from_dict(DataConfig, {**asdict(data_cfg), "root": data_root})
        model_cfg = cfg["model_config"]
        run_dir = run.path
    else:
        cli = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device}
        model, train_cfg, data_cfg, model_cfg = new_run_config(model, data, config, items, cli, data_root)
        if out is None:
            out = Path("runs") / f"{model}-{_safe(data_cfg.name)}-{time.strftime('%Y%m%d-%H%M%S')}"
        data_cfg = absolute_paths(data_cfg)
        run_dir = Path(out)
        if dist.is_main() and ((run_dir / WEIGHTS).exists() or (run_dir / CONFIG).exists()):
            raise ConfigError(f"--out {run_dir}: already holds a run; pass --resume to continue it, or choose another --out")

    ds = load_data(data_cfg)
    from .registry import MODELS

    model_cls = MODELS.get(model)
    if getattr(model_cls, "labelled_only", False) and ds.train.y is not None:
        keep = torch.nonzero(ds.train.y >= 0).flatten()
        if len(keep) < len(ds.train):  # data.labels_per_class: a classifier has no use for the rest
            ds.train = ds.train.subset(keep)
    if not resume and hasattr(model_cls, "prepare_config"):  # fields that come from the data (classes, auto strategy)
        model_cfg, msg = model_cls.prepare_config(model_cfg, ds)
        if msg and dist.is_main():
            print(f"genlab: {msg}", file=sys.stderr)
    torch.manual_seed(train_cfg.seed)  # the same seed gives the same initial weights
    m = build_model(model, model_cfg, ds.shape, ds.value_range, where=f"model {model}")
    if resume:  # weights that no longer fit config.json: say so before anything in the run is rewritten
        check_weights_fit(run_dir / WEIGHTS, m, model, run_dir / CONFIG)
    if not resume and hasattr(m, "init_weights"):  # pretrained weights: a new run only
        m.init_weights()
    full_model_cfg = asdict(m.config)
    if not resume and dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / CONFIG, {
            "format": CONFIG_FORMAT, "genlab_version": __version__, "model": model, "model_config": full_model_cfg,
            "data": asdict(data_cfg), "train": asdict(train_cfg),
            "shape": list(ds.shape), "value_range": list(ds.value_range),
            "num_params": sum(p.numel() for p in m.parameters()),
            **({"weights_source": m.weights_source} if hasattr(m, "weights_source") else {}),
        })
    elif dist.is_main():
        cfg = json.loads((run_dir / CONFIG).read_text())
        cfg["train"] = asdict(train_cfg)
        atomic_write_json(run_dir / CONFIG, cfg)
    dist.barrier()

    from .train.engine import resolve_device

    ds = ds.to(resolve_device(train_cfg.device))  # once: fit and the final evaluation share it
    if getattr(m, "trains_directly", False):  # the linear probe: features once, then the head
        if resume:
            raise ConfigError(f"--resume: {run_dir} is a linear probe, trained in one pass; start a new run")
        if dist.info().enabled:
            raise ConfigError("strategy: the linear probe trains in one pass on one process; run it without torchrun")
        summary = fit_probe(m, ds, train_cfg, run_dir)
    else:
        quality = None
        if train_cfg.quality_every:
            # building the probe's classifier initialises layers: keep that off training's RNG, so a
            # run with quality checks takes the same steps as one without
            with torch.random.fork_rng(devices=[]):
                quality = quality_probe(m, ds, data_cfg.name, train_cfg.quality_samples or None)
        summary = fit(m, ds, train_cfg, run_dir, resume=resume, progress=progress,
                      on_epoch_end=write_progress_grids(run_dir, ds), quality=quality)
    if evaluate_at_end and dist.is_main():
        from .evaluate import evaluate

        res = evaluate(m, ds, "test")
        res.update(mixture_metrics(m, data_cfg.name))
        if hasattr(m, "num_stages"):  # classifiers: per-class precision/recall and the confusion matrix
            from .transfer.classifier import classification_report

            res.update(classification_report(m, ds, "test"))
        res["train_seconds"] = round(summary["seconds"], 3)
        res["steps"] = summary["steps"]
        atomic_write_json(run_dir / "eval.json", res)
    run = Run(run_dir)
    m.cpu().eval()
    run._model = m
    run._data = ds
    return run
