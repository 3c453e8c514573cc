"""genlab's neural style transfer on every photo x painting pair of ``shared/data/style``: the
content and style losses of each result against its two inputs, next to the same losses of the
inputs themselves, and one panel per photo for the README.

The losses are the preset's own, unweighted (``genlab.style.nst``): content = ``sum_l 1/2 mean
(F_l(x) - F_l(photo))^2`` over the content layers, style = ``sum_l w_l mean((G_l(x) -
G_l(painting))^2)`` over the style layers with the preset's layer weights (0.2 each: the mean
over the 5 layers), on the same network, at the sizes ``stylize`` uses (the photo with its longer
side ``size``, the painting with its longer side ``size`` and its own aspect ratio). For scale:

- the photo itself has content loss 0, and its style loss is where the optimisation starts
  (``init="content"``): the result's style loss / the photo's says how much of the painting's
  style the result took on (lower is more);
- the painting itself, resized to the photo's size (as ``init="style"`` does), as if it were the
  result: its content loss says what "all of the content lost" costs (the result's content loss /
  the painting's says how much of the photo's content the result gave up).
"""
from __future__ import annotations

import math
import time

NAME = "style-gallery"
DESCRIPTION = ("genlab stylize (lite0) on each photo x painting pair in shared/data/style: content and style losses "
               "of the results against those of the inputs, and result panels")
SETTINGS = ("size", "steps", "photos", "paintings", "preset", "threads")

PHOTOS = ["beach-city", "bridge", "columns", "flowers"]
PAINTINGS = ["great-wave", "starry-night", "the-kiss", "the-scream", "wanderer-sea-fog"]


