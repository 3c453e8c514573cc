"""Seconds per L-BFGS iteration of genlab's neural style transfer against the PyTorch tutorial's
implementation of the same losses (``_style_reference.py``), and the feed-forward ``style-net``
against optimisation.

1. ``genlab.style.stylize(..., preset="lectures", optimizer="lbfgs")`` (VGG16, content
   block2_conv2, style block1_conv2 ... block5_conv3) and the tutorial's loop run on the same
   VGG16 (one seeded random initialisation, shared: timing does not depend on the weights'
   values, and no VGG weights are available offline), the same content and style images, the
   same size, in one process. One L-BFGS iteration is one loss evaluation (a forward and a
   backward pass) in both. The objectives are made equal (the tutorial's mse content loss
   weighted 1/2, its style loss 0.2 x 1e6 = the preset's layer weights x style weight; the
   preset's total variation term off, as the tutorial has none); their values at the first
   evaluation are compared as a check that the two compute the same thing.
2. One 256 px image stylised by the feed-forward network (``style-net``'s transformation
   network, default width 32, random weights, one forward pass) against stylising it by
   optimisation (genlab's ``stylize`` for ``steps_equiv`` L-BFGS iterations), the ratio the
   AdaIN paper's speed table puts near 1000x on a GPU.
"""
from __future__ import annotations

import copy
import time
import warnings

NAME = "style-speed"
DESCRIPTION = ("seconds per L-BFGS iteration of genlab's stylize (VGG16, lectures preset) vs the PyTorch tutorial's "
               "loop at 256 and 512 px; feed-forward style-net vs optimisation for one 256 px image")
SETTINGS = ("sizes", "iters", "warmup", "rounds", "threads", "steps_equiv", "ff_size", "ff_runs", "content", "style")

# Huang and Belongie 2017 (AdaIN), Table 1, 256x256 images on a GPU: Gatys et al.'s optimisation
# and the feed-forward methods (their own network and Ulyanov et al.'s take 0.01-0.02 s).
ADAIN_GATYS_256_S = 14.17
ADAIN_FEEDFORWARD_256_S = 0.015


def square(img, size: int):
    """The central square of an image (1, 3, H, W), resized (bilinear, antialiased) to size x size."""
    from genlab.style.nst import resize

    h, w = img.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return resize(img[..., top:top + s, left:left + s], (size, size))


def style_images(ctx):
    from genlab.errors import GenlabError

    d = ctx.data_root / "style"
    if not d.is_dir():
        raise GenlabError(f"this benchmark needs the style-transfer images in {d} (photos and paintings; pass "
                          "--data-root DIR or set GENLAB_DATA_ROOT)")
    return d


def _image(d, stem: str):
    from genlab.errors import GenlabError
    from genlab.style.nst import load_image

    p = d / f"{stem}.jpg"
    if not p.is_file():
        raise GenlabError(f"{p}: no such image (known: {', '.join(sorted(q.stem for q in d.glob('*.jpg')))})")
    return load_image(p), p


def _diffs(stamps: list[float], warmup: int) -> list[float]:
    """Seconds of each iteration after the first ``warmup`` (from cumulative end-of-evaluation stamps)."""
    return [b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:])]


