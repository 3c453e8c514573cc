"""Wall time of one training step for each transfer-learning arm, on one batch, against the
forward pass of the same network measured in the same run.

A frozen layer needs no backward pass: its parameters do not require gradients, so autograd
stops at the first trained stage. The linear probe (every stage frozen) should then cost about
one forward pass per step (ratio ~1), while fine-tuning every layer costs a forward and a full
backward pass (ratio ~3). The probe is also timed as genlab trains it: features computed once,
then the head alone, so its epochs after the first cost almost nothing. Epoch times are per
`epoch_images` training images.
"""
from __future__ import annotations

import time

NAME = "transfer-speed"
DESCRIPTION = "seconds per training step and per epoch of each transfer arm (linear probe, freeze most, freeze stem, fine-tune) vs the forward pass"
SETTINGS = ("backbone", "image_size", "batch", "steps", "threads", "epoch_images")


def run(ctx) -> dict:
    import torch

    from genlab.models import create_model
    from genlab.train import TrainConfig
    from genlab.transfer.backbones import build_backbone

    backbone = ctx.param("backbone", "efficientnet_lite0")
    size = ctx.param("image_size", 112, quick=64)
    batch = ctx.param("batch", 32, quick=8)
    steps = ctx.param("steps", 10, quick=2)
    threads = ctx.param("threads", 1)
    epoch_images = ctx.param("epoch_images", 10000)
    torch.set_num_threads(threads)
    weights = "none"  # timing does not depend on the values of the weights
    stages = len(build_backbone(backbone, 10, "none").stages())
    arms = {"linear probe (all stages frozen)": f"freeze:{stages}", f"freeze most (freeze:{stages - 1})": f"freeze:{stages - 1}",
            "freeze the stem (freeze:1)": "freeze:1", "fine-tune all": "finetune"}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)

    def timed(fn) -> float:
        fn()  # warm-up (allocations, oneDNN primitives)
        t = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
        t.sort()
        return t[len(t) // 2]  # the median step

    torch.manual_seed(0)
    model = create_model("classifier", shape=(1, 28, 28), backbone=backbone, weights=weights, num_classes=10,
                         image_size=size, strategy="finetune")
    model.eval()
    with torch.no_grad():
        fwd = timed(lambda: model(x))
    rows = [{"arm": "forward pass only (no_grad, reference)", "trained params": 0, "s/step": round(fwd, 4),
             "x forward": 1.0, f"s/epoch ({epoch_images} images)": round(fwd * epoch_images / batch, 1)}]
    res = {"forward_s": fwd, "arms": {}}
    for label, strategy in arms.items():
        torch.manual_seed(0)
        m = create_model("classifier", shape=(1, 28, 28), backbone=backbone, weights=weights, num_classes=10,
                         image_size=size, strategy=strategy)
        opt = m.make_optimizers(TrainConfig(lr=1e-4))["main"]
        m.train()

        def step():
            out = m.loss(x, y)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()

        s = timed(step)
        trained = sum(p.numel() for p in m.parameters() if p.requires_grad)
        res["arms"][strategy] = {"s_per_step": s, "ratio_to_forward": s / fwd, "trained_params": trained}
        rows.append({"arm": label, "trained params": trained, "s/step": round(s, 4), "x forward": round(s / fwd, 2),
                     f"s/epoch ({epoch_images} images)": round(s * epoch_images / batch, 1)})
    # genlab's linear probe: the features once, then epochs of the head alone
    head = torch.nn.Linear(model.backbone.feat_dim, 10)
    opt = torch.optim.Adam(head.parameters(), 1e-3)
    feats = torch.randn(batch, model.backbone.feat_dim)

    def head_step():
        loss = torch.nn.functional.cross_entropy(head(feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    hs = timed(head_step)
    res["probe_head_s_per_step"] = hs
    rows.append({"arm": "linear probe as genlab trains it: each epoch after the features", "trained params":
                 sum(p.numel() for p in head.parameters()), "s/step": round(hs, 6), "x forward": round(hs / fwd, 4),
                 f"s/epoch ({epoch_images} images)": round(hs * epoch_images / batch, 2)})
    res.update(table=rows, backbone=backbone, image_size=size, batch=batch, stages=stages, protocol=(
        f"{backbone} (random weights: time does not depend on their values) at {size} px, batch {batch} of 28 px grey "
        f"images (made 3-channel and resized inside the model, as in training), 10 classes, Adam; median of {steps} "
        f"steps after one warm-up, {threads} torch thread(s) on this CPU. x forward = step time / the forward pass "
        f"of the whole network without gradients, measured in the same run. s/epoch = s/step x {epoch_images} / batch."))
    return res