def _fit(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled so that the longer side is ``side`` (as stylize sizes its images)."""
    s = side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def crop_to(img, hw):
    """The central crop of ``img`` with the aspect ratio of ``hw``, resized to ``hw`` (for panels)."""
    from genlab.style.nst import resize

    h, w = img.shape[-2:]
    th, tw = hw
    if h * tw > w * th:  # too tall
        ch, cw = max(1, round(w * th / tw)), w
    else:
        ch, cw = h, max(1, round(h * tw / th))
    top, left = (h - ch) // 2, (w - cw) // 2
    return resize(img[..., top:top + ch, left:left + cw], hw)


class Losses:
    """The preset's unweighted content and style losses against one photo and one painting."""

    def __init__(self, ext, preset, photo, painting):
        import torch

        from genlab.style.nst import gram

        self.ext, self.p = ext, preset
        with torch.no_grad():
            self.tc = ext(photo, list(preset.content_layers))
            self.ts = [gram(f) for f in ext(painting, list(preset.style_layers)).values()]

    def __call__(self, x) -> tuple[float, float]:
        import torch

        from genlab.style.nst import content_loss, gram, style_loss

        with torch.no_grad():
            f = self.ext(x)
            lc = sum(content_loss(f[n], self.tc[n], normalize=True) for n in self.p.content_layers)
            ls = style_loss([gram(f[n]) for n in self.p.style_layers], self.ts, list(self.p.style_layer_weights))
        return float(lc), float(ls)


def run(ctx) -> dict:
    import copy

    import torch

    from genlab.errors import GenlabError
    from genlab.style.features import FeatureExtractor
    from genlab.style.nst import PRESETS, build_style_backbone, load_image, resize, stylize

    size = ctx.param("size", 256, quick=64)
    steps = ctx.param("steps", 300, quick=10)
    photos = ctx.param("photos", PHOTOS, quick=["columns"])
    paintings = ctx.param("paintings", PAINTINGS, quick=["starry-night"])
    preset_name = ctx.param("preset", "lite0")
    threads = ctx.param("threads", 1)
    if preset_name not in PRESETS:
        raise GenlabError(f"--set preset: expected one of {', '.join(PRESETS)}, got {preset_name!r}")
    if threads:
        torch.set_num_threads(threads)
    d = ctx.data_root / "style"
    if not d.is_dir():
        raise GenlabError(f"this benchmark needs the style-transfer images in {d} (photos and paintings; pass "
                          "--data-root DIR or set GENLAB_DATA_ROOT)")
    images = {}
    for stem in list(photos) + list(paintings):
        p = d / f"{stem}.jpg"
        if not p.is_file():
            raise GenlabError(f"{p}: no such image (known: {', '.join(sorted(q.stem for q in d.glob('*.jpg')))})")
        images[stem] = load_image(p)

    preset = PRESETS[preset_name]
    t0 = time.perf_counter()
    bb = build_style_backbone(preset.backbone)  # pretrained: a WeightsError naming the missing file otherwise
    eval_bb = copy.deepcopy(bb)  # its own copy, so stylize's hooks and the loss hooks never share modules
    ext = FeatureExtractor(eval_bb, list(preset.content_layers) + list(preset.style_layers), pool=preset.pool)
    ctx.log(f"{bb.name} ({bb.weights}) loaded in {time.perf_counter() - t0:.1f} s")
    device = torch.device("cpu")

    rows, pairs, panels = [], [], {}
    check = 0.0
    for photo in photos:
        cimg = images[photo]
        hw = _fit(*cimg.shape[-2:], size)
        c = resize(cimg, hw)
        panel = []
        for painting in paintings:
            simg = images[painting]
            s = resize(simg, _fit(*simg.shape[-2:], size))
            t = time.perf_counter()
            result, hist = stylize(cimg, simg, preset=preset_name, backbone=bb, steps=steps, size=size,
                                   optimizer="lbfgs", init="content", device=device)
            secs = time.perf_counter() - t
            losses = Losses(ext, preset, c, s)
            lc_r, ls_r = losses(result)
            _, ls_photo = losses(c)
            lc_paint, ls_paint = losses(resize(simg, hw))
            # the losses stylize reports for its result (weighted) must be these, times the weights
            fin = hist["final"]
            for mine, theirs, wgt in ((lc_r, fin["content"], hist["content_weight"]),
                                      (ls_r, fin["style"], hist["style_weight"])):
                if wgt > 0:
                    check = max(check, abs(mine - theirs / wgt) / max(abs(theirs / wgt), 1e-30))
            pairs.append({"photo": photo, "painting": painting, "size": list(hw), "steps": steps,
                          "evaluations": hist["evaluations"], "seconds": secs,
                          "content_result": lc_r, "content_painting": lc_paint, "style_photo": ls_photo,
                          "style_result": ls_r, "style_painting_resized": ls_paint,
                          "final_weighted": fin})
            rows.append({"pair": f"{photo} x {painting}", "content: result": lc_r, "content: painting": lc_paint,
                         "style: photo": ls_photo, "style: result": ls_r,
                         "style result/photo": round(ls_r / ls_photo, 4) if ls_photo else float("nan"),
                         "content result/painting": round(lc_r / lc_paint, 4) if lc_paint else float("nan"),
                         "seconds": round(secs, 1)})
            ctx.log(f"{photo} x {painting}: content {lc_r:.4g} (painting {lc_paint:.4g}), style {ls_r:.4g} "
                    f"(photo {ls_photo:.4g}), {secs:.1f} s")
            panel += [c, crop_to(simg, hw), result]
        panels[photo] = ctx.figure(f"style-gallery-{photo}.png", torch.cat(panel), nrow=3)
    ext.remove()

    def gmean(v):
        v = [x for x in v if x > 0 and math.isfinite(x)]
        return math.exp(sum(math.log(x) for x in v) / len(v)) if v else float("nan")

    style_kept = gmean([p["style_result"] / p["style_photo"] for p in pairs if p["style_photo"] > 0])
    content_lost = gmean([p["content_result"] / p["content_painting"] for p in pairs if p["content_painting"] > 0])
    if len(pairs) > 1:
        rows.append({"pair": f"geometric mean over {len(pairs)} pairs", "style result/photo": round(style_kept, 4),
                     "content result/painting": round(content_lost, 4),
                     "seconds": round(sum(p["seconds"] for p in pairs) / len(pairs), 1)})
    notes = []
    if check > 1e-3:
        notes.append(f"the losses recomputed here differ from stylize's own final losses by up to {check:.1e} "
                     "(relative): check the preset's layers")
    protocol = (
        f"genlab stylize(preset='{preset_name}', optimizer='lbfgs', init='content', size={size}, steps={steps}) on "
        f"{len(photos)} photo(s) ({', '.join(photos)}) x {len(paintings)} painting(s) ({', '.join(paintings)}) from "
        f"{d.name}/ (see shared/data/SOURCES.md), CPU, {torch.get_num_threads()} torch thread(s), the preset's loss "
        f"weights (content {preset.content_weight:g}, style {preset.style_weight:g}, tv {preset.tv_weight:g}). "
        f"Network: {bb.name} with {bb.weights}; the VGG presets (lectures: VGG16, gatys: VGG19) are not used because "
        "no VGG ImageNet weights are available offline here, and efficientnet_lite0's are. Losses: the preset's "
        "unweighted content loss (sum over the content layers of 1/2 mean (F - P)^2) against the photo and style "
        "loss (sum over the style layers of 0.2 x mean((G - A)^2), Gram G = F F^T / (C H W)) against the painting, on "
        "the same network, with the photo at longer side "
        f"{size} px and the painting at longer side {size} px (its aspect kept), as stylize sizes them; they agree "
        f"with stylize's own final losses to {check:.1e} (relative). For scale: the photo's own style loss "
        "(where the optimisation starts; its content loss is 0) and the painting's own content loss when it is "
        "resized to the photo's size and taken as the result. style result/photo < 1: the result took on the "
        "painting's style; content result/painting << 1: it kept the photo's content. Seconds: the whole stylize "
        f"call ({steps} L-BFGS iterations, each one forward and backward pass, plus the targets). Panels "
        "(full runs only): one per photo, a row per painting: photo | painting (central crop to the photo's "
        "aspect, for the grid) | result.")
    return {"table": rows, "protocol": protocol, "notes": notes, "pairs": pairs, "figures": panels,
            "style_result_over_photo_gmean": style_kept, "content_result_over_painting_gmean": content_lost,
            "loss_check_max_rel_diff": check, "backbone": bb.name, "weights": bb.weights,
            "threads": torch.get_num_threads()}
