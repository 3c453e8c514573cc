"""Evaluation of a trained model on a split: reconstruction errors, and for VAEs the negative
ELBO, the KL and the importance-weighted bound on the negative log-likelihood."""
from __future__ import annotations

import torch


@torch.no_grad()
def evaluate(model, data, split: str = "test", *, batch_size: int = 500, iwae_k: int = 0,
             seed: int = 0, progress: bool = False) -> dict:
    """Average each per-example value of ``model.eval_batch`` over ``split``.

    Random quantities (the VAE's posterior sample, the IWAE samples) are drawn from a forked RNG
    seeded with ``seed``: the result is reproducible and training's RNG is left untouched.

    Keys (autoencoders): mse (per pixel), sse (per image, summed over pixels), bce (per image,
    summed over pixels; data in [0, 1]), psnr (dB, mean over images), ssim (images of 11x11 pixels or more). VAEs add nelbo (negative
    ELBO per image, nats; one posterior sample), kl, and with ``iwae_k`` > 0 nll_iwae (the
    k-sample importance-weighted bound on -log p(x), nats per image).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x_all, y_all = data.eval_inputs(split)
    uses_labels = getattr(model, "uses_labels", False)
    sums: dict[str, float] = {}
    n = 0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        batches = range(0, x_all.shape[0], batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"eval {split}", leave=False, unit="batch")
        for i in batches:
            x = x_all[i:i + batch_size].to(device)
            vals = model.eval_batch(x, y_all[i:i + batch_size].to(device)) if uses_labels else model.eval_batch(x)
            if iwae_k:
                if not hasattr(model, "iwae_log_likelihood"):
                    from .errors import GenlabError

                    raise GenlabError(f"--iwae-k: {model.name} has no likelihood bound (only VAEs do)")
                vals["nll_iwae"] = -model.iwae_log_likelihood(x, iwae_k)
            for k, v in vals.items():
                sums[k] = sums.get(k, 0.0) + float(v.double().sum())
            n += x.shape[0]
    model.train(was_training)
    out = {k: sums[k] / n for k in sorted(sums)}
    out["n"] = n
    if iwae_k:
        out["iwae_k"] = iwae_k
    return out
