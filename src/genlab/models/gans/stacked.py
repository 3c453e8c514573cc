"""Many seeds of the MLP GAN at once: K independent ``gan`` models trained in lockstep as one
set of stacked tensors (``StackedGAN``, ``train_stacked``).

A benchmark over seeds (the PacGAN protocol trains 10 seeds for 400000 steps on each data set)
trains K small networks that each leave a GPU idle: every step is a few hundred kernels of a few
microseconds. Stacking the K models' weights along a leading dimension turns each layer of the K
networks into one batched matrix product (``torch.baddbmm``), each BatchNorm into one reduction
over the batch dimension, and both Adam updates into one pass over the stacked tensors, so a step
costs about as many kernels for K models as for one; on CUDA the whole step (data indexing,
noise, both updates) is then captured once as a CUDA graph and replayed.

Nothing is approximated. Each model's loss is its own batch mean and the stacked loss is their
sum, so every model gets exactly its own gradient; Adam is elementwise, so one Adam over the
stacked tensors is K independent Adams; BatchNorm normalises each model's batch with its own
statistics and updates its own running statistics (the modules' momentum and eps, unbiased
running variance, as ``nn.BatchNorm1d``). Initial weights come from ``genlab.train``'s own construction (seed, then
``build_model``) and each model walks its data in ``genlab.train``'s epoch order for its seed.
Only the noise differs: it is drawn for all K models from one stream, not from each seed's.
``tests/test_gan_stacked.py`` checks a stacked step against K separate ``GAN.train_step`` calls
given the same batches and noise.

Supported: ``gan`` with any hidden sizes, with or without BatchNorm, maxout or LeakyReLU in D,
``pack``, ``d_steps``, every ``g_loss`` and ``d_loss``, separate G/D learning rates, a constant
learning rate, data whose size is a multiple of the batch. Not supported (a ConfigError names the
field): ``gp``, ``r1``, ``mbstd``, ``spectral_norm``, ``ema`` (and ``ema_warmup``, ``ema_bn``), learning-rate schedules.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .gan import GAN, d_loss_fn, g_loss_fn

UNSUPPORTED = {"gp": 0.0, "r1": 0.0, "mbstd": False, "spectral_norm": False, "ema": 0.0, "ema_warmup": False, "ema_bn": 0}
WARMUP = 3  # eager steps before a CUDA graph is captured


def _linears(seq: nn.Module) -> list[nn.Linear]:
    """The linear layers of a ``gan`` network in order (a Maxout's own linear map included)."""
    return [m for m in seq.modules() if isinstance(m, nn.Linear)]


def _batchnorms(seq: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in seq.modules() if isinstance(m, nn.BatchNorm1d)]


def _stack(ts, param: bool = True):
    """(K, ...) from K tensors: a parameter (trained) or a buffer."""
    t = torch.stack([t.detach() for t in ts]).contiguous()
    return nn.Parameter(t) if param else t


class StackedGAN(nn.Module):
    """K ``gan`` models of one configuration as stacked tensors: a linear layer's weight is
    (K, in, out), a bias or BatchNorm vector (K, 1, out). Build it from K models
    (the constructor) and write the trained weights back into them (:meth:`write_back`)."""

    def __init__(self, models: list[GAN]):
        super().__init__()
        if not models:
            raise ConfigError("stacked GAN: expected at least one model")
        m0 = models[0]
        c = m0.config
        for m in models:
            if type(m) is not GAN:
                raise ConfigError(f"stacked GAN: model {m.name!r} is not supported; expected the MLP 'gan'")
            if m.config != c or m.shape != m0.shape:
                raise ConfigError("stacked GAN: every model must have the same configuration and data shape")
        for name, off in UNSUPPORTED.items():
            if getattr(c, name) != off:
                raise ConfigError(f"{name}: not supported by the stacked trainer (expected {off}, got {getattr(c, name)})")
        self.k, self.config, self.latent, self.dim, self.shape = len(models), c, m0.latent, m0.dim, m0.shape
        self.sigmoid = bool(m0.unit_range and m0.dim > 2)  # GAN._out
        self.maxout = c.d_maxout if c.d_maxout > 1 else 0
        self.bn = bool(c.g_batchnorm)
        # layer i of every model, side by side (zip(*...)): weights as (K, in, out), vectors (K, 1, n)
        g_lin = list(zip(*(_linears(m.generator) for m in models)))
        d_lin = list(zip(*(_linears(m.discriminator) for m in models)))
        self.g_w = nn.ParameterList([_stack(l.weight.t() for l in ls) for ls in g_lin])
        self.g_b = nn.ParameterList([_stack(l.bias[None] for l in ls) for ls in g_lin])
        self.d_w = nn.ParameterList([_stack(l.weight.t() for l in ls) for ls in d_lin])
        self.d_b = nn.ParameterList([_stack(l.bias[None] for l in ls) for ls in d_lin])
        self.bn_w, self.bn_b = nn.ParameterList(), nn.ParameterList()
        if self.bn:
            bns = list(zip(*(_batchnorms(m.generator) for m in models)))
            self.bn_momentum, self.bn_eps = bns[0][0].momentum, bns[0][0].eps  # nn.BatchNorm1d's, not copies
            for i, ms in enumerate(bns):
                self.bn_w.append(_stack(b.weight[None] for b in ms))
                self.bn_b.append(_stack(b.bias[None] for b in ms))
                self.register_buffer(f"bn_mean{i}", _stack((b.running_mean[None] for b in ms), param=False))
                self.register_buffer(f"bn_var{i}", _stack((b.running_var[None] for b in ms), param=False))
            self.register_buffer("bn_batches", torch.zeros((), dtype=torch.long))

    def g_params(self) -> list[nn.Parameter]:
        return [*self.g_w, *self.g_b, *self.bn_w, *self.bn_b]

    def d_params(self) -> list[nn.Parameter]:
        return [*self.d_w, *self.d_b]

    # --- the K networks ----------------------------------------------------------------------
    @staticmethod
    def _mlp(h: torch.Tensor, ws, bs, hidden) -> torch.Tensor:
        """The K networks' linear layers as batched products, ``hidden(h, i)`` after each but the last."""
        last = len(ws) - 1
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = hidden(h, i)
        return h

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """(K, B, latent) noise -> (K, B, dim) samples, each model on its own slice; in training
        mode BatchNorm uses each model's batch statistics and updates its running ones."""
        h = self._mlp(z, self.g_w, self.g_b, lambda h, i: F.relu(self._batchnorm(h, i) if self.bn else h))
        return torch.sigmoid(h) if self.sigmoid else h

    def _batchnorm(self, h: torch.Tensor, i: int) -> torch.Tensor:
        rm, rv = getattr(self, f"bn_mean{i}"), getattr(self, f"bn_var{i}")
        if self.training:
            n = h.shape[1]
            mean = h.mean(1, keepdim=True)
            d = h - mean
            var = (d * d).mean(1, keepdim=True)
            with torch.no_grad():  # nn.BatchNorm1d: the running variance takes the unbiased estimate
                rm.lerp_(mean, self.bn_momentum)
                rv.lerp_(var * (n / max(n - 1, 1)), self.bn_momentum)
        else:
            d, var = h - rm, rv
        return d * torch.rsqrt(var + self.bn_eps) * self.bn_w[i] + self.bn_b[i]

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, dim) -> (K, B // pack) logits: D judges ``pack`` consecutive samples at once (a
        short remainder is dropped, as in ``gan``)."""
        k, n, d = x.shape
        p = self.config.pack
        h = x[:, : (n // p) * p].reshape(k, n // p, d * p)
        if self.maxout:
            hidden = lambda h, i: h.view(k, h.shape[1], -1, self.maxout).max(-1).values  # noqa: E731
        else:
            hidden = lambda h, i: F.leaky_relu(h, 0.2)  # noqa: E731
        return self._mlp(h, self.d_w, self.d_b, hidden).squeeze(-1)

    # --- back into K models -----------------------------------------------------------------
    @torch.no_grad()
    def write_back(self, models: list[GAN]) -> list[GAN]:
        """Copy each model's slice of the stacked weights and BatchNorm statistics into ``models``
        (the ones this stack was built from, or K fresh ones of the same configuration)."""
        if len(models) != self.k:
            raise ConfigError(f"stacked GAN: expected {self.k} models to write back into, got {len(models)}")
        for j, m in enumerate(models):
            for ls, ws, bs in ((_linears(m.generator), self.g_w, self.g_b), (_linears(m.discriminator), self.d_w, self.d_b)):
                for lin, w, b in zip(ls, ws, bs):
                    lin.weight.copy_(w[j].t())
                    lin.bias.copy_(b[j, 0])
            if self.bn:
                for i, bn in enumerate(_batchnorms(m.generator)):
                    bn.weight.copy_(self.bn_w[i][j, 0])
                    bn.bias.copy_(self.bn_b[i][j, 0])
                    bn.running_mean.copy_(getattr(self, f"bn_mean{i}")[j, 0])
                    bn.running_var.copy_(getattr(self, f"bn_var{i}")[j, 0])
                    bn.num_batches_tracked.fill_(int(self.bn_batches))
        return models


class StackedTrainer:
    """The training step of a :class:`StackedGAN`: the K models' data, noise and both updates,
    written so that one step can be captured as a CUDA graph (no host synchronisation, fixed
    shapes, the batch chosen by an on-device counter)."""

    def __init__(self, stack: StackedGAN, data: torch.Tensor, seeds: list[int], batch_size: int,
                 lr: float, g_lr: float = 0.0, d_lr: float = 0.0, eps: float = 1e-8):
        from ...train.engine import epoch_order

        c = stack.config
        k, n = data.shape[0], data.shape[1]
        if k != stack.k or len(seeds) != k:
            raise ConfigError(f"stacked GAN: {stack.k} models, {k} data sets and {len(seeds)} seeds; expected one of each per model")
        if batch_size < 1 or n % batch_size:
            raise ConfigError(f"batch_size: the stacked trainer needs a batch that divides the {n} training points, got {batch_size}")
        self.stack, self.data, self.seeds, self.bs = stack, data, list(seeds), batch_size
        self.per_epoch = n // batch_size
        self.device = data.device
        self._epoch_order = epoch_order
        cuda = self.device.type == "cuda"
        # CUDA: the multi-tensor Adam, capturable in a CUDA graph; CPU: the fused kernel (as
        # genlab.train's optimizer), one pass over the parameters
        kw = dict(betas=(c.beta1, c.beta2), eps=eps, **(dict(foreach=True, capturable=True) if cuda else dict(fused=True)))
        self.opt_d = torch.optim.Adam(stack.d_params(), lr=d_lr or c.d_lr or lr, **kw)
        self.opt_g = torch.optim.Adam(stack.g_params(), lr=g_lr or c.g_lr or lr, **kw)
        self.order = torch.empty(k, self.per_epoch, batch_size, dtype=torch.long, device=self.device)
        self.b = torch.zeros(1, dtype=torch.long, device=self.device)  # the batch within the epoch
        self.d_loss = torch.zeros((), device=self.device)
        self.g_loss = torch.zeros((), device=self.device)
        self.step_count = 0
        self._epoch = None
        self.graph = None
        self._warm = 0  # eager steps taken on a side stream before the capture
        self.graph_error: str | None = None  # why the capture failed, if it did

    def noise(self) -> torch.Tensor:
        """(K, B, latent) standard normal noise (one stream for the K models)."""
        return torch.randn(self.stack.k, self.bs, self.stack.latent, device=self.device)

    def _set_epoch(self, epoch: int) -> None:
        if self._epoch != epoch:
            self.order.copy_(torch.stack([self._epoch_order(self.data.shape[1], s, epoch) for s in self.seeds])
                             .view_as(self.order))
            self._epoch = epoch

    def _step(self, d_update: bool, g_update: bool) -> None:
        """One step of all K models: a D update on the current batch, and a G update when
        ``g_update``; advances the on-device batch counter."""
        s, c = self.stack, self.stack.config
        k = s.k
        idx = self.order.index_select(1, self.b).squeeze(1)  # (K, B)
        x = torch.gather(self.data, 1, idx[..., None].expand(-1, -1, self.data.shape[2]))
        self.b.add_(1)
        if d_update:
            with torch.no_grad():
                fake = s.generate(self.noise())
            # each model's own batch mean, summed over models: each gets exactly its own gradient
            ld = k * d_loss_fn(c.d_loss, s.critic(x), s.critic(fake))
            self.opt_d.zero_grad(set_to_none=True)
            ld.backward(inputs=s.d_params())
            self.opt_d.step()
            self.d_loss.copy_(ld.detach() / k)
        if g_update:
            lg = k * g_loss_fn(c.g_loss, c.d_loss, s.critic(s.generate(self.noise())))
            self.opt_g.zero_grad(set_to_none=True)
            lg.backward(inputs=s.g_params())
            self.opt_g.step()
            self.g_loss.copy_(lg.detach() / k)
        if s.bn:
            s.bn_batches.add_(2 if g_update else 1)  # the D step's generator pass counts too

    def step(self, graph: bool = False) -> None:
        """One training step (``genlab.train``'s step ``step_count``). With ``graph`` on CUDA
        (and ``d_steps`` 1): three eager steps on a side stream (they build Adam's state and the
        libraries' workspaces), then the step is captured once as a CUDA graph and replayed."""
        c = self.stack.config
        epoch, b = divmod(self.step_count, self.per_epoch)
        self._set_epoch(epoch)
        if b == 0:
            self.b.zero_()
        g_update = (self.step_count + 1) % c.d_steps == 0
        if graph and c.d_steps == 1 and self.device.type == "cuda" and self.graph_error is None:
            if self.graph is None and self._warm >= WARMUP:
                try:
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):  # records the step's kernels without running them
                        self._step(True, True)
                    self.graph = g
                except RuntimeError as e:  # go on eagerly (slower, the same training) and say why
                    self.graph_error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    torch.cuda.synchronize(self.device)
                    return self.step(graph=False)
            if self.graph is not None:
                self.graph.replay()
            else:
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    self._step(True, True)
                torch.cuda.current_stream(self.device).wait_stream(side)
                self._warm += 1
        else:
            self._step(True, g_update)
        self.step_count += 1

    # --- resumable state ------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step_count, "stack": self.stack.state_dict(), "opt_d": self.opt_d.state_dict(),
                "opt_g": self.opt_g.state_dict(), "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    def load(self, st: dict) -> None:
        if self.graph is not None:
            raise ConfigError("stacked GAN: load a state before the first step")
        self.stack.load_state_dict(st["stack"])
        self.opt_d.load_state_dict(st["opt_d"])
        self.opt_g.load_state_dict(st["opt_g"])
        torch.set_rng_state(st["rng_cpu"])
        if st.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(st["rng_cuda"], self.device)
        self.step_count = int(st["step"])
        epoch, b = divmod(self.step_count, self.per_epoch)
        self._set_epoch(epoch)
        self.b.fill_(b)


def build_seed_models(config: dict, data_names: list[str], seeds: list[int]) -> tuple[list[GAN], list]:
    """One ``gan`` per (data set, seed), initialised as ``genlab.train`` initialises it
    (``torch.manual_seed(seed)``, then the model built from ``config`` for that data set's
    shape), and the loaded data sets."""
    from ...data import DataConfig, load_data
    from ...run import build_model

    datasets = {d: load_data(DataConfig(name=d)) for d in dict.fromkeys(data_names)}
    models = []
    for d, s in zip(data_names, seeds):
        torch.manual_seed(s)
        models.append(build_model("gan", config, datasets[d].shape, datasets[d].value_range, where="model gan"))
    return models, [datasets[d] for d in data_names]


def train_stacked(config: dict, data_names: list[str], seeds: list[int], *, steps: int, batch_size: int,
                  lr: float, device: str = "auto", graph: bool = True, state_path: str | Path | None = None,
                  save_every: int = 20000, log_every: int | None = None, stop_after: float | None = None,
                  eval_every: int = 0, evaluate=None, log=None) -> dict:
    """Train one ``gan`` per (data set, seed) pair (``data_names[i]``, ``seeds[i]``) for ``steps``
    steps, all at once, and return {"models": the K trained GANs on the CPU in eval mode,
    "steps": steps done, "seconds": wall time, "cpu_seconds": process CPU time, "device": ...}.

    ``state_path``: a file that holds the run's state every ``save_every`` steps and at the end
    (written atomically); if it exists the run goes on from it, so a long run can be split over
    several processes (``stop_after`` seconds: save and stop within 1000 steps after that long,
    with ``"finished": False``).

    ``evaluate(models, step)``, called every ``eval_every`` steps and at the end with the K models
    as they are at that step (CPU copies in eval mode), returns anything JSON-like; the returned
    ``"history"`` is the list of ``{"step": ..., "value": ...}`` over the whole run, resumed runs
    included (it is kept in the state file)."""
    from ...io import atomic_save_torch
    from ...train.engine import resolve_device

    if eval_every < 0 or (eval_every and evaluate is None):
        raise ConfigError(f"eval_every: expected 0, or a positive step count with an evaluate function; got {eval_every}")
    if len(data_names) != len(seeds):
        raise ConfigError(f"stacked GAN: {len(data_names)} data sets for {len(seeds)} seeds; expected one per seed")
    if steps < 1:
        raise ConfigError(f"steps: expected a positive number of steps, got {steps}")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    log_every = log_every or min(10000, max(1, steps // 20))  # a progress line every 5% at most
    dev = resolve_device(device)
    models, datasets = build_seed_models(config, data_names, seeds)
    n = {len(ds.train) for ds in datasets}
    if len(n) != 1:
        raise ConfigError(f"stacked GAN: the data sets {sorted(set(data_names))} differ in size ({sorted(n)}); expected one size")
    for ds in datasets:
        if getattr(ds, "binarize", None) == "dynamic":
            raise ConfigError(f"data.binarize: dynamic binarisation is not supported by the stacked trainer ({ds.name})")
    # K CPU models the evaluation sees: copies, so that no RNG is drawn from during the run
    snapshot = copy.deepcopy(models) if evaluate is not None else None
    data = torch.stack([ds.as_float(ds.train.x).flatten(1) for ds in datasets]).to(dev)
    stack = StackedGAN(models).to(dev).train()
    tr = StackedTrainer(stack, data, seeds, batch_size, lr)
    path = Path(state_path) if state_path else None
    history = []
    if path is not None and path.is_file():
        st = torch.load(path, map_location=dev, weights_only=False)
        if st.get("key") != _key(config, data_names, seeds, batch_size, lr):
            raise ConfigError(f"state_path: {path} holds another run (other config, data, seeds, batch or lr); remove it or choose another path")
        tr.load(st["trainer"])
        history = list(st.get("history", []))
        log(f"stacked GAN: resumed {path} at step {tr.step_count}")
    if tr.step_count == 0:  # the noise stream (a resumed run restores it)
        torch.manual_seed(1_000_003 + sum(seeds))

    def evaluate_now(i: int) -> None:
        if evaluate is None or (history and history[-1]["step"] == i):
            return
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        for m in stack.write_back(snapshot):
            m.eval()
        # the training's noise stream goes on as if nothing had been evaluated
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            history.append({"step": i, "value": evaluate(snapshot, i)})

    if tr.step_count == 0 and eval_every:
        evaluate_now(0)
    t0, c0 = time.perf_counter(), time.process_time()
    start = tr.step_count
    finished, warned = True, False

    def save():
        if path is not None:
            atomic_save_torch(path, {"key": _key(config, data_names, seeds, batch_size, lr), "trainer": tr.state(),
                                     "history": history})

    while tr.step_count < steps:
        tr.step(graph=graph)
        i = tr.step_count
        if tr.graph_error is not None and not warned:
            log(f"stacked GAN: no CUDA graph ({tr.graph_error}); going on without one")
            warned = True
        if i % log_every == 0 or i == steps:
            dl, gl = float(tr.d_loss), float(tr.g_loss)  # a synchronisation, only here
            if not (math.isfinite(dl) and math.isfinite(gl)):
                raise ConfigError(f"stacked GAN: a loss became {dl if not math.isfinite(dl) else gl} at step {i}; lower train.lr")
            el = time.perf_counter() - t0
            rate = (i - start) / el
            log(f"stacked GAN: step {i}/{steps} ({stack.k} models): d_loss {dl:.4f} g_loss {gl:.4f}, "
                f"{1e3 / rate:.3f} ms/step, {(steps - i) / rate / 60:.1f} min left")
        if eval_every and (i % eval_every == 0 or i == steps):
            evaluate_now(i)
        over = stop_after is not None and i < steps and time.perf_counter() - t0 > stop_after
        if path is not None and (i % save_every == 0 or i == steps or (over and i % 1000 == 0)):
            save()
            if over:  # at most 1000 steps after stop_after, whatever save_every is
                finished = False
                break
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    stack.cpu()
    out = stack.write_back(models)
    for m in out:
        m.eval()
    return {"models": out, "datasets": datasets, "steps": tr.step_count, "steps_this_call": tr.step_count - start,
            "seconds": seconds, "cpu_seconds": cpu, "device": str(dev), "graph": tr.graph is not None,
            "graph_error": tr.graph_error, "history": history,
            "finished": finished}


def _key(config, data_names, seeds, batch_size, lr) -> str:
    import json

    return json.dumps([config, list(data_names), list(seeds), batch_size, lr], sort_keys=True)
