"""Data-parallel training under ``torchrun`` (torch.distributed: gloo on the CPU, NCCL on GPUs).

``torchrun --nproc_per_node N -m genlab train ...`` starts N processes; each one trains the same
model on its share of every global batch, and the gradients are averaged before each optimizer
step, so the N processes take the same steps as one process would on the whole batch:

- the batch size is the global one: each rank takes a contiguous 1/N of every batch (the
  shares differ by at most one example; gradients are weighted by share size);
- every random draw that has one value per example (z of a GAN, the VAE's epsilon, a denoising
  mask) is drawn for the whole global batch and sliced, so the N ranks together use exactly the
  numbers one process would, and the random streams of all ranks stay identical;
- BatchNorm normalises with the statistics of the global batch (``GlobalBatchNorm``, which
  works with gloo on the CPU, where torch's SyncBatchNorm does not);
- gradients are all-reduced explicitly (in buckets) before clipping and stepping. That is what
  DistributedDataParallel does inside its backward hooks; doing it in the engine covers models
  that call several networks per step with several optimizers (GANs) in one code path;
- only rank 0 writes files (config, checkpoints, metrics, samples, eval); logged losses are
  averaged over the ranks; a SIGTERM or SIGINT that reaches any rank stops all of them at the
  same step, after rank 0 wrote a checkpoint.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_DIST = Dist()
_SHARD: tuple[int, int, int] | None = None  # (offset, local size, global size) of the current step


def env_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE: expected an integer, got {os.environ.get('WORLD_SIZE')!r}") from None


def setup(device_name: str = "auto") -> Dist:
    """Join the process group torchrun describes in the environment (once per process); a plain
    run is world size 1 and touches nothing."""
    global _DIST
    world = env_world()
    if world <= 1:
        _DIST = Dist()
        return _DIST
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda") or device_name.startswith("cuda")
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    _DIST = Dist(rank=rank, world=world, local_rank=local)
    return _DIST


def info() -> Dist:
    return _DIST


def is_main() -> bool:
    return _DIST.main


def device_for(name: str) -> str:
    """Under torchrun on GPUs each rank takes the GPU of its local rank."""
    if _DIST.enabled and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{_DIST.local_rank}"
    return name


def barrier() -> None:
    if _DIST.enabled:
        import torch.distributed as dist

        dist.barrier()


def shard_bounds(n: int) -> tuple[int, int]:
    """This rank's [start, stop) of a global batch of ``n`` examples (contiguous, sizes differ by
    at most one)."""
    base, extra = divmod(n, _DIST.world)
    start = _DIST.rank * base + min(_DIST.rank, extra)
    return start, start + base + (1 if _DIST.rank < extra else 0)


@contextmanager
def step_shard(n_global: int):
    """Within the block, per-example random draws of this rank's share are slices of a draw for
    the global batch (see :func:`draw`)."""
    global _SHARD
    start, stop = shard_bounds(n_global)
    old, _SHARD = _SHARD, (start, stop - start, n_global)
    try:
        yield start, stop
    finally:
        _SHARD = old


def draw(sample, n: int) -> torch.Tensor:
    """``sample(m)`` returns m per-example random values (first dimension m). In a distributed step
    whose share has ``n`` examples, draw them for the whole global batch and return this rank's
    slice; otherwise ``sample(n)``."""
    if _SHARD is not None and _DIST.enabled and n == _SHARD[1]:
        offset, local, total = _SHARD
        return sample(total)[offset:offset + local]
    return sample(n)


def share_weight() -> float | None:
    """This rank's fraction of the current global batch (None outside a distributed step)."""
    if _SHARD is None or not _DIST.enabled:
        return None
    return _SHARD[1] / _SHARD[2]


def all_reduce_grads(params, bucket_bytes: int = 25 * 2**20) -> None:
    """Replace each gradient by the global-batch gradient: sum over ranks of (share x local
    gradient), in flat buckets of about ``bucket_bytes``."""
    if not _DIST.enabled:
        return
    import torch.distributed as dist

    w = share_weight()
    w = 1.0 / _DIST.world if w is None else w
    grads = [p.grad for p in params if p.grad is not None]
    bucket: list[torch.Tensor] = []
    size = 0

    def flush():
        nonlocal bucket, size
        if not bucket:
            return
        flat = torch.cat([g.reshape(-1) for g in bucket]).mul_(w)
        dist.all_reduce(flat)
        off = 0
        for g in bucket:
            g.copy_(flat[off:off + g.numel()].view_as(g))
            off += g.numel()
        bucket, size = [], 0

    for g in grads:
        if bucket and (g.dtype != bucket[0].dtype or g.device != bucket[0].device):
            flush()
        bucket.append(g)
        size += g.numel() * g.element_size()
        if size >= bucket_bytes:
            flush()
    flush()


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (the same seed makes them equal anyway)."""
    if not _DIST.enabled:
        return
    import torch.distributed as dist

    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, 0)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    if not _DIST.enabled or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / _DIST.world for k, v in zip(keys, t.tolist())}


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any."""
    if not _DIST.enabled:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch across ranks (sums
    and sums of squares all-reduced, with gradients flowing through the reduction)."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _DIST.enabled):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        n_local = x.numel() // x.shape[1]
        xf = x.float()
        packed = torch.cat([xf.sum(dims), (xf * xf).sum(dims),
                            torch.full((1,), float(n_local), device=x.device)])
        packed = all_reduce(packed)
        c = x.shape[1]
        n = packed[-1]
        mean = packed[:c] / n
        var = (packed[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Swap every BatchNorm1d/2d/3d of ``module`` for a GlobalBatchNorm sharing its parameters
    and buffers (state-dict keys unchanged)."""
    if not _DIST.enabled:
        return module
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.training = child.training
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            if child.track_running_stats:
                new.running_mean, new.running_var = child.running_mean, child.running_var
                new.num_batches_tracked = child.num_batches_tracked
            new.to(next(iter(child.buffers()), torch.empty(0)).device)
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module
