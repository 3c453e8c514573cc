"""An ImageNet-pretrained backbone on Fashion-MNIST with 10, 100 and 1000 labelled images per
class: linear probe, freeze most, fine-tune all, and the same network from scratch. Where does
transfer win, by how much, and does `auto` (the lectures' rule) pick the best arm?

The backbone is EfficientNet-Lite0 from `genlab[offline]` (ImageNet weights that need no
network). Its native input is 224 px; the benchmark runs it at `image_size` (112 px by default)
to fit this CPU, which keeps the pretrained filters' scale within a factor of two.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

NAME = "transfer-fashion"
DESCRIPTION = "ImageNet EfficientNet-Lite0 on Fashion-MNIST, 10/100/1000 labels per class: linear probe, freeze most, fine-tune, scratch, auto"
SETTINGS = ("backbone", "image_size", "sizes", "epochs", "min_steps", "batch", "lr", "lr_scratch", "test_images",
            "threads", "seed")


def run(ctx) -> dict:
    import torch

    import genlab
    from genlab.transfer.backbones import build_backbone
    from genlab.transfer.classifier import auto_strategy, classification_report

    root = ctx.need_mnist("FashionMNIST")
    backbone = ctx.param("backbone", "efficientnet_lite0")
    size = ctx.param("image_size", 112, quick=32)
    sizes = ctx.param("sizes", [10, 100, 1000], quick=[10])
    epochs = ctx.param("epochs", 1)
    min_steps = ctx.param("min_steps", 150, quick=3)
    batch = ctx.param("batch", 32, quick=8)
    lr = ctx.param("lr", 3e-4)
    lr_scratch = ctx.param("lr_scratch", 1e-3)
    test_images = ctx.param("test_images", 2000, quick=100)
    threads = ctx.param("threads", 1)
    seed = ctx.param("seed", 0)
    stages = len(build_backbone(backbone, 10, "none").stages())
    arms = {"linear probe": ("linear-probe", "imagenet"), "freeze most": (f"freeze:{stages - 1}", "imagenet"),
            "fine-tune all": ("finetune", "imagenet"), "from scratch": ("finetune", "none")}

    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for per_class in sizes:
            n = 10 * per_class
            steps = max(epochs * -(-n // batch), min_steps)
            auto, why = auto_strategy(per_class, stages)
            todo = dict(arms)
            if auto not in {s for s, w in arms.values()}:
                todo[f"auto: {auto}"] = (auto, "imagenet")
            for arm, (strategy, weights) in todo.items():
                ctx.log(f"{per_class} per class: {arm}")
                sets = {"backbone": backbone, "image_size": size, "strategy": strategy, "weights": weights,
                        "probe_head": "logreg", "data.labels_per_class": per_class, "train.threads": threads,
                        "train.checkpoint_every": 0, "train.log_every": 25}
                t0 = time.perf_counter()
                r = genlab.train("classifier", "fashion-mnist", data_root=root, out=Path(tmp) / f"{arm}-{per_class}",
                                 steps=None if strategy == "linear-probe" else steps, batch_size=batch,
                                 lr=lr_scratch if weights == "none" else lr, seed=seed, set=sets,
                                 progress=ctx.progress, evaluate_at_end=False)
                train_s = time.perf_counter() - t0
                data = r.data(root)
                data.test = data.test.subset(torch.arange(min(test_images, len(data.test))))
                rep = classification_report(r.model, data, "test")
                epoch_s = [rec["epoch_seconds"] for rec in r.metrics() if rec.get("split") == "epoch"]
                results[f"{arm}|{per_class}"] = {"accuracy": rep["accuracy"], "train_seconds": train_s,
                                                 "strategy": strategy, "weights": weights, "per_class": per_class,
                                                 "steps": None if strategy == "linear-probe" else steps,
                                                 "epoch_seconds": epoch_s}
                rows.append({"labels/class": per_class, "arm": arm, "strategy": strategy,
                             "test accuracy": f"{100 * rep['accuracy']:.2f}%", "train s": round(train_s, 1)})
            best_arm = max((a for a in todo), key=lambda a: results[f"{a}|{per_class}"]["accuracy"])
            auto_arm = next(a for a, (s, w) in todo.items() if s == auto and w == "imagenet")
            results[f"auto|{per_class}"] = {"chose": auto, "reason": why, "arm": auto_arm, "best_arm": best_arm,
                                            "picked_best": auto_arm == best_arm,
                                            "gap_to_best": results[f"{best_arm}|{per_class}"]["accuracy"]
                                            - results[f"{auto_arm}|{per_class}"]["accuracy"]}
            rows.append({"labels/class": per_class, "arm": f"auto -> {auto}",
                         "strategy": "best" if auto_arm == best_arm else f"best was {best_arm}",
                         "test accuracy": f"{100 * results[f'{auto_arm}|{per_class}']['accuracy']:.2f}%",
                         "train s": ""})
    fig_path = None
    if not ctx.quick:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.2, 3.9))
        for arm, style in zip(arms, ("o-", "s-", "D-", "^--")):
            ax.plot(sizes, [100 * results[f"{arm}|{s}"]["accuracy"] for s in sizes], style, label=arm)
        for s in sizes:
            a = results[f"auto|{s}"]
            ax.scatter([s], [100 * results[f"{a['arm']}|{s}"]["accuracy"]], s=160, facecolors="none",
                       edgecolors="k", zorder=5, label="auto's choice" if s == sizes[0] else None)
        ax.set_xscale("log")
        ax.set_xlabel("labelled training images per class")
        ax.set_ylabel(f"test accuracy (%, first {test_images} test images)")
        ax.set_title(f"Fashion-MNIST, {backbone} (ImageNet) at {size} px")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig_path = ctx.plot("transfer-fashion.png", fig)
    return {
        "results": results, "table": rows, "figure": fig_path, "backbone": backbone, "image_size": size,
        "protocol": (f"Fashion-MNIST: N labelled training images per class (the first N of each class by a fixed "
                     f"permutation, seed 0), the first {test_images} test images; genlab `classifier` with backbone "
                     f"{backbone} ({stages} stages), grey images repeated to RGB and resized to {size} px. Linear probe: "
                     "features of the frozen network once, scikit-learn logistic regression (C 1). Freeze most: "
                     f"freeze:{stages - 1} (the last stage and the head trained). Fine-tune all, from scratch (random "
                     f"init): every layer. Adam lr {lr} ({lr_scratch} from scratch), batch {batch}, max({epochs} epochs, "
                     f"{min_steps} steps), seed {seed}, {threads} torch thread(s) on this CPU; no augmentation. auto: "
                     "the lectures' rule on labels per class (< 50: linear probe; < 500: freeze all stages but the last; "
                     "else freeze the stem), trained as its own arm when it chose none of the four."),
    }
