#!/usr/bin/env python
"""Train the small CNN feature extractors shipped with genlab (mnist-cnn, fashion-cnn).

    .venv/bin/python scripts/train_feature_nets.py --data-root /work/shared/data [--only mnist-cnn]

Reproducible: seed 0, CPU, torch.set_num_threads(2), deterministic algorithms, shuffling and
augmentation from one seeded generator; the same machine and torch build give the same bits.
Writes src/genlab/metrics/weights/{mnist,fashion}-cnn.safetensors (fp32, ~0.8 MB each) and
updates their lines in SHA256SUMS (--out DIR writes elsewhere, for trials). The architecture
is genlab.metrics.extractors.SmallCNN.

Recipe: Adam with a one-cycle learning rate (peak 3e-3), batch 128, random shifts of up to 2
pixels (plus horizontal flips for Fashion-MNIST); trained on the full training split, the test
split is used once, at the end, to report accuracy (no model selection on it).

Results (torch 2.14.1, 2 shared CPU cores):
    mnist-cnn    6 epochs   test accuracy 99.66%   351 s   796,608 bytes
    fashion-cnn 12 epochs   test accuracy 93.13%   649 s   796,616 bytes
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from genlab.data import DataConfig, load_data  # noqa: E402
from genlab.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from genlab.metrics.extractors import SUMS_FILE, WEIGHTS_DIR, SmallCNN, _read_sums  # noqa: E402

NETS = {
    # name: (data set, epochs, horizontal flips)
    "mnist-cnn": ("mnist", 6, False),
    "fashion-cnn": ("fashion-mnist", 12, True),
}
SEED = 0
BATCH = 128
PEAK_LR = 3e-3
SHIFT = 2


def augment(x: torch.Tensor, g: torch.Generator, flip: bool) -> torch.Tensor:
    """Random shifts of up to SHIFT pixels (zero fill) and, optionally, horizontal flips."""
    n, _, h, w = x.shape
    p = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT))
    oy = torch.randint(0, 2 * SHIFT + 1, (n,), generator=g)
    ox = torch.randint(0, 2 * SHIFT + 1, (n,), generator=g)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
    out = p[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)
    if flip:
        m = torch.rand(n, generator=g) < 0.5
        out[m] = out[m].flip(-1)
    return out


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header keys sorted: safetensors writes the
    metadata in hash-map order, which changes from run to run and would change the sha256."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as safetensors does
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


@torch.no_grad()
def accuracy(net: SmallCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), 1000):
        correct += int((net(x[i:i + 1000].float() / 255).argmax(1) == y[i:i + 1000]).sum())
    return correct / len(x)


def train_one(name: str, data_root: str, epochs: int | None, out: Path) -> dict:
    dataset, default_epochs, flip = NETS[name]
    epochs = epochs or default_epochs
    ds = load_data(DataConfig(name=dataset, root=data_root))
    xtr, ytr, xte, yte = ds.train.x, ds.train.y, ds.test.x, ds.test.y

    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    net = SmallCNN(10).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=PEAK_LR)
    steps_per_epoch = (len(xtr) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=PEAK_LR, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.2)
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=g)
        total, te = 0.0, time.time()
        for i in range(0, len(xtr), BATCH):
            idx = perm[i:i + BATCH]
            xb = augment(xtr[idx].float() / 255, g, flip).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"{name}: epoch {epoch + 1}/{epochs} loss {total / len(xtr):.4f} ({time.time() - te:.0f} s)", flush=True)
    train_s = time.time() - t0

    net = net.to(memory_format=torch.contiguous_format).eval()
    acc = accuracy(net, xte, yte)
    print(f"{name}: test accuracy {acc:.4%} on {len(xte)} {dataset} test images; trained in {train_s:.0f} s", flush=True)

    from safetensors.torch import save

    state = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    meta = {
        "arch": SmallCNN.ARCH,
        "data": dataset,
        "epochs": str(epochs),
        "seed": str(SEED),
        "test_accuracy": f"{acc:.4f}",
        "recipe": json.dumps({"optimizer": "adam", "peak_lr": PEAK_LR, "schedule": "onecycle", "batch": BATCH,
                              "shift": SHIFT, "hflip": flip}),
        "command": "scripts/train_feature_nets.py",
    }
    data = canonical_safetensors(save(state, metadata=meta))
    path = out / f"{name}.safetensors"
    atomic_write_bytes(path, data)
    digest = hashlib.sha256(data).hexdigest()
    print(f"{name}: wrote {path} ({len(data)} bytes, sha256 {digest})", flush=True)
    return {"name": name, "accuracy": acc, "seconds": train_s, "bytes": len(data), "sha256": digest}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"),
                    help="folder holding MNIST/ and FashionMNIST/ (default: ../shared/data)")
    ap.add_argument("--only", choices=sorted(NETS), action="append", help="train only this net (repeatable)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epoch count (for quick trials)")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for the weights and SHA256SUMS (default: the package's)")
    args = ap.parse_args(argv)

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    results = [train_one(n, args.data_root, args.epochs, args.out) for n in (args.only or list(NETS))]

    sums_path = args.out / SUMS_FILE
    sums = _read_sums(sums_path) if sums_path.is_file() else {}
    for r in results:
        sums[f"{r['name']}.safetensors"] = r["sha256"]
    atomic_write_text(sums_path, "".join(f"{h}  {f}\n" for f, h in sorted(sums.items())))
    print(f"wrote {sums_path}")
    for r in results:
        print(f"{r['name']:12s} test accuracy {r['accuracy']:.4%}  {r['seconds']:.0f} s  {r['bytes']} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
