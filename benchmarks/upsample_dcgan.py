"""Transposed convolution against sub-pixel convolution (PixelShuffle) as the 2x up-sampling of
the same DCGAN on MNIST: FID (shipped `mnist-cnn`) and the checkerboard measure of the samples
(share of spectral energy at the stride-2 frequencies, `genlab.nn.upsample.checkerboard_energy`)
next to that of the real test images. Both runs share seed, data order and everything else.

The lectures show that the two are one operator (polyphase decomposition of the kernel): the
benchmark also converts every stride-2 `ConvTranspose2d` of the trained transposed generator
into a convolution followed by `PixelShuffle(2)` (`transposed_to_pixelshuffle`) and reports the
largest difference between the two generators' outputs on 256 latent codes."""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

NAME = "upsample-dcgan"
DESCRIPTION = "DCGAN on MNIST with transposed vs pixelshuffle up-sampling: FID (mnist-cnn), checkerboard energy; transposed->pixelshuffle conversion error"
SETTINGS = ("steps", "batch", "threads", "seed", "samples")


def convert_generator(gen):
    """A copy of a genlab ConvGenerator with every stride-2 ConvTranspose2d of its up-sampling
    blocks replaced by the equivalent Conv2d + PixelShuffle(2); returns (copy, layers converted)."""
    from torch import nn

    from genlab.nn.upsample import Upsample2x, transposed_to_pixelshuffle

    g = copy.deepcopy(gen)
    n = 0
    for m in g.modules():
        if isinstance(m, Upsample2x):
            for i, layer in enumerate(m):
                if isinstance(layer, nn.ConvTranspose2d) and tuple(layer.stride) == (2, 2):
                    m[i] = transposed_to_pixelshuffle(layer)
                    n += 1
    return g, n


def run(ctx) -> dict:
    import numpy as np
    import torch

    import genlab
    from genlab.metrics import core
    from genlab.metrics.api import featurise
    from genlab.metrics.extractors import get_extractor
    from genlab.nn.upsample import checkerboard_energy

    root = ctx.need_mnist()
    steps = ctx.param("steps", 1500, quick=10)
    batch = ctx.param("batch", 64)
    threads = ctx.param("threads", 1)
    seed = ctx.param("seed", 0)
    n = ctx.param("samples", 10000, quick=500)
    ext = get_extractor("mnist-cnn")
    out, rows, grids = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("transposed", "pixelshuffle"):
            sets = {"upsample": kind, "train.threads": threads, "train.log_every": 100, "train.checkpoint_every": 0}
            if ctx.quick:
                sets["data.limit"] = 2000
            r = genlab.train("dcgan", "mnist", data_root=root, out=Path(tmp) / kind, steps=steps, batch_size=batch,
                             seed=seed, set=sets, progress=ctx.progress)
            train_s = json.loads((r.path / "eval.json").read_text())["train_seconds"]
            model, data = r.model, r.data(root)
            xr = data.eval_inputs("test")[0].cpu()
            fr, _ = featurise(xr, ext, logits=False)
            xs = r.sample(n, seed=1).cpu()
            fs, _ = featurise(xs, ext, logits=False, use_cache=False)
            # the 28 px images are cropped to 28x28 (even) already; the measure needs even sides
            cb, cb_real = checkerboard_energy(xs).numpy(), checkerboard_energy(xr).numpy()
            out[kind] = {"fid": core.frechet_distance(fr, fs), "checkerboard_mean": float(cb.mean()),
                         "checkerboard_median": float(np.median(cb)), "train_seconds": train_s,
                         "params": sum(p.numel() for p in model.generator.parameters())}
            out["real_checkerboard_mean"] = float(cb_real.mean())
            out["real_checkerboard_median"] = float(np.median(cb_real))
            grids.append(xs[:32])
            if kind == "transposed":
                gen = model.generator.eval()
                conv, n_conv = convert_generator(gen)
                with torch.no_grad():
                    z = torch.randn(256, model.latent, generator=torch.Generator().manual_seed(3))
                    a, b = gen(z), conv(z)
                    a64, b64 = copy.deepcopy(gen).double()(z.double()), copy.deepcopy(conv).double()(z.double())
                    ia, ib = model._out(a), model._out(b)  # the images: G's raw outputs through the sigmoid
                out["conversion"] = {"layers_converted": n_conv, "max_abs_diff_float32": float((a - b).abs().max()),
                                     "max_abs_diff_float64": float((a64 - b64).abs().max()),
                                     "max_rel_diff_float32": float((a - b).abs().max() / a.abs().max()),
                                     "max_abs_diff_images_float32": float((ia - ib).abs().max()),
                                     "output_scale": float(a.abs().max())}
            rows.append({"up-sampling": kind, "FID (mnist-cnn)": round(out[kind]["fid"], 2),
                         "checkerboard energy, mean": f"{out[kind]['checkerboard_mean']:.2e}",
                         "median": f"{out[kind]['checkerboard_median']:.2e}",
                         "G params": out[kind]["params"], "train s": round(train_s)})
        fig = ctx.figure("upsample-dcgan-samples.png", torch.cat(grids), nrow=16)
    rows.append({"up-sampling": "MNIST test images", "FID (mnist-cnn)": "-",
                 "checkerboard energy, mean": f"{out['real_checkerboard_mean']:.2e}",
                 "median": f"{out['real_checkerboard_median']:.2e}", "G params": "-", "train s": "-"})
    c = out["conversion"]
    notes = [f"conversion of the trained transposed generator ({c['layers_converted']} ConvTranspose2d -> Conv2d + "
             f"PixelShuffle), 256 codes: max |difference| of the images {c['max_abs_diff_images_float32']:.2e} (float32); "
             f"of the raw outputs before the sigmoid {c['max_abs_diff_float32']:.2e} in float32 (outputs up to "
             f"{c['output_scale']:.1f}, so {c['max_rel_diff_float32']:.1e} relative: float32 rounding) and "
             f"{c['max_abs_diff_float64']:.2e} in float64"]
    return {**out, "steps": steps, "figure": fig, "table": rows, "notes": notes,
            "protocol": (f"MNIST {'first 2000' if ctx.quick else '60000'} training images in [0, 1]; genlab `dcgan` at "
                         "28 px with its defaults, only `upsample` changed: transposed = 4x4 stride-2 ConvTranspose2d "
                         "(DCGAN), pixelshuffle = 3x3 Conv2d to 4x channels + PixelShuffle(2); batch "
                         f"{batch}, {steps} steps, seed {seed}, {threads} torch thread(s). FID: mnist-cnn features of "
                         f"{n} samples (seed 1) against the 10000 test images. Checkerboard energy: share of each "
                         "image's spectral power (mean removed) at the frequencies (pi,0), (0,pi), (pi,pi), averaged over "
                         "the samples; the real test images give the level of natural digits. Top two rows of the figure: "
                         "transposed; bottom two: pixelshuffle"),
            }
