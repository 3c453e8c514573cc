"""The reference the speed benchmark measures genlab against: the training and test loop of
the pytorch/examples MNIST VAE (torchvision's MNIST with ToTensor, a DataLoader decoding each
image through PIL every epoch, the 784-400-20 model, BCE summed + KL, Adam 1e-3, batch 128),
written out here so that it runs in the same process on the same machine."""
from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class ExampleVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def example_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def extracted_mnist(data_root: str, tmp: Path) -> Path:
    """torchvision's MNIST reads the extracted IDX files; the shared data folder holds the .gz
    files and may be read-only, so extract them into ``tmp``."""
    src = Path(data_root) / "MNIST" / "raw"
    dst = tmp / "MNIST" / "raw"
    dst.mkdir(parents=True, exist_ok=True)
    for gz in src.glob("*-ubyte.gz"):
        out = dst / gz.name[:-3]
        if not out.exists():
            with gzip.open(gz, "rb") as f, open(out, "wb") as g:
                shutil.copyfileobj(f, g)
    return tmp


def run_example(data_root: str, tmp: Path, epochs: int = 1, seed: int = 1, train_limit: int = 0,
                test_limit: int = 0) -> dict:
    """Train and test like the example; returns seconds per epoch (train + test) and test loss."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    root = extracted_mnist(data_root, tmp)
    torch.manual_seed(seed)
    train_ds = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    test_ds = datasets.MNIST(str(root), train=False, download=False, transform=transforms.ToTensor())
    if train_limit:
        train_ds = Subset(train_ds, range(train_limit))
    if test_limit:
        test_ds = Subset(test_ds, range(test_limit))
    train_loader = DataLoader(train_ds, batch_size=128, shuffle=True)
    test_loader = DataLoader(test_ds, batch_size=128, shuffle=False)
    model = ExampleVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, test_loss = [], float("nan")
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for x, _ in train_loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = example_loss(recon, x, mu, logvar)
            loss.backward()
            opt.step()
        model.eval()
        total = 0.0
        with torch.no_grad():
            for x, _ in test_loader:
                recon, mu, logvar = model(x)
                total += example_loss(recon, x, mu, logvar).item()
        test_loss = total / len(test_loader.dataset)
        times.append(time.perf_counter() - t0)
    return {"epoch_seconds": times, "test_loss": test_loss}
