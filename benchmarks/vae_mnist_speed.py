"""Wall time per epoch of the pytorch/examples MNIST VAE set-up: genlab against the example's
own loop (measured in the same run), and against the arithmetic floor of this machine."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

NAME = "vae-mnist-speed"
DESCRIPTION = "seconds per MNIST VAE epoch (train + test pass): genlab vs the pytorch example's loop and the FLOP floor"


def epoch_flops(n_train: int, n_test: int) -> float:
    """FLOPs (2 per multiply-add) of the 784-400-20 VAE's linear layers for one epoch: training
    is the forward pass, the weight gradients, and the input gradients of every layer but the
    first (the images need none); the test pass is one forward."""
    first = 784 * 400
    macs = first + 400 * 40 + 20 * 400 + 400 * 784
    return 2 * ((3 * macs - first) * n_train + macs * n_test)


def run(ctx) -> dict:
    import torch

    import genlab
    from genlab.bench import measure_gflops
    from genlab.data import DataConfig, load_data
    from genlab.evaluate import evaluate
    from genlab.models import create_model
    from genlab.train import TrainConfig, fit

    from _reference import run_example  # noqa: E402  (benchmarks/ is on sys.path, see below)

    root = ctx.need_mnist()
    n_train = 12800 if ctx.quick else 60000
    n_test = 2000 if ctx.quick else 10000
    reps = 1 if ctx.quick else 5
    gflops = measure_gflops()
    ctx.log(f"matmul throughput: {gflops:.1f} GFLOP/s")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds = load_data(DataConfig(name="mnist", root=root, limit=n_train))
        ds.test = ds.test.subset(torch.arange(n_test))
        ref_times, ours = [], []
        for r in range(reps):  # alternate the two so drift in machine speed hits both alike
            ctx.log(f"rep {r + 1}/{reps}: pytorch example loop ...")
            ref = run_example(root, tmp, epochs=1, seed=1, train_limit=n_train if ctx.quick else 0,
                              test_limit=n_test if ctx.quick else 0)
            ref_times.append(ref["epoch_seconds"][0])
            ctx.log(f"  {ref_times[-1]:.2f} s; genlab ...")
            torch.manual_seed(1)
            model = create_model("vae", shape=(1, 28, 28))
            t0 = time.perf_counter()
            fit(model, ds, TrainConfig(epochs=1, batch_size=128, lr=1e-3, seed=1, checkpoint_every=0),
                tmp / f"run{r}", progress=False)
            evaluate(model, ds, "test")
            ours.append(time.perf_counter() - t0)
            ctx.log(f"  {ours[-1]:.2f} s")
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    floor = epoch_flops(n_train, n_test) / (gflops * 1e9)
    ref_s, our_s = med(ref_times), med(ours)
    rows = [
        {"loop": "pytorch example (PIL decode per image)", "s/epoch": round(ref_s, 2), "x genlab": round(ref_s / our_s, 2)},
        {"loop": "genlab (uint8 tensor in memory)", "s/epoch": round(our_s, 2), "x genlab": 1.0},
        {"loop": f"arithmetic floor at {gflops:.0f} GFLOP/s", "s/epoch": round(floor, 2), "x genlab": round(floor / our_s, 2)},
    ]
    return {
        "reference_seconds": ref_times, "genlab_seconds": ours, "speedup": ref_s / our_s,
        "floor_seconds": floor, "fraction_of_floor": floor / our_s, "gflops": gflops, "table": rows,
        "protocol": (f"one epoch over {n_train} MNIST training images plus a test pass over {n_test}, batch 128, "
                     f"784-400-20 VAE, CPU, torch threads={torch.get_num_threads()}; median of {reps} alternating "
                     "repetitions; floor = linear-layer FLOPs (forward, weight gradients, input gradients but for the first layer) / measured 1024x1024 matmul rate"),
    }
