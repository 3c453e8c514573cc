"""The feed-forward style network (``genlab train style-net``, Johnson et al. 2016) with its
default loss weights: trained on a handful of photos, judged on a photo it never saw, against
``genlab stylize`` (L-BFGS) on the same photo and painting.

Training photos: scikit-image's bundled photos (astronaut, chelsea, coffee, rocket) and three of
the four photos of ``shared/data/style`` (beach-city, columns, flowers); held out: ``bridge``.
They are written to a temporary ``folder:`` data set with ``train/`` and ``test/`` splits, so the
held-out photo is the run's test split. The run is ``genlab train style-net --style PAINTING
--set image_size=SIZE`` with every model option at its default (preset ``lite0``, its loss
weights), batch 4, Adam 1e-3, ``steps`` steps.

Judged with the losses of ``style-gallery`` (the preset's unweighted content loss against the
photo and style loss against the painting, at the sizes ``stylize`` uses): the result's style loss
over the photo's own (lower: more of the painting's style) and its content loss over the
painting's (lower: more of the photo kept), for the network's result on the held-out photo, on
the training photos, and for 300 L-BFGS iterations of ``genlab stylize`` on the held-out photo.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

NAME = "style-net"
DESCRIPTION = ("genlab train style-net with its default weights on 7 photos: the held-out bridge photo stylised in "
               "one forward pass against genlab stylize (L-BFGS): content and style losses, time, panels")
SETTINGS = ("painting", "steps", "size", "batch", "lbfgs_steps", "threads")

TRAIN_SKIMAGE = ["astronaut", "chelsea", "coffee", "rocket"]
TRAIN_SHARED = ["beach-city", "columns", "flowers"]
HELD_OUT = "bridge"


def run(ctx) -> dict:
    import copy

    import numpy as np
    import torch
    from PIL import Image

    import genlab
    from genlab.errors import GenlabError
    from genlab.style.features import FeatureExtractor
    from genlab.style.nst import PRESETS, build_style_backbone, load_image, resize, stylize

    import style_gallery as sg  # noqa: E402  (benchmarks/ is on sys.path)

    painting = ctx.param("painting", "starry-night")
    steps = ctx.param("steps", 240, quick=2)
    size = ctx.param("size", 256, quick=64)
    batch = ctx.param("batch", 4, quick=2)
    lbfgs_steps = ctx.param("lbfgs_steps", 300, quick=2)
    threads = ctx.param("threads", 1)
    if threads:
        torch.set_num_threads(threads)
    try:
        import skimage.data
    except ImportError as e:
        raise GenlabError("this benchmark needs scikit-image for its bundled photos (pip install scikit-image, or "
                          "the test extra)") from e
    d = ctx.data_root / "style"
    if not d.is_dir():
        raise GenlabError(f"this benchmark needs the style-transfer images in {d} (photos and paintings; pass "
                          "--data-root DIR or set GENLAB_DATA_ROOT)")
    for stem in TRAIN_SHARED + [HELD_OUT, painting]:
        if not (d / f"{stem}.jpg").is_file():
            raise GenlabError(f"{d / (stem + '.jpg')}: no such image")
    style_path = d / f"{painting}.jpg"

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "photos" / "train" / "photo").mkdir(parents=True)
        (tmp / "photos" / "test" / "photo").mkdir(parents=True)
        train_paths = []
        for name in TRAIN_SKIMAGE:
            p = tmp / "photos" / "train" / "photo" / f"{name}.png"
            Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB").save(p)
            train_paths.append(p)
        for name in TRAIN_SHARED:
            p = tmp / "photos" / "train" / "photo" / f"{name}.jpg"
            p.write_bytes((d / f"{name}.jpg").read_bytes())
            train_paths.append(p)
        held = tmp / "photos" / "test" / "photo" / f"{HELD_OUT}.jpg"
        held.write_bytes((d / f"{HELD_OUT}.jpg").read_bytes())

        t0 = time.perf_counter()
        run_ = genlab.train("style-net", f"folder:{tmp / 'photos'}", out=tmp / "run", steps=steps, batch_size=batch,
                            set={"style": str(style_path), "image_size": size, "train.threads": threads or 0,
                                 "train.log_every": max(1, steps // 24), "train.checkpoint_every": 0,
                                 "train.sample_every": 0})
        train_s = time.perf_counter() - t0
        model = run_.model.eval()
        cfg = json.loads((run_.path / "config.json").read_text())["model_config"]
        curve = [json.loads(line) for line in (run_.path / "metrics.jsonl").read_text().splitlines()]
        curve = [r for r in curve if r.get("split") == "train" and "loss" in r]

        preset = PRESETS[cfg["preset"]]
        bb = build_style_backbone(preset.backbone)
        ext = FeatureExtractor(copy.deepcopy(bb), list(preset.content_layers) + list(preset.style_layers),
                               pool=preset.pool)
        simg = load_image(style_path)
        rows, results, panel = [], [], []
        for path, split in [(held, "held out")] + [(p, "train") for p in train_paths]:
            cimg = load_image(path)
            hw = sg._fit(*cimg.shape[-2:], size)
            c = resize(cimg, hw)
            s = resize(simg, sg._fit(*simg.shape[-2:], size))
            losses = sg.Losses(ext, preset, c, s)
            _, ls_photo = losses(c)
            lc_paint, _ = losses(resize(simg, hw))
            with torch.inference_mode():
                model(c)  # warm-up
                t = time.perf_counter()
                y = model(c)
                ms = (time.perf_counter() - t) * 1000
            entries = [("style-net", y, ms / 1000)]
            if split == "held out":
                t = time.perf_counter()
                y_opt, _ = stylize(cimg, simg, preset=cfg["preset"], backbone=bb, steps=lbfgs_steps, size=size,
                                   optimizer="lbfgs", init="content", device=torch.device("cpu"))
                entries.append((f"stylize, {lbfgs_steps} L-BFGS iterations", y_opt, time.perf_counter() - t))
                panel += [c, sg.crop_to(simg, hw), y, y_opt]
            elif len(panel) < 4 * 3:  # two training photos per row: photo | network's result, twice
                panel += [c, y]
            for method, img, secs in entries:
                lc, ls = losses(img)
                r = {"photo": path.stem, "split": split, "method": method, "size": list(hw), "content": lc,
                     "style": ls, "style_result_over_photo": ls / ls_photo, "content_result_over_painting": lc / lc_paint,
                     "seconds": secs}
                results.append(r)
                rows.append({"photo": f"{path.stem} ({split})", "method": method,
                             "style result/photo": round(r["style_result_over_photo"], 4),
                             "content result/painting": round(r["content_result_over_painting"], 4),
                             "seconds": round(secs, 3)})
                ctx.log(f"{path.stem} ({split}), {method}: style/photo {r['style_result_over_photo']:.4f}, "
                        f"content/painting {r['content_result_over_painting']:.4f}, {secs:.3f} s")
        ext.remove()
    # panels differ in aspect: crop every tile to the first photo's shape for one grid
    hw0 = tuple(panel[0].shape[-2:])
    tiles = [t if tuple(t.shape[-2:]) == hw0 else sg.crop_to(t, hw0) for t in panel]
    fig = ctx.figure(f"style-net-{painting}.png", torch.cat(tiles), nrow=4)
    protocol = (
        f"genlab train style-net --style {painting}.jpg, all model options at their defaults (preset {cfg['preset']}, "
        f"content weight {cfg['content_weight']:g}, style weight {cfg['style_weight']:g}, tv weight "
        f"{cfg['tv_weight']:g}, width {cfg['width']}), image_size {size}, batch "
        f"{batch}, Adam 1e-3, {steps} steps ({train_s:.0f} s on {torch.get_num_threads()} thread(s)), on 7 photos: "
        f"scikit-image's {', '.join(TRAIN_SKIMAGE)} and shared/data/style's {', '.join(TRAIN_SHARED)}; held out: "
        f"{HELD_OUT}. Each photo at longer side {size} px (its aspect kept) through the network; the held-out photo "
        f"also through genlab stylize (same preset and weights' defaults, {lbfgs_steps} L-BFGS iterations, init "
        "content). Losses as in style-gallery: the preset's unweighted content loss against the photo and style loss "
        "against the painting; ratios against the photo's own style loss and the painting's own content loss. "
        "Seconds: one forward pass of the network after a warm-up, or the whole stylize call. Panel: first row the "
        "held-out photo | painting | style-net | stylize; then two training photos per row, photo | style-net; "
        "tiles cropped to the first one's shape.")
    return {"table": rows, "protocol": protocol, "results": results, "figure": fig, "train_seconds": train_s,
            "config": cfg, "curve": curve, "threads": torch.get_num_threads()}
