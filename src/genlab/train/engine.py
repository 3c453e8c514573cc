"""The one training loop. It drives any model that returns ``{"loss": ...}`` from ``loss(x)``.

Device choice, seeding, batching by indexing into in-memory tensors, a progress bar, metrics
in ``metrics.jsonl`` (and TensorBoard when installed), sample grids, atomic checkpoints and an
exact resume: a run stopped at any checkpoint and resumed ends with the same weights, bit for
bit on the CPU, as one that never stopped.
"""
from __future__ import annotations

import json
import math
import signal
from contextlib import nullcontext
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import choice, field
from ..errors import ConfigError, GenlabError
from ..io import append_jsonl, atomic_write_text, read_jsonl
from . import checkpoint as ckpt
from . import distributed as dist


@dataclass
class TrainConfig:
    """How to train (the `train.*` fields of --set)."""

    epochs: int = field(0, "passes over the training split (default 10 when neither epochs nor steps is set)")
    steps: int = field(0, "optimizer steps instead of epochs")
    batch_size: int = field(128, "examples per step")
    lr: float = field(1e-3, "learning rate")
    optimizer: str = choice("adam", ("adam", "adamw", "sgd", "adadelta"), "optimizer (adadelta: rho 0.95, eps 1e-7, Keras' classic setting; use lr=1.0)")
    weight_decay: float = field(0.0, "weight decay")
    adam_eps: float = field(1e-8, "Adam/AdamW epsilon")
    schedule: str = choice("constant", ("constant", "cosine"), "learning-rate schedule over the run (cosine: from lr down to min_lr)")
    min_lr: float = field(0.0, "final learning rate of the cosine schedule")
    momentum: float = field(0.9, "SGD momentum")
    grad_clip: float = field(0.0, "clip the global gradient norm to this value (0: off)")
    seed: int = field(0, "seed for weights, shuffling and noise; the same seed gives the same weights on the CPU")
    device: str = field("auto", "auto, cpu, cuda or cuda:N")
    log_every: int = field(50, "steps between metric lines in metrics.jsonl")
    checkpoint_every: int = field(1000, "steps between checkpoints (0: only at the end); one is always written at the end")
    sample_every: int = field(0, "steps between sample/reconstruction grids (0: at the end of each epoch)")
    threads: int = field(0, "CPU threads for torch (0: torch's default)")
    amp: str = choice("off", ("off", "bf16", "fp16"), "mixed precision: forward passes autocast to bf16, or to fp16 with a gradient scaler (made for CUDA; on the CPU both run, for testing)")
    compile: bool = field(False, "torch.compile the model's networks (each top-level submodule; weights and checkpoints unchanged)")
    compile_backend: str = field("inductor", "torch.compile backend (inductor; eager or aot_eager to check the plumbing without code generation)")
    on_nan: str = choice("stop", ("stop", "rollback"), "what a NaN or infinite loss or gradient does: stop naming the step and the term, or roll back to the last checkpoint and go on with the learning rate times rollback_lr_factor")
    rollback_lr_factor: float = field(0.5, "learning-rate factor applied at each rollback (on_nan=rollback)")
    max_rollbacks: int = field(3, "rollbacks allowed before the run stops (on_nan=rollback)")
    quality_every: int = field(0, "steps between sample-quality checks of generative models (FID with the shipped extractor on mnist/fashion-mnist, mode coverage on ring8/grid25 and stacked-mnist; 0: off); the best-scoring weights are kept in best.safetensors")
    quality_samples: int = field(0, "samples per quality check (0: 2500 on ring8/grid25, as PacGAN scores them; 2000 on stacked-mnist, mnist and fashion-mnist); more make the keep-best choice less noisy and each check slower")

    def validate(self) -> None:
        if self.epochs < 0 or self.steps < 0:
            raise ConfigError("epochs: epochs and steps must be non-negative")
        if self.epochs and self.steps:
            raise ConfigError(f"steps: give epochs ({self.epochs}) or steps ({self.steps}), not both")
        if not 0 < self.rollback_lr_factor < 1:
            raise ConfigError(f"rollback_lr_factor: expected a value in (0, 1), got {self.rollback_lr_factor}")
        if self.max_rollbacks < 0:
            raise ConfigError(f"max_rollbacks: expected a non-negative integer, got {self.max_rollbacks}")
        if self.quality_every < 0:
            raise ConfigError(f"quality_every: expected 0 (off) or a number of steps, got {self.quality_every}")
        if self.quality_samples < 0 or self.quality_samples == 1:
            raise ConfigError(f"quality_samples: expected 0 (the protocol's) or at least 2 samples, got {self.quality_samples}")
        for name in ("batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr: expected a positive learning rate, got {self.lr}")
        if self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(f"min_lr: expected a value in [0, lr={self.lr}], got {self.min_lr}")
        if self.adam_eps <= 0:
            raise ConfigError(f"adam_eps: expected a positive value, got {self.adam_eps}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ConfigError("grad_clip: grad_clip and weight_decay must be non-negative")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")

    def total_steps(self, steps_per_epoch: int) -> int:
        if self.steps:
            return self.steps
        return (self.epochs or 10) * steps_per_epoch


