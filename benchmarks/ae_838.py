"""The lectures' first autoencoder example: eight one-hot inputs through three hidden units
(8-3-8). With three units and eight inputs to tell apart, the codes become binary-like: the
network invents a 3-bit code. The benchmark trains it, prints the eight codes, and checks that
every input comes back exactly (the largest output is at the input's position)."""
from __future__ import annotations

import tempfile
from pathlib import Path

NAME = "ae-838"
DESCRIPTION = "the 8-3-8 one-hot autoencoder: the eight 3-unit codes and exact recovery of all eight inputs"
SETTINGS = ("steps", "seed")


def run(ctx) -> dict:
    import numpy as np
    import torch

    import genlab

    steps = ctx.param("steps", 5000, quick=5000)
    seed = ctx.param("seed", 0)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "onehot.npz"
        eye = np.eye(8, dtype=np.float32)
        np.savez(p, x=eye, x_test=eye)
        run_ = genlab.train("ae", f"npz:{p}", out=Path(tmp) / "run", steps=steps, batch_size=8, lr=0.02, seed=seed,
                            progress=ctx.progress,
                            set={"hidden": [], "latent": 3, "code_activation": "sigmoid", "loss": "bce",
                                 "train.threads": 1, "train.log_every": 500})
        m = run_.model
        x = torch.from_numpy(eye)
        with torch.no_grad():
            codes = m.encode(x).numpy()
            out = m.reconstruct(x).numpy()
    recovered = int((out.argmax(1) == np.arange(8)).sum())
    bits = (codes > 0.5).astype(int)
    distinct = len({tuple(b) for b in bits})
    rows = [{"input": f"e{i}", "code": " ".join(f"{c:.2f}" for c in codes[i]), "bits": "".join(map(str, bits[i])),
             "output at input's position": round(float(out[i, i]), 3), "largest other output": round(float(np.delete(out[i], i).max()), 3)}
            for i in range(8)]
    return {
        "codes": codes.round(4).tolist(), "bits": ["".join(map(str, b)) for b in bits], "distinct_binary_codes": distinct,
        "recovered": recovered, "steps": steps, "table": rows,
        "protocol": (f"8 one-hot vectors, 8-3-8 autoencoder (linear layers, sigmoid code, sigmoid output, cross-entropy), "
                     f"Adam lr 0.02, batch 8 (all inputs), {steps} steps, seed {seed}. bits = code > 0.5; recovered = "
                     f"inputs whose largest output is at their own position ({recovered}/8); {distinct} distinct 3-bit codes"),
    }
