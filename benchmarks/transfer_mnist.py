"""The Keras `mnist_transfer_cnn` example, and the arms it lacks.

Phase 1: the example's small CNN (conv32-conv32-maxpool-dropout-dense128-dropout, `small-cnn`)
trained on MNIST digits 0-4 (Keras reports 99.8% test accuracy after 5 epochs). Phase 2, digits
5-9, from that network:

- keras: its convolutional layers frozen, the dense layers retrained (`--strategy freeze:1`;
  Keras reports 99.2% with every training image of 5-9 and 5 epochs);
- finetune: every layer retrained (`--strategy finetune`);
- scratch: the same network from random weights (`--weights none --strategy finetune`);

each with 10, 100 and 1000 labelled images per class of 5-9, and (keras arm) all of them.
Optimiser as the example: Adadelta (lr 1.0, rho 0.95), batch 128, 5 epochs, but at least
`min_steps` steps so that the 50-image arms train too.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

NAME = "transfer-mnist"
DESCRIPTION = "Keras mnist_transfer_cnn: small CNN on digits 0-4, then 5-9 frozen/fine-tuned/from scratch at 10/100/1000 labels per class"
SETTINGS = ("epochs", "min_steps", "sizes", "threads", "seed")


def run(ctx) -> dict:
    import genlab

    root = ctx.need_mnist("MNIST")
    epochs = ctx.param("epochs", 5, quick=1)
    min_steps = ctx.param("min_steps", 300, quick=5)
    sizes = ctx.param("sizes", [10, 100, 1000], quick=[10])
    threads = ctx.param("threads", 1)
    seed = ctx.param("seed", 0)
    common = {"train.optimizer": "adadelta", "train.threads": threads, "train.checkpoint_every": 0,
              "train.log_every": 100, "model.backbone": "small-cnn"}
    if ctx.quick:
        common["data.limit"] = 3000

    def train(out, classes, strategy, weights, per_class=0):
        sets = {**common, "data.classes": classes, "model.strategy": strategy, "model.weights": weights}
        n_imgs = None
        if per_class:
            sets["data.labels_per_class"] = per_class
            n_imgs = per_class * len(classes)
        # 5 epochs as the example, but at least min_steps steps (50 images are one step an epoch)
        per_epoch = -(-(n_imgs or 30596) // 128)
        steps = max(epochs * per_epoch, min_steps) if per_class else None
        r = genlab.train("classifier", "mnist", data_root=root, out=out, batch_size=128, lr=1.0, seed=seed,
                         epochs=None if steps else epochs, steps=steps, set=sets, progress=ctx.progress)
        ev = json.loads((r.path / "eval.json").read_text())
        return r, ev

    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ctx.log("phase 1: digits 0-4")
        src, ev = train(tmp / "src", [0, 1, 2, 3, 4], "finetune", "none")
        results["phase1"] = {"accuracy": ev["accuracy"], "train_seconds": ev["train_seconds"], "n_test": ev["n"]}
        rows.append({"phase": "1: digits 0-4, all 30596 images", "arm": "train all layers", "labels/class": "all",
                     "test accuracy": f"{100 * ev['accuracy']:.2f}%", "Keras": "99.8%", "seconds": round(ev["train_seconds"], 1)})
        arms = {"keras": ("freeze:1", str(src.path)), "finetune": ("finetune", str(src.path)), "scratch": ("finetune", "none")}
        high = [5, 6, 7, 8, 9]
        for per_class in [*sizes, 0]:
            for arm, (strategy, weights) in arms.items():
                if per_class == 0 and arm != "keras":
                    continue
                ctx.log(f"phase 2: {arm}, {per_class or 'all'} labels per class")
                _, ev = train(tmp / f"{arm}-{per_class}", high, strategy, weights, per_class)
                results[f"{arm}-{per_class or 'all'}"] = {"accuracy": ev["accuracy"], "train_seconds": ev["train_seconds"],
                                                          "steps": ev["steps"], "per_class": per_class}
                rows.append({"phase": "2: digits 5-9", "arm": arm, "labels/class": per_class or "all",
                             "test accuracy": f"{100 * ev['accuracy']:.2f}%",
                             "Keras": "99.2%" if (arm == "keras" and not per_class) else "",
                             "seconds": round(ev["train_seconds"], 1)})
    fig_path = None
    if not ctx.quick:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.8))
        for arm, style in (("keras", "o-"), ("finetune", "s-"), ("scratch", "^--")):
            xs = [s for s in sizes if f"{arm}-{s}" in results]
            ax.plot(xs, [100 * results[f"{arm}-{s}"]["accuracy"] for s in xs], style,
                    label={"keras": "conv frozen, dense retrained (Keras)", "finetune": "fine-tune all",
                           "scratch": "from scratch"}[arm])
        ax.set_xscale("log")
        ax.set_xlabel("labelled images per class (digits 5-9)")
        ax.set_ylabel("test accuracy, digits 5-9 (%)")
        ax.set_title("transfer from digits 0-4 (small CNN, Adadelta)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig_path = ctx.plot("transfer-mnist.png", fig)
    return {
        "results": results, "table": rows, "figure": fig_path,
        "protocol": (f"MNIST, {'first 3000' if ctx.quick else 'all'} training images of the digits in each phase, "
                     "the full test images of the same digits; genlab `classifier` with backbone small-cnn (the Keras "
                     "example's network: 2 conv 3x3 x32, max-pool, dropout 0.25, dense 128, dropout 0.5), inputs in "
                     f"[0, 1]; Adadelta lr 1.0 rho 0.95 eps 1e-7, batch 128, {epochs} epochs (phase 2 with N labels per "
                     f"class: max({epochs} epochs, {min_steps} steps)), seed {seed}, {threads} torch thread(s). Phase 2's "
                     "head has 10 outputs (labels keep their values 5-9) where Keras' has 5. Labelled subsets: the first "
                     "N of each class by a fixed permutation (seed 0)."),
    }