class TrainingDiverged(GenlabError):
    pass


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the step in progress was finished and a checkpoint written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _first_bad(out: dict, grads: bool = True) -> str | None:
    """The name of the first non-finite value in ``out`` (one device sync when all are finite);
    a term of the loss is named before the total it makes non-finite. ``grads=False`` leaves
    the gradient norms out (fp16: an overflow there is the gradient scaler's business)."""
    if not grads:
        out = {k: v for k, v in out.items() if not k.startswith("grad_norm")}
    vals = [torch.as_tensor(v).detach().float().reshape(-1) for v in out.values()]
    if not vals or torch.isfinite(torch.cat(vals)).all():
        return None
    bad = [k for k, v in zip(out, vals) if not torch.isfinite(v).all()]
    terms = [k for k in bad if k != "loss" and not k.startswith("grad_norm")]
    return (terms or [k for k in bad if k == "loss"] or bad)[0]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for, but torch sees no CUDA device (use --device cpu)")
    return torch.device(name)


def make_optimizer(model, cfg: TrainConfig, lr: float | None = None,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names over ``model``'s trainable parameters (a module or an
    iterable of parameters); ``lr`` and ``betas`` override the config's (models with several
    optimizers, such as GANs, give each its own). Each group remembers its ``base_lr``: the
    schedule scales it."""
    params = [p for p in (model.parameters() if isinstance(model, torch.nn.Module) else model) if p.requires_grad]
    lr = cfg.lr if lr is None else lr
    opt = _make_optimizer(params, cfg, lr, betas)
    for grp in opt.param_groups:
        grp["base_lr"] = lr
    return opt


def _make_optimizer(params, cfg: TrainConfig, lr: float, betas) -> torch.optim.Optimizer:
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        kw = dict(lr=lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, betas=betas)
        try:  # the fused kernel: one pass over the parameters instead of ~10 (CPU and CUDA, torch >= 2.4)
            return cls(params, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            return cls(params, **kw)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=0.95, eps=1e-7, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class Updater:
    """What a model with its own ``train_step`` (GANs: several optimizers, k discriminator steps
    per generator step) calls to apply a loss: ``update("d", loss)`` zeroes that optimizer's
    gradients, back-propagates, clips to ``train.grad_clip`` and steps. It records each
    optimizer's gradient norm before clipping (``grad_norm_<name>``) for the log."""

    def __init__(self, opts: dict[str, torch.optim.Optimizer], cfg: TrainConfig, scaler=None):
        self.opts, self.cfg, self.scaler = opts, cfg, scaler
        self.grad_norms: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, loss: torch.Tensor) -> None:
        opt = self.opts[name]
        opt.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        dist.all_reduce_grads(params)  # torchrun: the global batch's gradient on every rank
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        self.grad_norms[f"grad_norm_{name}"] = _grad_norm(params, self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(opt)  # skipped when the scaled gradients overflowed
        else:
            opt.step()


def _grad_norm(params: list, clip: float) -> torch.Tensor:
    """The global gradient norm of ``params`` (before clipping), clipping to ``clip`` when it is
    set (0: no clipping)."""
    if not params:
        return torch.zeros(())
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, clip).detach()
    return torch.nn.utils.get_total_norm([p.grad for p in params]).detach()


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based): a pure function of the step, so
    a resumed run follows the same schedule without scheduler state."""
    if cfg.schedule == "cosine" and total > 1:
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * step / (total - 1)))
    return cfg.lr


_rng_state, _set_rng_state = ckpt.rng_state, ckpt.set_rng_state


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffling of epoch ``epoch``: a function of (seed, epoch) alone, so a resumed run can
    rebuild it without replaying earlier epochs."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g)


class _Writer:
    """metrics.jsonl always; TensorBoard when the package is installed; nothing on ranks > 0."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, active: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        self.active = active
        if tensorboard and active:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except Exception:  # tensorboard not installed
                self.tb = None

    def write(self, rec: dict) -> None:
        if not self.active:
            return
        append_jsonl(self.path, rec)
        if self.tb is not None:
            split = rec.get("split", "train")
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{split}/{k}", v, rec.get("step", 0))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def truncate_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint we resume from."""
    recs = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("step", 0) <= step]
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in recs))


