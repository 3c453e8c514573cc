"""Adversarial examples: the input changed, within a small budget, so that a classifier errs.

Both attacks move the pixels of images in [0, 1] (the run's own images, before the model's
resize and normalisation, which are part of ``model(x)``) in the direction that increases the
cross-entropy of the true label, within the L-infinity ball of radius ``eps`` around the image:

- FGSM (Goodfellow, Shlens and Szegedy 2015): one step,
  ``x_adv = clamp(x + eps * sign(grad_x loss(x, y)), 0, 1)``;
- PGD (Madry et al. 2018): a random start uniform in the ball (clamped to [0, 1]), then
  ``steps`` steps ``x <- P(x + alpha * sign(grad_x loss(x, y)))``, ``P`` the projection onto the
  ball around the image intersected with [0, 1] (an element-wise clamp to
  ``[max(0, x0 - eps), min(1, x0 + eps)]``); ``alpha`` defaults to ``2.5 * eps / steps``
  (Madry et al.'s choice: the walk can cross the ball's diameter and back).

Why not the shared input-optimisation loop (``genlab.style.optimize.optimize_input``, which style
transfer and feature visualisation use): its optimisers are L-BFGS and Adam, and neither takes a
sign-gradient step (Adam's first step is ``lr * g / (|g| + 1e-8)``, only close to
``lr * sign(g)``, and later ones are not even that), so it cannot give FGSM's exact closed form
or PGD's steps; and its ``clamp`` is one fixed range for every element, while PGD projects each
pixel onto its own interval around the clean image. The few lines of the sign-gradient loop are
therefore here (``_loss_grad`` is the one forward and backward pass per step).

During an attack the model is in eval mode (dropout off, BatchNorm with its running statistics)
and its parameters do not require gradients, so only the input gets a gradient; the parameters'
``requires_grad`` flags and the model's training mode are restored afterwards
(``frozen_model``), and the parameters are never changed.
"""
from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import GenlabError

METHODS = ("fgsm", "pgd")


