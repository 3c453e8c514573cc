"""Inpainting the centre of Fashion-MNIST: a context encoder against the mean image.

The context encoder (Pathak et al., 2016; genlab's ``context-encoder``, squared-error objective
only, no adversarial term) is trained to fill the centre 14x14 square of 28x28 images from the
rest. The baseline fills the same square with the training-set mean image, the best a
predictor can do that ignores the context; the gap between the two is what the context buys.
Both are scored by the PSNR over the hole pixels of each test image, averaged over the test set.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

NAME = "context-encoder-fashion"
DESCRIPTION = ("context encoder on Fashion-MNIST, centre 14x14 hole: test PSNR of the hole vs filling it "
               "with the training mean image")
SETTINGS = ("epochs", "limit", "channels", "latent", "seed")


def mean_image(x_uint8: torch.Tensor, scale: float, chunk: int = 10000) -> torch.Tensor:
    """The per-pixel mean of the stored training images, in float64, a chunk at a time."""
    total = torch.zeros(x_uint8.shape[1:], dtype=torch.float64)
    for i in range(0, x_uint8.shape[0], chunk):
        total += x_uint8[i:i + chunk].cpu().double().sum(0)
    return (total * scale / x_uint8.shape[0]).float()


def hole_scores(fill: torch.Tensor, x: torch.Tensor, hole: torch.Tensor, data_range: float) -> tuple[float, float]:
    """Mean over images of the hole MSE and of the hole PSNR when the hole holds ``fill``."""
    err = ((fill - x) ** 2 * hole).flatten(1).sum(1) / (hole.flatten(1).sum(1) * x.shape[1])
    psnr = 10.0 * torch.log10(data_range**2 / err.clamp_min(1e-10))
    return float(err.double().mean()), float(psnr.double().mean())


def run(ctx) -> dict:
    import genlab

    root = ctx.need_mnist("FashionMNIST")
    epochs = ctx.param("epochs", 6, quick=1)
    limit = ctx.param("limit", 0, quick=6000)
    channels = ctx.param("channels", [16, 32])
    latent = ctx.param("latent", 256)
    seed = ctx.param("seed", 0)
    sets = {"channels": channels, "latent": latent, "mask": "centre", "mask_size": 0.5, "fill": "mean",
            "overlap_weight": 0.001, "train.threads": 1}
    if limit:
        sets["data.limit"] = limit
    with tempfile.TemporaryDirectory() as tmp:
        ctx.log(f"training context-encoder on fashion-mnist for {epochs} epoch(s) ...")
        run_ = genlab.train("context-encoder", "fashion-mnist", data_root=root, out=Path(tmp) / "run", epochs=epochs,
                            batch_size=128, lr=1e-3, seed=seed, set=sets, progress=ctx.progress)
        ev = json.loads((run_.path / "eval.json").read_text())
        model, ds = run_.model, run_.data()
    x, _ = ds.eval_inputs("test")
    x = x.cpu()
    hole = model.mask(x, train=False)
    data_range = ds.value_range[1] - ds.value_range[0]
    mean_mse, mean_psnr = hole_scores(mean_image(ds.train.x, ds.scale), x, hole, data_range)
    n_train = len(ds.train)
    with torch.no_grad():  # test images: the masked input, the inpainted composite, the original
        shown = x[:12]
        masked = torch.where(model.mask(shown, train=False), torch.full_like(shown, 0.5), shown)
        fig = ctx.figure("context-encoder-fashion.png", torch.cat([masked, model.reconstruct(shown), shown]), nrow=12)
    rows = [
        {"hole filled by": "context encoder", "PSNR hole (dB)": round(ev["hole_psnr"], 2),
         "MSE hole": round(ev["hole_mse"], 5), "epochs": epochs, "train seconds": round(ev["train_seconds"], 1)},
        {"hole filled by": "training mean image", "PSNR hole (dB)": round(mean_psnr, 2),
         "MSE hole": round(mean_mse, 5), "epochs": "-", "train seconds": "-"},
    ]
    return {
        "psnr_hole": ev["hole_psnr"], "mse_hole": ev["hole_mse"], "mean_fill_psnr_hole": mean_psnr,
        "mean_fill_mse_hole": mean_mse, "psnr_gain": ev["hole_psnr"] - mean_psnr, "ssim_composite": ev.get("ssim"),
        "epochs": epochs, "train_seconds": ev["train_seconds"], "n_train": n_train, "n_test": ev["n"],
        "table": rows, "figure": fig,
        "protocol": (f"Fashion-MNIST, {n_train} train / {ev['n']} test images, pixels in [0,1]; context-encoder "
                     f"channels={channels} latent={latent}, centre 14x14 hole (mask_size 0.5) filled with the running "
                     "training mean at the input, loss = hole SSE + 0.001 x context SSE, Adam lr 1e-3, batch 128, "
                     f"{epochs} epoch(s), seed {seed}, 1 CPU thread. Scores: per test image, MSE and PSNR "
                     "(10 log10(1/MSE)) over the 196 hole pixels, averaged over images; the baseline puts the "
                     "training-set mean image in the hole")
    }
