"""Denoising autoencoder with 50% masking noise on MNIST: PSNR of the reconstruction of a
corrupted test image against the clean one, next to the PSNR of the corrupted input."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

NAME = "denoising-mnist"
DESCRIPTION = "MNIST, 50% masking noise: PSNR/SSIM of the denoised test images vs of the corrupted inputs"
SETTINGS = ("epochs", "level")


def run(ctx) -> dict:
    import genlab

    root = ctx.need_mnist()
    epochs = ctx.param("epochs", 10, quick=1)
    level = ctx.param("level", 0.5)
    limit = {"data.limit": 6000} if ctx.quick else {}
    import torch

    rows, out, shown = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for noise in ("mask", "salt-pepper", "gaussian"):
            lev = level if noise != "gaussian" else 0.5
            run_ = genlab.train("denoising-ae", "mnist", data_root=root, out=Path(tmp) / noise, epochs=epochs,
                                batch_size=128, lr=1e-3, seed=0, progress=ctx.progress,
                                set={"hidden": [1000, 500], "latent": 128, "noise": noise, "level": lev, "loss": "bce",
                                     "train.schedule": "cosine", "train.threads": 1, **limit})
            ev = json.loads((run_.path / "eval.json").read_text())
            rows.append({"noise": f"{noise} {lev}", "PSNR corrupted dB": round(ev["psnr_noisy"], 2),
                         "PSNR denoised dB": round(ev["psnr"], 2), "SSIM corrupted": round(ev["ssim_noisy"], 3),
                         "SSIM denoised": round(ev["ssim"], 3), "train s": round(ev["train_seconds"], 1)})
            out[noise] = {k: ev[k] for k in ("psnr", "psnr_noisy", "ssim", "ssim_noisy", "mse", "mse_noisy", "train_seconds")}
            x = run_._data.eval_inputs("test")[0][:10]
            with torch.no_grad():
                torch.manual_seed(0)
                m = run_.model
                xn = m.corrupt(x)
                shown.append(torch.cat([x, xn, m.denoise(xn)]))
    fig = ctx.figure("denoising-mnist.png", torch.cat(shown), nrow=10)
    return {
        **out, "epochs": epochs, "table": rows, "figure": fig,
        "protocol": (f"MNIST {'first 6000 train images, ' if ctx.quick else '60000 train / '}10000 test, pixels in [0, 1]. "
                     "denoising-ae 784-1000-500-128-500-1000-784 ReLU, sigmoid output, cross-entropy against the clean "
                     f"image, fresh noise every batch; Adam 1e-3 cosine, batch 128, {epochs} epochs, seed 0. Test: each "
                     "test image corrupted once (evaluation seed 0); PSNR (dB, per image, range 1) and SSIM (11x11 "
                     "Gaussian window) of the denoised image and of the corrupted input against the clean image, mean "
                     "over the 10000 test images. mask: a share of pixels set to 0; salt-pepper: a share set to 0 or "
                     "1; gaussian: additive N(0, 0.5^2), clipped to [0, 1]"),
    }
