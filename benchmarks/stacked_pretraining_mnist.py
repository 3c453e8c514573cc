"""Greedy layer-wise pretraining with few labels: MNIST with 100 labels per class.

The same 784-500-500-10 sigmoid network is trained three ways, each a single
``genlab train stacked-ae mnist`` run with ``data.labels_per_class=100`` (1000 labelled of the
60000 training images, the rest marked unlabelled):

* pretrained: each layer pretrained in turn as a denoising autoencoder (masking noise) on all
  60000 images, then the stack and a linear head fine-tuned on the 1000 labels;
* scratch: the same network trained on the 1000 labels only, for as many supervised epochs as
  the fine-tuning had (``pretrain=false``);
* scratch, same steps: the scratch network trained for as many steps as the whole pretrained
  run, so the comparison is not just "more steps".

Bengio et al. (2006) and Erhan et al. (2010) report that unsupervised pretraining helps most
when labels are scarce; this benchmark measures that gap with a budget of a few CPU minutes.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

NAME = "stacked-pretraining-mnist"
DESCRIPTION = "MNIST, 100 labels per class: test accuracy of a 784-500-500 sigmoid MLP with greedy layer-wise denoising-AE pretraining vs from scratch (--quick: 784-200-100, 10000 images)"
SETTINGS = ("hidden", "pretrain_epochs", "finetune_epochs", "noise_level", "seed")
BATCH = 128
LR = 1e-3
LABELS_PER_CLASS = 100


def _train(ctx, root: str, out: Path, sets: dict, epochs: int, seed: int) -> dict:
    import genlab

    t0 = time.perf_counter()
    run_ = genlab.train("stacked-ae", "mnist", data_root=root, out=out, epochs=epochs, batch_size=BATCH, lr=LR,
                        seed=seed, set=sets, progress=ctx.progress)
    ev = json.loads((run_.path / "eval.json").read_text())
    return {"accuracy": ev["accuracy"], "xent": ev["xent"], "train_seconds": ev["train_seconds"],
            "steps": ev["steps"], "seconds": round(time.perf_counter() - t0, 2)}


def run(ctx) -> dict:
    root = ctx.need_mnist()
    hidden = ctx.param("hidden", [500, 500], quick=[200, 100])
    pre_epochs = ctx.param("pretrain_epochs", 4, quick=1)
    ft_epochs = ctx.param("finetune_epochs", 15, quick=3)
    noise_level = ctx.param("noise_level", 0.25)
    seed = ctx.param("seed", 0)
    limit = 10000 if ctx.quick else 0
    layers = len(hidden)
    pre_total = layers * pre_epochs + ft_epochs
    base = {"hidden": hidden, "activation": "sigmoid", "data.labels_per_class": LABELS_PER_CLASS,
            "data.limit": limit, "train.threads": 1, "train.checkpoint_every": 0}
    variants = [
        ("pretrained", pre_total, {"pretrain": True, "noise": "mask", "noise_level": noise_level,
                                   "pretrain_share": layers * pre_epochs / pre_total}),
        ("scratch", ft_epochs, {"pretrain": False}),
        ("scratch, same steps", pre_total, {"pretrain": False}),
    ]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, epochs, extra in variants:
            ctx.log(f"{name}: {epochs} epochs ...")
            results[name] = _train(ctx, root, Path(tmp) / name.replace(" ", "-").replace(",", ""),
                                   {**base, **extra}, epochs, seed)
    pre_phase = {"pretrained": f"{pre_epochs} per layer", "scratch": "-", "scratch, same steps": "-"}
    ft_phase = {"pretrained": ft_epochs, "scratch": ft_epochs, "scratch, same steps": pre_total}
    rows = [{"network": name, "pretraining epochs": pre_phase[name], "supervised epochs": ft_phase[name],
             "steps": r["steps"], "test accuracy": round(r["accuracy"], 4), "test xent": round(r["xent"], 4),
             "train seconds": round(r["train_seconds"], 1)} for name, r in results.items()]
    n_train = limit or 60000
    arch = "-".join(str(s) for s in [784, *hidden, 10])
    return {
        "accuracy_pretrained": results["pretrained"]["accuracy"],
        "accuracy_scratch": results["scratch"]["accuracy"],
        "accuracy_scratch_same_steps": results["scratch, same steps"]["accuracy"],
        "gain": results["pretrained"]["accuracy"] - results["scratch"]["accuracy"],
        "hidden": hidden, "pretrain_epochs_per_layer": pre_epochs, "finetune_epochs": ft_epochs,
        "runs": results, "table": rows,
        "protocol": (
            f"MNIST, first {n_train} training images, {LABELS_PER_CLASS} labels per class kept (data.labels_per_class, "
            f"seed 0; the rest unlabelled), 10000 test images; {arch} sigmoid MLP (stacked-ae), Adam lr {LR}, batch "
            f"{BATCH}, seed {seed}, 1 torch thread, one `genlab train` run per row. pretrained: greedy layer-wise "
            f"pretraining, {pre_epochs} epoch(s) per layer on all {n_train} images, each layer a denoising autoencoder "
            f"(masking noise {noise_level}, cross-entropy reconstruction) on the codes of the layer below, then "
            f"{ft_epochs} epoch(s) of fine-tuning of the encoders + a linear head with cross-entropy on the labelled "
            f"items of each batch (about {BATCH * LABELS_PER_CLASS * 10 / n_train:.1f} per batch of {BATCH}); scratch: "
            f"the same network and supervised epochs, random initialisation; scratch, same steps: trained for as many "
            f"steps as the whole pretrained run. An epoch is a pass over all {n_train} images. Test accuracy on "
            f"the 10000 test images after the last step (no early stopping, no validation split)."
        ),
    }