def fit(model, data, cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False,
        progress: bool = True, on_epoch_end=None, quality=None) -> dict:
    """Train ``model`` on ``data.train``. Returns a summary dict (steps, epochs, seconds).

    ``on_epoch_end(model, epoch, step)`` is called after each epoch (the run's sample grids).
    ``quality(model) -> dict`` is called every ``cfg.quality_every`` steps and at the end, under
    a forked RNG (so training's random stream, and an exact resume, are untouched); its dict
    has a ``score`` (lower is better) and may set ``collapse``. Each result is logged as a
    ``quality`` line; the weights with the best score so far are kept in ``best.safetensors``
    (``best.json`` names their step and score), and a collapse is logged as a ``warning`` line
    and printed."""
    from ..evaluate import evaluate

    run_dir = Path(run_dir)
    D = dist.setup(cfg.device)  # torchrun: join the process group (world size 1 otherwise)
    main = D.main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(dist.device_for(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model.to(device)
    data = data.to(device)
    if D.enabled:
        dist.convert_batchnorm(model)  # statistics of the global batch
        dist.broadcast_module(model)
    if cfg.compile:  # in place: state-dict keys (and so checkpoints) stay those of the plain model
        for child in model.children():
            child.compile(backend=cfg.compile_backend)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None
    # a model with its own train_step (GANs) brings several optimizers; others get one
    custom = hasattr(model, "train_step")
    opts = model.make_optimizers(cfg) if custom else {"main": make_optimizer(model, cfg)}
    updater = Updater(opts, cfg, scaler)

    n = len(data.train)
    if n == 0:
        raise ConfigError("data: the training split is empty")
    uses_labels = getattr(model, "uses_labels", False)
    if uses_labels and data.train.y is None:
        raise ConfigError(f"model {model.name}: needs labels, and data set {data.name} has none")
    set_step = getattr(model, "set_step", None)
    bs = min(cfg.batch_size, n)
    if bs < D.world:
        raise ConfigError(f"batch_size: {bs} examples cannot be shared by {D.world} processes")
    per_epoch = math.ceil(n / bs)
    total = cfg.total_steps(per_epoch)

    step, elapsed, lr_scale, rollbacks = 0, 0.0, 1.0, 0

    def restore(state: dict) -> None:
        nonlocal step, elapsed, lr_scale
        need = ("optimizers" if custom else "optimizer", "rng")
        missing = [k for k in need if k not in state]
        if missing or (custom and set(state["optimizers"]) != set(opts)):
            raise ckpt.CheckpointError(
                f"{run_dir / ckpt.STATE}: not a training state of this model ("
                + (f"no {missing[0]!r} field" if missing else
                   f"optimizers {sorted(state['optimizers'])}, the model has {sorted(opts)}") + ")")
        if custom:
            for name, o in opts.items():
                o.load_state_dict(state["optimizers"][name])
        else:
            opts["main"].load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], device)
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        step, elapsed = state["step"], state.get("elapsed", 0.0)
        lr_scale = state.get("lr_scale", 1.0)

    if resume:
        if main:
            ckpt.clean_temporaries(run_dir)
        if ckpt.has_checkpoint(run_dir):
            state = ckpt.load_checkpoint(run_dir, model)
            restore(state)
            rollbacks = state.get("rollbacks", 0)
            if "weights" in state and main:  # a kill between state.pt and model.safetensors: make them agree again
                from ..io import atomic_write_bytes

                atomic_write_bytes(run_dir / ckpt.WEIGHTS, state["weights"])
        elif main:  # stopped before its first checkpoint: nothing was trained, start at step 0
            print(f"genlab: {run_dir} has no checkpoint yet; training starts from step 0", file=sys.stderr)
        if main:
            truncate_metrics(run_dir, step)
        dist.barrier()
    writer = _Writer(run_dir, active=main)
    best_path = run_dir / "best.json"
    best = json.loads(best_path.read_text()) if (resume and best_path.is_file()) else None

    def check_quality(step: int) -> None:
        nonlocal best
        if not main:
            return
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            vals = quality(model)
        model.train()
        rec = {"step": step, "epoch": round(step / per_epoch, 4), "split": "quality",
               **{k: v for k, v in vals.items() if k != "collapse"}}
        writer.write(rec)
        if vals.get("collapse"):
            msg = f"step {step}: diversity collapsed ({vals['collapse']})"
            writer.write({"step": step, "split": "warning", "warning": msg})
            print(f"genlab: warning: {msg}", file=sys.stderr)
        if best is None or vals["score"] < best["score"]:
            best = {"step": step, "score": float(vals["score"]), "metric": vals.get("score_name", "score")}
            ckpt.save_weights(run_dir / "best.safetensors", model, step)
            atomic_write_text(best_path, json.dumps(best) + "\n")

    def save(step: int) -> None:
        if not main:  # rank 0 writes; the others wait until the checkpoint is complete
            dist.barrier()
            return
        try:
            _save(step)
        finally:
            dist.barrier()

    def _save(step: int) -> None:
        ckpt.save_checkpoint(run_dir, model, {
            "step": step, "epoch": step // per_epoch,
            **({"optimizers": {k: o.state_dict() for k, o in opts.items()}} if custom
               else {"optimizer": opts["main"].state_dict()}),
            "rng": _rng_state(device), "elapsed": elapsed + (time.perf_counter() - t0),
            "total_steps": total, "lr_scale": lr_scale, "rollbacks": rollbacks,
            **({"scaler": scaler.state_dict()} if scaler is not None else {}),
        })

    # SIGINT / SIGTERM: finish the step, write a checkpoint, stop (a second signal acts at once)
    stop: dict[str, int] = {}
    old_handlers: dict[int, object] = {}

    def on_signal(signum, frame):
        stop["signum"] = signum
        signal.signal(signum, old_handlers.get(signum, signal.SIG_DFL))

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, on_signal)

    bar = None
    if progress and main:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True, leave=False,
                   desc=f"train {getattr(model, 'name', '')}")
    model.train()
    t0 = time.perf_counter()
    last_loss = float("nan")
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}  # per key: a GAN logs g_loss only on generator steps
    count, t_log = 0, time.perf_counter()
    try:
        if cfg.on_nan == "rollback" and not ckpt.has_checkpoint(run_dir):
            save(step)  # something to roll back to
        while step < total:
            try:
                epoch, start = divmod(step, per_epoch)
                order = epoch_order(n, cfg.seed, epoch).to(device)
                t_epoch = time.perf_counter()
                for b in range(start, per_epoch):
                    idx = order[b * bs:(b + 1) * bs]
                    x = data.prepare(data.train.x[idx], train=True)  # the global batch (binarised once)
                    y = data.train.y[idx] if uses_labels else None
                    if set_step is not None:  # schedules inside the model (k-sparse k, stacked phases): a function of the step
                        set_step(step, total)
                    if cfg.schedule != "constant" or lr_scale != 1.0:
                        scale = lr_at(cfg, step, total) / cfg.lr * lr_scale
                        for o in opts.values():
                            for grp in o.param_groups:
                                grp["lr"] = grp["base_lr"] * scale
                    # torchrun: this rank's share of the batch; per-example random draws are global
                    with dist.step_shard(len(idx)) as (lo, hi):
                        if D.enabled:
                            x = x[lo:hi]
                            y = None if y is None else y[lo:hi]
                        if custom:  # the model applies its own losses through the updater
                            with autocast():
                                out = model.train_step(x, y, updater, step, total)
                            if scaler is not None:
                                scaler.update()
                            out.update(updater.grad_norms)
                            bad = _first_bad(out, grads=scaler is None)
                        else:
                            with autocast():
                                out = model.loss(x, y) if uses_labels else model.loss(x)
                            loss = out["loss"]
                            opt = opts["main"]
                            opt.zero_grad(set_to_none=True)
                            (scaler.scale(loss) if scaler is not None else loss).backward()
                            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                            dist.all_reduce_grads(params)
                            if scaler is not None:
                                scaler.unscale_(opt)
                            out["grad_norm"] = _grad_norm(params, cfg.grad_clip)
                            # one check (one device sync) for the loss, its terms and the gradient
                            bad = _first_bad(out, grads=scaler is None)
                            if bad is None:
                                if scaler is not None:
                                    scaler.step(opt)  # skipped when the scaled gradients overflowed
                                    scaler.update()
                                else:
                                    opt.step()
                    if bad is not None:
                        what = f"the gradient norm ({bad})" if bad.startswith("grad_norm") else bad
                        v = torch.as_tensor(out[bad]).detach().float().reshape(-1)
                        val = float(v[~torch.isfinite(v)][0])
                        raise TrainingDiverged(
                            f"{what} became {val} at step {step + 1} (epoch {epoch + 1}); lower the learning rate "
                            f"(train.lr={cfg.lr}), set train.grad_clip, or set train.on_nan=rollback; "
                            "the last checkpoint is kept"
                        )
                    step += 1
                    for k, v in out.items():
                        v = v.detach()
                        sums[k] = sums[k] + v if k in sums else v
                        counts[k] = counts.get(k, 0) + 1
                    count += 1
                    if step % cfg.log_every == 0 or step == total or b == per_epoch - 1:
                        now = time.perf_counter()
                        rec = {"step": step, "epoch": round(step / per_epoch, 4), "split": "train"}
                        rec.update(dist.mean_over_ranks({k: float(v) / counts[k] for k, v in sums.items()}))
                        if cfg.schedule != "constant" or lr_scale != 1.0:
                            rec["lr"] = next(iter(opts.values())).param_groups[0]["lr"]
                        rec["examples_per_s"] = round(count * bs / max(now - t_log, 1e-9), 1)
                        rec["time"] = round(elapsed + now - t0, 3)
                        writer.write(rec)
                        last_loss = rec.get("loss", float("nan"))
                        if bar is not None:
                            bar.set_postfix(loss=f"{last_loss:.4g}", ex_s=f"{rec['examples_per_s']:.0f}", refresh=False)
                        sums, counts, count, t_log = {}, {}, 0, now
                    if bar is not None:
                        bar.update(1)
                    if cfg.sample_every and step % cfg.sample_every == 0 and on_epoch_end and main:
                        on_epoch_end(model, epoch, step)
                        model.train()
                    if quality is not None and cfg.quality_every and step % cfg.quality_every == 0 and step < total:
                        check_quality(step)
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                        save(step)
                    if (dist.any_rank(bool(stop)) if D.enabled else stop) and step < total:
                        save(step)
                        signum = stop.get("signum", signal.SIGTERM)
                        name = signal.Signals(signum).name
                        raise TrainingInterrupted(
                            f"{name} at step {step}: checkpoint written; continue with "
                            f"genlab train --out {run_dir} --resume", signum)
                    if step >= total:
                        break
                if step % per_epoch == 0 or step >= total:
                    rec = {"step": step, "epoch": round(step / per_epoch, 4), "split": "epoch",
                           "epoch_seconds": round(time.perf_counter() - t_epoch, 3)}
                    writer.write(rec)
                    if data.val is not None and main:
                        vals = evaluate(model, data, split="val")
                        writer.write({"step": step, "epoch": rec["epoch"], "split": "val", **vals})
                        model.train()
                    if on_epoch_end and not cfg.sample_every and main:
                        on_epoch_end(model, epoch, step)
                        model.train()
            except TrainingDiverged as e:
                if cfg.on_nan != "rollback" or rollbacks >= cfg.max_rollbacks:
                    if cfg.on_nan == "rollback":
                        raise TrainingDiverged(f"{e} (after {rollbacks} rollbacks)") from None
                    raise
                state = ckpt.load_checkpoint(run_dir, model)
                bad_step, scale_now = step, lr_scale
                restore(state)
                lr_scale = scale_now  # the rate goes down at every rollback, even to the same checkpoint
                sums, counts, count, t_log = {}, {}, 0, time.perf_counter()
                rollbacks += 1
                lr_scale *= cfg.rollback_lr_factor
                if main:
                    truncate_metrics(run_dir, step)
                msg = (f"{e.args[0].split(';')[0]}; rolled back to step {step} with the learning rate "
                       f"x{lr_scale:g} (rollback {rollbacks} of {cfg.max_rollbacks})")
                writer.write({"step": step, "split": "warning", "warning": msg, "diverged_at": bad_step})
                if main:
                    print(f"genlab: warning: {msg}", file=sys.stderr)
                if bar is not None:
                    bar.n = step
                    bar.refresh()
        if quality is not None and cfg.quality_every:
            check_quality(step)
        save(step)
    finally:  # an interrupted run keeps its last checkpoint; `--resume` continues from it
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
        if bar is not None:
            bar.close()
        writer.close()
    return {"steps": step, "epochs": step / per_epoch, "seconds": elapsed + time.perf_counter() - t0,
            "steps_per_epoch": per_epoch, "final_loss": last_loss}
