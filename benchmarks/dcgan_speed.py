"""Seconds per DCGAN training iteration: the pytorch/examples DCGAN (written out below in plain
torch, its training loop as in the example) against genlab's ``dcgan`` with the same
architecture, both at 64 px on the same batches of MNIST resized to 64x64, timed in the same
process, iteration by iteration in alternation."""
from __future__ import annotations

import time

NAME = "dcgan-speed"
DESCRIPTION = "seconds per 64 px DCGAN iteration (batch 64): genlab's dcgan vs the pytorch/examples DCGAN loop"
SETTINGS = ("iters", "warmup", "threads", "device", "images")


def reference_nets(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 1):
    """The Generator and Discriminator of pytorch/examples dcgan/main.py (64 px), with its
    ``weights_init``."""
    from torch import nn

    netG = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    netD = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def weights_init(m):
        classname = m.__class__.__name__
        if classname.find("Conv") != -1:
            nn.init.normal_(m.weight.data, 0.0, 0.02)
        elif classname.find("BatchNorm") != -1:
            nn.init.normal_(m.weight.data, 1.0, 0.02)
            nn.init.constant_(m.bias.data, 0)

    netG.apply(weights_init)
    netD.apply(weights_init)
    return netG, netD


class ReferenceLoop:
    """One iteration of the example's loop: D on the real batch and on G(noise).detach() (two
    backward passes, one Adam step), then G through D on the same fake (BCE against "real")."""

    def __init__(self, device, nz: int = 100, lr: float = 2e-4, beta1: float = 0.5):
        import torch
        from torch import nn, optim

        self.netG, self.netD = (m.to(device) for m in reference_nets(nz))
        self.criterion = nn.BCELoss()
        self.optimizerD = optim.Adam(self.netD.parameters(), lr=lr, betas=(beta1, 0.999))
        self.optimizerG = optim.Adam(self.netG.parameters(), lr=lr, betas=(beta1, 0.999))
        self.nz, self.device, self.torch = nz, device, torch

    def step(self, real_cpu):
        torch = self.torch
        netG, netD, criterion = self.netG, self.netD, self.criterion
        real_label, fake_label = 1, 0
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        batch_size = real_cpu.size(0)
        label = torch.full((batch_size,), real_label, dtype=real_cpu.dtype, device=self.device)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(batch_size, self.nz, 1, 1, device=self.device)
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optimizerD.step()
        # (2) Update G network: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(real_label)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optimizerG.step()
        return errD.item(), errG.item(), D_x, D_G_z1, D_G_z2


class GenlabLoop:
    """genlab's ``dcgan`` at 64 px on data in [-1, 1] (tanh output), driven as the engine drives
    it: ``train_step`` with the Updater over the optimizers of ``make_optimizers``."""

    def __init__(self, device):
        import torch

        from genlab.models import create_model
        from genlab.train.engine import TrainConfig, Updater

        self.model = create_model("dcgan", shape=(1, 64, 64), value_range=(-1.0, 1.0), image_size=64, latent=100,
                                  g_width=64, d_width=64, g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999).to(device)
        self.model.train()
        cfg = TrainConfig(lr=2e-4, batch_size=64)
        self.updater = Updater(self.model.make_optimizers(cfg), cfg)
        self.n, self.torch = 0, torch

    def step(self, x):
        logs = self.model.train_step(x, None, self.updater, self.n, 10**9)
        self.n += 1
        return {k: float(v) for k, v in logs.items()}  # the engine reads the logs every log_every steps; .item() here is the worst case


def mnist_64(root: str, n: int, device):
    """The first ``n`` MNIST training images, bilinearly resized to 64x64 and scaled to [-1, 1]
    (the example: Resize(64), ToTensor, Normalize((0.5,), (0.5,)))."""
    import torch.nn.functional as F

    from genlab.data import DataConfig, load_data

    ds = load_data(DataConfig(name="mnist", root=root, limit=n))
    x = ds.train.x[:n].float() / 255.0
    x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False).clamp(0, 1)
    return (x * 2 - 1).to(device)


def run(ctx) -> dict:
    import torch

    threads = ctx.param("threads", 2)
    iters = ctx.param("iters", 20, quick=3)
    warmup = ctx.param("warmup", 3, quick=1)
    n_images = ctx.param("images", 4096, quick=512)
    device = torch.device(ctx.param("device", "cpu"))
    if threads:
        torch.set_num_threads(threads)
    root = ctx.need_mnist()
    x_all = mnist_64(root, n_images, device)
    bs = 64
    batches = x_all.shape[0] // bs

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    torch.manual_seed(0)
    ref = ReferenceLoop(device)
    torch.manual_seed(0)
    ours = GenlabLoop(device)
    times = {"reference": [], "genlab": []}
    for i in range(warmup + iters):
        x = x_all[(i % batches) * bs:(i % batches + 1) * bs]
        # alternate which loop goes first, so that drift in machine speed hits both alike
        order = (("reference", ref), ("genlab", ours)) if i % 2 == 0 else (("genlab", ours), ("reference", ref))
        for name, loop in order:
            sync()
            t0 = time.perf_counter()
            loop.step(x)
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
        if i >= warmup:
            ctx.log(f"iteration {i - warmup + 1}/{iters}: reference {times['reference'][-1]:.3f} s, genlab {times['genlab'][-1]:.3f} s")
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    r, g = med(times["reference"]), med(times["genlab"])
    n_ref = [sum(p.numel() for p in m.parameters()) for m in (ref.netG, ref.netD)]
    n_ours = [sum(p.numel() for p in m.parameters()) for m in (ours.model.generator, ours.model.discriminator)]
    dev = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    return {
        "reference_seconds": times["reference"], "genlab_seconds": times["genlab"],
        "reference_median_s": r, "genlab_median_s": g, "ratio_genlab_to_reference": g / r,
        "threads": torch.get_num_threads(), "device": dev,
        "params_reference": n_ref, "params_genlab": n_ours,
        "table": [
            {"loop": "pytorch/examples DCGAN", "s/iter": round(r, 3), "x reference": 1.0},
            {"loop": "genlab dcgan (train_step + Updater)", "s/iter": round(g, 3), "x reference": round(g / r, 3)},
        ],
        "protocol": (f"64 px DCGAN (nz 100, ngf = ndf = 64, nc 1), batch {bs}, Adam 2e-4 beta1 0.5, on the first "
                     f"{x_all.shape[0]} MNIST training images resized bilinearly to 64x64 in [-1, 1]; both loops see the same "
                     f"batches; {warmup} warm-up then {iters} timed iterations each, alternating (which loop goes first "
                     f"alternates too); median seconds per iteration (D step + G step); device {dev}, torch threads "
                     f"{torch.get_num_threads()}. genlab's G and D have {n_ours[0]} and {n_ours[1]} parameters, the "
                     f"example's {n_ref[0]} and {n_ref[1]} (genlab keeps a bias in the 3 layers no BatchNorm follows)."),
    }