def _median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def run(ctx) -> dict:
    import torch

    from _style_reference import run_style_transfer
    from genlab.errors import GenlabError
    from genlab.models import create_model
    from genlab.style.nst import PRESETS, RANDOM_WARNING, build_style_backbone, stylize

    sizes = ctx.param("sizes", [256, 512], quick=[64])
    iters = ctx.param("iters", 4, quick=2)
    warmup = ctx.param("warmup", 2, quick=1)
    rounds = ctx.param("rounds", 4, quick=2)
    threads = ctx.param("threads", 1)
    steps_equiv = ctx.param("steps_equiv", 300)
    ff_size = ctx.param("ff_size", 256, quick=64)
    ff_runs = ctx.param("ff_runs", 10, quick=3)
    content_name = ctx.param("content", "beach-city")
    style_name = ctx.param("style", "starry-night")
    for what, v, lo in (("iters", iters, 1), ("warmup", warmup, 1), ("rounds", rounds, 1), ("ff_runs", ff_runs, 1),
                        ("steps_equiv", steps_equiv, 1)):
        if v < lo:
            raise GenlabError(f"--set {what}: expected at least {lo}, got {v}")
    if threads:
        torch.set_num_threads(threads)
    d = style_images(ctx)
    content_full, _ = _image(d, content_name)
    style_full, style_path = _image(d, style_name)

    preset = PRESETS["lectures"]
    cw, sw = preset.content_weight, preset.style_weight
    layer_w = preset.style_layer_weights
    if len(set(layer_w)) != 1:
        raise GenlabError("the lectures preset's style layer weights are no longer equal; update this benchmark")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=RANDOM_WARNING.split(":")[0])
        # the network stylize(random_weights=True, seed=0) builds, built once and shared
        bb = build_style_backbone(preset.backbone, random_weights=True, seed=0)
    ref_features = copy.deepcopy(bb.net.features)
    same = all(torch.equal(a, b) for a, b in zip(ref_features.parameters(), bb.net.features.parameters()))
    device = torch.device("cpu")

    def genlab_run(c, s, steps):
        t0 = time.perf_counter()
        _, hist = stylize(c, s, preset="lectures", backbone=bb, tv_weight=0.0, optimizer="lbfgs", steps=steps,
                          init="content", device=device)
        wall = time.perf_counter() - t0
        return {"stamps": hist["seconds"], "first_loss": hist["total"][0], "last_loss": hist["total"][-1],
                "setup_s": wall - hist["seconds"][-1], "evaluations": hist["evaluations"]}

    def reference_run(c, s, steps):
        _, st = run_style_transfer(ref_features, c, s, c, steps, style_weight=sw * layer_w[0],
                                   content_weight=0.5 * cw)
        return {"stamps": st["seconds"], "first_loss": st["losses"][0], "last_loss": st["losses"][-1],
                "setup_s": st["setup_s"], "evaluations": len(st["seconds"])}

    runners = {"genlab": genlab_run, "reference": reference_run}
    per_size = {}
    for size in sizes:
        c, s = square(content_full, size), square(style_full, size)
        times = {"genlab": [], "reference": []}
        setup = {"genlab": [], "reference": []}
        first, last = {}, {}
        for r in range(rounds):
            # alternate which implementation goes first (A B, B A, ...) so drift in machine speed hits both alike
            order = ("genlab", "reference") if r % 2 == 0 else ("reference", "genlab")
            for name in order:
                out = runners[name](c, s, warmup + iters)
                if out["evaluations"] != warmup + iters:
                    raise GenlabError(f"{name} at {size} px ran {out['evaluations']} evaluations, not "
                                      f"{warmup + iters} (L-BFGS stopped early)")
                times[name] += _diffs(out["stamps"], warmup)
                setup[name].append(out["setup_s"])
                first[name], last[name] = out["first_loss"], out["last_loss"]
                ctx.log(f"{size} px round {r + 1}/{rounds} {name}: median "
                        f"{_median(_diffs(out['stamps'], warmup)):.3f} s/iteration")
        g, ref = _median(times["genlab"]), _median(times["reference"])
        rel = abs(first["genlab"] - first["reference"]) / max(abs(first["reference"]), 1e-30)
        per_size[size] = {"genlab_s_per_iter": g, "reference_s_per_iter": ref, "ratio_genlab_to_reference": g / ref,
                          "genlab_seconds": times["genlab"], "reference_seconds": times["reference"],
                          "genlab_setup_s": _median(setup["genlab"]), "reference_setup_s": _median(setup["reference"]),
                          "first_loss_genlab": first["genlab"], "first_loss_reference": first["reference"],
                          "first_loss_rel_diff": rel, "last_loss_genlab": last["genlab"],
                          "last_loss_reference": last["reference"]}

    # ---- feed-forward vs optimisation at ff_size
    if ff_size in per_size:
        opt = per_size[ff_size]
    else:  # genlab alone at that size
        c, s = square(content_full, ff_size), square(style_full, ff_size)
        outs = [genlab_run(c, s, warmup + iters) for _ in range(rounds)]
        opt = {"genlab_s_per_iter": _median([t for o in outs for t in _diffs(o["stamps"], warmup)]),
               "genlab_setup_s": _median([o["setup_s"] for o in outs])}
    opt_s = opt["genlab_setup_s"] + steps_equiv * opt["genlab_s_per_iter"]
    model = create_model("style-net", shape=(3, ff_size, ff_size), style=str(style_path), random_weights=True)
    model.eval()
    n_params = sum(p.numel() for p in model.net.parameters())
    x = square(content_full, ff_size)
    ff_times = []
    with torch.inference_mode():
        for i in range(2 + ff_runs):
            t0 = time.perf_counter()
            y = model(x)
            if i >= 2:
                ff_times.append(time.perf_counter() - t0)
    if tuple(y.shape) != (1, 3, ff_size, ff_size):
        raise GenlabError(f"style-net returned shape {tuple(y.shape)}")
    ff = _median(ff_times)

    cfg = model.config
    rows = []
    for size, p in per_size.items():
        rows.append({"what": "s/iteration: PyTorch tutorial's loop (reference)", "px": size,
                     "seconds": round(p["reference_s_per_iter"], 4), "ratio": 1.0, "ratio to": "reference"})
        rows.append({"what": "s/iteration: genlab stylize, lectures (VGG16)", "px": size,
                     "seconds": round(p["genlab_s_per_iter"], 4), "ratio": round(p["ratio_genlab_to_reference"], 3),
                     "ratio to": "reference"})
    rows += [
        {"what": f"one image: genlab stylize, {steps_equiv} L-BFGS iterations (setup + {steps_equiv} x s/iteration)",
         "px": ff_size, "seconds": round(opt_s, 2), "ratio": round(opt_s / ff, 1), "ratio to": "feed-forward"},
        {"what": f"one image: style-net transformation network (width {cfg.width}), forward pass",
         "px": ff_size, "seconds": round(ff, 4), "ratio": 1.0, "ratio to": "feed-forward"},
        {"what": "AdaIN paper, GPU: Gatys et al. (optimisation)", "px": 256, "seconds": ADAIN_GATYS_256_S,
         "ratio": round(ADAIN_GATYS_256_S / ADAIN_FEEDFORWARD_256_S, 1), "ratio to": "feed-forward"},
        {"what": "AdaIN paper, GPU: feed-forward networks (0.01-0.02 s)", "px": 256,
         "seconds": ADAIN_FEEDFORWARD_256_S, "ratio": 1.0, "ratio to": "feed-forward"},
    ]
    checks = "; ".join(f"{s} px {p['first_loss_genlab']:.6g} vs {p['first_loss_reference']:.6g} "
                       f"(rel. diff {p['first_loss_rel_diff']:.1e}), after {warmup + iters} iterations "
                       f"{p['last_loss_genlab']:.4g} vs {p['last_loss_reference']:.4g}" for s, p in per_size.items())
    notes = []
    if not same:
        notes.append("the reference's VGG16 weights differ from genlab's: the comparison is not on the same network")
    bad = [s for s, p in per_size.items() if p["first_loss_rel_diff"] > 1e-3]
    if bad:
        notes.append(f"the two objectives differ at the first evaluation at {bad} px: check the layers and weights")
    slow = {s: round(p["ratio_genlab_to_reference"], 3) for s, p in per_size.items()
            if p["ratio_genlab_to_reference"] > 1}
    if slow:
        notes.append(f"genlab slower than the reference (target <= 1) at: {slow}")
    protocol = (
        f"CPU, {torch.get_num_threads()} torch thread(s). Content {content_name}.jpg, style {style_name}.jpg, both "
        "centre-cropped to a square and resized (bilinear, antialiased) to each size "
        f"({', '.join(map(str, sizes))} px). VGG16 with one seeded random initialisation (genlab's "
        "build_style_backbone(random_weights=True, seed=0), as stylize(random_weights=True) builds it; timing does "
        "not depend on the weights' values), the reference running a copy of its features. genlab: "
        "stylize(preset='lectures', optimizer='lbfgs', init='content', tv_weight=0) with that backbone; reference: "
        "the PyTorch neural-style tutorial's structure written out in benchmarks/_style_reference.py "
        "(Normalization + VGG16 layers rebuilt in an nn.Sequential with ContentLoss after relu_4 and StyleLoss after "
        "relu_2/4/7/10/13 = the preset's block2_conv2 and block1_conv2 ... block5_conv3, cut after the last loss; "
        "gram F F^T/(abcd); torch.optim.LBFGS defaults with a closure that clamps the input in place), content "
        "weight 0.5 and style weight 0.2e6 so that the objective equals genlab's (checked, genlab vs reference "
        f"loss at the first evaluation: {checks}). One iteration = one loss evaluation (forward + backward, plus "
        "the optimiser's own work until the next); seconds per iteration = differences of the wall-clock stamps "
        f"taken at the end of each evaluation, after {warmup} warm-up evaluation(s): {rounds} run(s) of "
        f"{warmup + iters} evaluations per implementation and size, alternating which goes first; median of the "
        f"{rounds * iters} timed iterations. Feed-forward: the style-net transformation network (width "
        f"{cfg.width}, {cfg.residual_blocks} residual blocks, {cfg.upsample} upsampling; {n_params} parameters; "
        f"random weights) on one {ff_size}x{ff_size} image under inference_mode, median of {ff_runs} forward passes "
        f"after 2 warm-ups; optimisation time for the same image = genlab's setup (targets, "
        f"{opt['genlab_setup_s']:.2f} s) + {steps_equiv} x its seconds per iteration at {ff_size} px (an estimate "
        f"from the timed iterations, not a full {steps_equiv}-iteration run). The AdaIN paper's figures (Huang and "
        f"Belongie 2017, Table 1: {ADAIN_GATYS_256_S} s for Gatys et al. at 256 px, feed-forward networks 0.01-0.02 "
        "s) are on a GPU and quoted, not measured here.")
    return {"table": rows, "protocol": protocol, "notes": notes, "sizes": per_size,
            "feedforward": {"size": ff_size, "median_s": ff, "seconds": ff_times, "params": n_params},
            "optimisation": {"size": ff_size, "steps": steps_equiv, "s_per_iter": opt["genlab_s_per_iter"],
                             "setup_s": opt["genlab_setup_s"], "estimated_s": opt_s,
                             "ratio_to_feedforward": opt_s / ff},
            "threads": torch.get_num_threads(), "same_weights": same}