@contextlib.contextmanager
def frozen_model(model):
    """``model`` in eval mode with no parameter requiring a gradient, for the duration; the
    flags and the training mode are restored afterwards (also on an error)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(was)


def _check_eps(eps) -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise GenlabError(f"eps: expected a finite number >= 0, got {eps}")
    return eps


def _loss_grad(model, x: Tensor, y: Tensor) -> Tensor:
    """The gradient of the summed cross-entropy with respect to the images ``x`` (summed, not
    averaged, so an image's gradient does not depend on the batch it is in)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
    return g


def fgsm(model, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """FGSM: ``clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1)`` for images ``x`` in [0, 1]
    and labels ``y`` (see the module docstring). Returns a new tensor; ``model`` is used in
    eval mode with frozen parameters (restored after)."""
    eps = _check_eps(eps)
    with frozen_model(model):
        g = _loss_grad(model, x, y)
    return (x.detach() + eps * g.sign()).clamp(0, 1)


def pgd(model, x: Tensor, y: Tensor, eps: float, steps: int = 10, alpha: float | None = None,
        seed: int = 0) -> Tensor:
    """PGD with a random start (seeded): ``steps`` sign-gradient steps of size ``alpha``
    (default ``2.5 * eps / steps``) on the cross-entropy, each followed by the projection onto
    the L-infinity ball of radius ``eps`` around ``x`` and onto [0, 1]; returns the last iterate
    (Madry et al. 2018). ``eps = 0`` returns ``x`` unchanged."""
    eps = _check_eps(eps)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise GenlabError(f"steps: expected a positive integer, got {steps!r}")
    alpha = 2.5 * eps / steps if alpha is None else float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise GenlabError(f"alpha: expected a finite number >= 0, got {alpha}")
    x0 = x.detach()
    lo, hi = (x0 - eps).clamp_min(0), (x0 + eps).clamp_max(1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    start = (torch.rand(x0.shape, generator=gen, dtype=x0.dtype) * 2 - 1).to(x0.device) * eps
    adv = torch.minimum(torch.maximum(x0 + start, lo), hi)
    with frozen_model(model):
        for _ in range(steps):
            g = _loss_grad(model, adv, y)
            adv = torch.minimum(torch.maximum(adv + alpha * g.sign(), lo), hi)
    return adv


def attack(model, x: Tensor, y: Tensor, method: str, eps: float, *, steps: int = 10, alpha: float | None = None,
           seed: int = 0) -> Tensor:
    """``fgsm`` or ``pgd`` by name."""
    if method == "fgsm":
        return fgsm(model, x, y, eps)
    if method == "pgd":
        return pgd(model, x, y, eps, steps, alpha, seed)
    raise GenlabError(f"method {method!r}: expected one of {', '.join(METHODS)}")


def classifier_of(run):
    """The run's model if it is a classifier (``genlab train classifier``), else a GenlabError."""
    model = run.model
    if not hasattr(model, "num_stages") or not hasattr(model, "prepare_input"):
        raise GenlabError(f"{run.path}: a {run.model_name} run; genlab attack needs a classifier run "
                          "(genlab train classifier ...)")
    return model


def parse_eps(text: str) -> list[float]:
    """"0.1,0.2" -> [0.1, 0.2]; each a finite number >= 0."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise GenlabError(f"--eps {text}: {part!r} is not a number") from None
        if not math.isfinite(v) or v < 0:
            raise GenlabError(f"--eps {text}: expected numbers >= 0 (pixels are in [0, 1]), got {part}")
        out.append(v)
    if not out:
        raise GenlabError("--eps: expected one or more comma-separated numbers, e.g. --eps 0.05,0.1,0.2")
    return out


def accuracy_under_attack(run, method: str, eps_list, n: int = 500, *, split: str = "test",
                          data_root: str | None = None, steps: int = 10, alpha: float | None = None, seed: int = 0,
                          batch_size: int = 256, examples: int = 0, device=None) -> dict:
    """Accuracy of a classifier run on the first ``n`` images of ``split``, clean and under
    ``method`` ("fgsm" or "pgd") at each ``eps`` of ``eps_list`` (pixel units in [0, 1]).

    ``steps``, ``alpha`` and ``seed`` are PGD's (``alpha`` None: ``2.5 * eps / steps`` at each
    eps; the random start of the batch that begins at image i is seeded with ``seed + i``, so a
    result does not depend on the order of the eps values). Returns ``{"run", "method", "split", "n", "steps", "alpha", "clean_accuracy",
    "results": [{"eps", "clean_accuracy", "attacked_accuracy", "alpha"?}, ...]}`` (plain numbers,
    JSON-ready); with ``examples=K`` also ``"examples"``: tensors ``x`` (K clean images), ``x_adv``
    (attacked at the largest eps), ``y``, ``pred`` and ``pred_adv`` and the ``eps`` used (not
    JSON: the caller takes it out). The model is left as it was (mode, flags, device, weights).
    """
    if method not in METHODS:
        raise GenlabError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    eps_list = [_check_eps(e) for e in (eps_list if isinstance(eps_list, (list, tuple)) else [eps_list])]
    if not eps_list:
        raise GenlabError("eps: expected at least one value")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GenlabError(f"n: expected a positive number of images, got {n!r}")
    if method == "pgd" and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise GenlabError(f"steps: expected a positive integer, got {steps!r}")
    if not isinstance(examples, int) or examples < 0:
        raise GenlabError(f"examples: expected a count >= 0, got {examples!r}")
    examples = min(examples, batch_size)  # they come from the first batch
    model = classifier_of(run)
    data = run.data(data_root)
    x_all, y_all = data.eval_inputs(split)
    if y_all is None:
        raise GenlabError(f"{data.name} {split}: no labels, so no accuracy")
    x_all, y_all = x_all[:n], y_all[:n]
    if len(x_all) == 0:
        raise GenlabError(f"{data.name} {split}: no images")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    home = next(model.parameters()).device
    model.to(dev)
    try:
        with frozen_model(model):
            clean_pred = _predict(model, x_all, batch_size, dev)
            rows, keep = [], None
            for eps in eps_list:
                preds, advs = [], []
                for i in range(0, len(x_all), batch_size):
                    xb, yb = x_all[i:i + batch_size].to(dev), y_all[i:i + batch_size].to(dev)
                    adv = attack(model, xb, yb, method, eps, steps=steps, alpha=alpha, seed=seed + i)
                    with torch.no_grad():
                        preds.append(model(adv).argmax(1).cpu())
                    if examples and i == 0:
                        advs.append(adv[:examples].cpu())
                pred = torch.cat(preds)
                row = {"eps": eps, "clean_accuracy": _acc(clean_pred, y_all), "attacked_accuracy": _acc(pred, y_all)}
                if method == "pgd":
                    row["alpha"] = 2.5 * eps / steps if alpha is None else float(alpha)
                rows.append(row)
                if examples and (keep is None or eps >= keep["eps"]):
                    keep = {"eps": eps, "x_adv": advs[0], "pred_adv": pred[:examples]}
    finally:
        model.to(home)
    out = {"run": str(run.path), "method": method, "split": split, "n": int(len(x_all)),
           "clean_accuracy": _acc(clean_pred, y_all), "results": rows}
    if method == "pgd":
        out.update(steps=steps, alpha=alpha, seed=seed)
    if examples:
        out["examples"] = {"x": x_all[:examples].cpu(), "y": y_all[:examples].cpu(), "pred": clean_pred[:examples],
                           **keep}
    return out


def _predict(model, x: Tensor, batch_size: int, dev) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def _acc(pred: Tensor, y: Tensor) -> float:
    return float((pred == y.cpu()).float().mean())


# ---------------------------------------------------------------- files

def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def curve_png(result: dict, title: str = "") -> bytes:
    """Accuracy against eps: the attacked accuracy (points joined in eps order) and the clean
    accuracy (dashed), y in [0, 1] (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted(result["results"], key=lambda r: r["eps"])
    fig = Figure(figsize=(5.6, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    eps = [r["eps"] for r in rows]
    ax.plot(eps, [r["attacked_accuracy"] for r in rows], "o-", color="C3", label=f"under {result['method'].upper()}")
    ax.axhline(result["clean_accuracy"], color="k", ls="--", lw=1, label="clean")
    ax.set_xlabel("eps (L-infinity, pixels in [0, 1])")
    ax.set_ylabel(f"accuracy ({result['split']}, first {result['n']})")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _fig_png(fig)


def examples_png(ex: dict, class_names: list[str] | None = None) -> bytes:
    """Three rows: the clean images (with the predicted class), the attacked ones at ``ex["eps"]``
    (with the new prediction; red where it is wrong) and the perturbation ``x_adv - x`` magnified
    to the full colour range (a diverging map from -eps to +eps, 0 white)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, adv, eps = ex["x"].float(), ex["x_adv"].float(), ex["eps"]
    k = x.shape[0]
    name = (lambda c: class_names[c] if class_names and c < len(class_names) else str(c))  # noqa: E731
    fig = Figure(figsize=(1.2 * k + 1.4, 4.1))
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(3, k, wspace=0.08, hspace=0.35, left=0.12, right=0.99, top=0.9, bottom=0.02)
    delta = (adv - x).mean(1)  # over channels: one map per image
    lim = max(eps, 1e-12)
    for j in range(k):
        y = int(ex["y"][j])
        for r, (img, pred) in enumerate(((x[j], int(ex["pred"][j])), (adv[j], int(ex["pred_adv"][j])))):
            a = fig.add_subplot(gs[r, j])
            arr = img.clamp(0, 1).numpy()
            a.imshow(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1,
                     interpolation="nearest")
            a.set_title(name(pred), fontsize=8, color="k" if pred == y else "C3")
            a.set_xticks([])
            a.set_yticks([])
            if j == 0:
                a.set_ylabel("clean" if r == 0 else f"eps {eps:g}", fontsize=8)
        a = fig.add_subplot(gs[2, j])
        a.imshow(delta[j].numpy(), cmap="seismic", vmin=-lim, vmax=lim, interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        if j == 0:
            a.set_ylabel("perturbation", fontsize=8)
    fig.suptitle("predicted class above each image (red: wrong); perturbation from -eps (blue) to +eps (red)",
                 fontsize=8)
    return _fig_png(fig)


def write_attack_files(out: str | Path, result: dict, class_names: list[str] | None = None,
                       title: str = "") -> list[Path]:
    """OUT/accuracy-vs-eps.png and, when ``result`` has examples, OUT/examples.png, written
    atomically; returns their paths."""
    from ..io import atomic_write_bytes

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out}: exists and is not a folder")
    files = [(out / "accuracy-vs-eps.png", curve_png(result, title))]
    if result.get("examples"):
        files.append((out / "examples.png", examples_png(result["examples"], class_names)))
    for path, data in files:
        atomic_write_bytes(path, data)
    return [p for p, _ in files]


__all__ = ["accuracy_under_attack", "attack", "fgsm", "frozen_model", "parse_eps", "pgd", "write_attack_files"]
