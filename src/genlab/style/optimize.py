"""Optimise an input, not a network: the loop shared by style transfer and input-space methods.

Neural style transfer (``genlab.style.nst``) changes the pixels of an image until a frozen
network's features match targets; feature visualisation (gradient ascent on a filter's
activation, the lectures' "(almost) style transfer") and adversarial examples do the same with
other losses. They all need the same few things, collected here so they are written once:

- an input tensor (pixels, or any parametrisation of them) that is the only trainable thing;
- a loss closure ``loss_fn(x) -> (total, parts)`` (a scalar tensor and a dict of floats to log);
- L-BFGS (``torch.optim.LBFGS``, lr 1, no line search, so one iteration is exactly one loss
  evaluation, i.e. one forward and one backward pass) or Adam;
- the loss recorded at every evaluation, optional clamping to a valid range after every
  optimiser step, and a callback that may stop the run.

L-BFGS is made independent of the loss's scale (see ``LBFGS_START``) and of the clamping (the
step actually taken enters its memory), two ways torch's L-BFGS otherwise fails on pixels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..errors import GenlabError

LossFn = Callable[[Tensor], "tuple[Tensor, dict[str, float]]"]
OPTIMIZERS = ("lbfgs", "adam")
# torch's L-BFGS has absolute thresholds: it drops curvature pairs with s.y <= 1e-10 and stops at
# |gradient| <= 1e-7 or loss changes below 1e-9. With a loss of 0.3 (untrained VGG16, 64 px) every
# pair was dropped and it crawled as plain gradient descent; so the objective it sees is scaled
# to start at this value (a fixed factor for the whole run; the recorded losses are unscaled).
LBFGS_START = 1e4


@dataclass
class OptimizeResult:
    """``x``: the optimised input (detached, clamped when asked). ``history``: one entry per loss
    evaluation for ``total``, every key of the closure's ``parts`` and ``seconds`` (cumulative wall
    time at that evaluation); ``history[k][i]`` is the loss at the input *before* update ``i``.
    ``evaluations``: how many there were (fewer than ``steps`` only when L-BFGS converged or the
    callback stopped the run)."""

    x: Tensor
    history: dict[str, list[float]] = field(default_factory=dict)
    evaluations: int = 0
    seconds: float = 0.0


def optimize_input(x0: Tensor, loss_fn: LossFn, *, steps: int, optimizer: str = "lbfgs", lr: float | None = None,
                   clamp: tuple[float, float] | None = None, max_iter: int | None = None, history_size: int = 100,
                   callback: Callable[[int, Tensor, dict], bool | None] | None = None) -> OptimizeResult:
    """Minimise ``loss_fn`` over a copy of ``x0`` with ``steps`` loss evaluations.

    ``optimizer``: "lbfgs" (``torch.optim.LBFGS`` with ``lr`` default 1, ``max_iter`` iterations per
    ``step()`` call, default 1 with ``clamp`` and 20 without, and ``history_size`` curvature pairs;
    the L-BFGS memory is kept across calls) or "adam" (``lr`` default 0.02, one step per
    evaluation). ``clamp=(lo, hi)`` projects ``x`` into the range after every optimiser step (every
    Adam step; every ``max_iter`` L-BFGS iterations, by default every iteration, which converged
    further than every 20 in style transfer) and at the end; for L-BFGS the step actually taken
    (after the projection) is what enters its curvature memory. ``callback(i, x, parts)`` runs
    after evaluation ``i`` (x the evaluated input, parts with ``total``); returning True stops.
    """
    if optimizer not in OPTIMIZERS:
        raise GenlabError(f"optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    if not isinstance(steps, int) or steps < 1:
        raise GenlabError(f"steps: expected a positive number, got {steps!r}")
    x = x0.detach().clone().requires_grad_(True)
    max_iter = max_iter or (1 if clamp is not None else 20)
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=1.0 if lr is None else lr, max_iter=max_iter, history_size=history_size)
    else:
        opt = torch.optim.Adam([x], lr=0.02 if lr is None else lr)
    hist: dict[str, list[float]] = {"total": [], "seconds": []}
    state = {"n": 0, "stop": False, "at": None, "scale": None}
    t0 = time.perf_counter()

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        total, parts = loss_fn(x)
        value = float(total.detach())
        if not torch.isfinite(total):
            raise GenlabError(f"the loss became {value} at evaluation {state['n']}; lower the learning rate "
                              "or the loss weights")
        if state["scale"] is None:
            state["scale"] = LBFGS_START / abs(value) if optimizer == "lbfgs" and value != 0 else 1.0
        (total * state["scale"]).backward()
        state["at"] = x.detach().clone()  # where this gradient was taken
        rec = {"total": value, **{k: float(v) for k, v in parts.items()}}
        for k, v in rec.items():
            hist.setdefault(k, []).append(v)
        hist["seconds"].append(time.perf_counter() - t0)
        state["n"] += 1
        if callback is not None and callback(state["n"] - 1, x.detach(), rec):
            state["stop"] = True
        return total * state["scale"]

    def project():
        if clamp is None:
            return
        with torch.no_grad():
            x.clamp_(*clamp)
        st = opt.state.get(x)
        if optimizer == "lbfgs" and st and "d" in st and state["at"] is not None:
            # L-BFGS takes its next curvature pair as s = t * d, the step it took; after clamping the
            # step really taken is x - (the point of the last gradient). Without this the stale pair
            # wrecks the inverse-Hessian estimate and the next step can increase the loss 1000-fold.
            st["d"], st["t"] = (x.detach() - state["at"]).flatten(), 1.0

    while state["n"] < steps and not state["stop"]:
        before = state["n"]
        if optimizer == "lbfgs":
            left = steps - state["n"]  # one evaluation per iteration: no line search
            opt.param_groups[0].update(max_iter=min(max_iter, left), max_eval=min(max_iter, left))
            opt.step(closure)
        else:
            closure()
            opt.step()
        project()
        if state["n"] == before or (optimizer == "lbfgs" and state["n"] - before < min(max_iter, steps - before)
                                    and not state["stop"]):
            break  # L-BFGS stopped early: converged (gradient or change below tolerance)
    project()
    return OptimizeResult(x.detach(), hist, state["n"], time.perf_counter() - t0)

