"""CPU inference speed of genlab's ONNX exports: milliseconds per batch under onnxruntime against
the same part in PyTorch, timed in the same process with the same number of threads, and the
export's check (max abs difference between the two at batch 1 and 7).

Parts: the conv-ae encoder and decoder on 28x28 images (its default widths), the DCGAN generator
at 64 px (the pytorch/examples widths) with transposed-convolution and with PixelShuffle
up-sampling, the classifier with the small-cnn backbone (28 px) and the style network at 256 px
(Johnson et al.'s width 32 and 5 residual blocks). Models are built untrained from their
configs: the arithmetic, and so the speed, does not depend on the weights' values."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

NAME = "onnx-speed"
DESCRIPTION = ("ms per batch on the CPU of exported parts (conv-ae, dcgan 64 px transposed/pixelshuffle, "
               "small-cnn classifier, style-net 256 px): onnxruntime vs PyTorch, one thread")
SETTINGS = ("threads", "repeats", "warmup", "batch", "style_batch", "style_size")


def _cases(style_size: int, quick: bool):
    """(label, model name, shape, config, part); the quick version keeps four of them, its style
    network has one residual block."""
    if quick:
        return [("conv-ae encoder 28 px", "conv-ae", (1, 28, 28), {}, "encoder"),
                ("dcgan G 64 px pixelshuffle", "dcgan", (3, 64, 64), {"upsample": "pixelshuffle"}, "generator"),
                ("classifier small-cnn 28 px", "classifier", (1, 28, 28),
                 {"backbone": "small-cnn", "weights": "none", "num_classes": 10, "strategy": "finetune"}, "classifier"),
                (f"style-net {style_size} px, 1 block", "style-net", (3, style_size, style_size),
                 {"residual_blocks": 1}, "style-net")]
    return [
        ("conv-ae encoder 28 px", "conv-ae", (1, 28, 28), {}, "encoder"),
        ("conv-ae decoder 28 px", "conv-ae", (1, 28, 28), {}, "decoder"),
        ("dcgan G 64 px transposed", "dcgan", (3, 64, 64), {"upsample": "transposed"}, "generator"),
        ("dcgan G 64 px pixelshuffle", "dcgan", (3, 64, 64), {"upsample": "pixelshuffle"}, "generator"),
        ("classifier small-cnn 28 px", "classifier", (1, 28, 28),
         {"backbone": "small-cnn", "weights": "none", "num_classes": 10, "strategy": "finetune"}, "classifier"),
        (f"style-net {style_size} px", "style-net", (3, style_size, style_size), {}, "style-net"),
    ]


def run(ctx) -> dict:
    import torch

    from genlab.export import benchmark_onnx, build_part, export_onnx
    from genlab.models import create_model

    threads = ctx.param("threads", 1)
    repeats = ctx.param("repeats", 20, quick=2)
    warmup = ctx.param("warmup", 3, quick=1)
    batch = ctx.param("batch", 64, quick=16)
    style_batch = ctx.param("style_batch", 4, quick=2)
    style_size = ctx.param("style_size", 256, quick=64)
    torch.set_num_threads(threads)
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, shape, cfg, part in _cases(style_size, ctx.quick):
            torch.manual_seed(0)
            vr = (-1.0, 1.0) if name == "dcgan" else (0.0, 1.0)  # DCGAN's example: tanh output
            model = create_model(name, shape=shape, value_range=vr, **cfg).eval()
            t0 = time.perf_counter()
            res = export_onnx(model, part=part, out=Path(tmp) / f"{len(rows)}.onnx")
            export_s = time.perf_counter() - t0
            p = build_part(model, part)
            net = model.generator if name == "dcgan" else model  # a GAN exports G only
            params = sum(q.numel() for q in net.parameters())
            for b in ((1, style_batch) if name == "style-net" else (1, batch)):
                t = benchmark_onnx(res["path"], p.module, p.example(b, seed=1), repeats=repeats, warmup=warmup,
                                   threads=threads)
                rows.append({"part": label, "batch": b, "pytorch_ms": round(t["torch_ms"], 3),
                             "onnxruntime_ms": round(t["onnx_ms"], 3), "ort/pytorch": round(t["ratio"], 3),
                             "max_abs_diff": res["max_abs_diff"]})
                results.append({**rows[-1], "model": name, "onnx_part": part, "shape": list(shape),
                                "params": params, "opset": res["opset"], "onnx_bytes": res["bytes"],
                                "export_seconds": round(export_s, 2)})
                ctx.log(f"{label}, batch {b}: PyTorch {t['torch_ms']:.2f} ms, onnxruntime {t['onnx_ms']:.2f} ms "
                        f"(x{t['ratio']:.2f}), max abs diff {res['max_abs_diff']:.2g}")
    import onnxruntime

    return {
        "results": results, "table": rows, "threads": threads,
        "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
        "protocol": (f"untrained models built from their configs (speed does not depend on the weights' values), "
                     f"each part exported by `genlab.export.export_onnx` (torch.export-based exporter, dynamic "
                     f"batch) and checked by onnxruntime against PyTorch at batch 1 and 7 (max_abs_diff); then "
                     f"milliseconds per batch on the CPU with {threads} thread(s) for both (torch.set_num_threads, "
                     f"onnxruntime intra_op_num_threads, sequential execution, default graph optimisations), "
                     f"PyTorch in inference mode on its eval-mode module; {warmup} warm-up calls each, then "
                     f"{repeats} timed calls alternating PyTorch and onnxruntime; medians. Inputs: seeded random "
                     f"images in the value range, z ~ N(0, I). Batch 1 and {batch} (style net: 1 and "
                     f"{style_batch} at {style_size}x{style_size}). conv-ae: channels [32, 64], latent 16; "
                     f"dcgan: latent 100, g_width 64, 3 channels, tanh output; classifier: small-cnn, 10 "
                     f"classes; style-net: width 32, {1 if ctx.quick else 5} residual block(s), resize up-sampling. "
                     f"ort/pytorch < 1: onnxruntime is faster."
                     + (" Quick version: four of the six parts, fewer repeats, smaller batches and style images."
                        if ctx.quick else "")),
    }
