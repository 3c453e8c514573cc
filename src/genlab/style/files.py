"""The files of ``genlab stylize``: the result, its loss curves and a content | style | result panel.
Every file is written atomically (``genlab.io``)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from torch import Tensor


def png_bytes(image: Tensor) -> bytes:
    """(1, 3, H, W) or (3, H, W) in [0, 1] as an 8-bit RGB PNG (rounded)."""
    from PIL import Image

    a = image.detach().float().cpu().reshape(-1, *image.shape[-2:]).clamp(0, 1).numpy()
    buf = io.BytesIO()
    Image.fromarray((a.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def panel_png(images: list[Tensor], gap: int = 4) -> bytes:
    """Images side by side on white, each scaled (bicubic) to the height of the last one."""
    from PIL import Image

    tiles = [Image.open(io.BytesIO(png_bytes(x))) for x in images]
    h = tiles[-1].height
    tiles = [t if t.height == h else t.resize((max(1, round(t.width * h / t.height)), h), Image.BICUBIC)
             for t in tiles]
    out = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), h), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def loss_png(history: dict, title: str = "") -> bytes:
    """The total loss and its weighted terms per iteration, log y (zeros are not drawn); dashed
    lines where a new scale starts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for key, style in (("total", "k-"), ("content", "C0-"), ("style", "C1-"), ("tv", "C2-")):
        ys = np.asarray(history.get(key, []), dtype=float)
        ok = ys > 0
        if ok.any():
            ax.plot(np.arange(len(ys))[ok], ys[ok], style, lw=1.4 if key == "total" else 1.0,
                    label=key if key == "total" else f"{key} (weighted)")
    for s in history.get("scale_starts", [])[1:]:
        ax.axvline(s, color="0.6", ls="--", lw=0.8)
    ax.set_yscale("log")
    what = "L-BFGS iteration (one loss evaluation each)" if history.get("optimizer") == "lbfgs" else "Adam step"
    ax.set_xlabel(what + (" (dashed: next scale)" if len(history.get("scale_starts", [])) > 1 else ""))
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def output_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """OUT.png -> (OUT.png, OUT-loss.png, OUT-panel.png)."""
    out = Path(out)
    return out, out.with_name(f"{out.stem}-loss.png"), out.with_name(f"{out.stem}-panel.png")


def write_stylize_files(out: str | Path, result: Tensor, content: Tensor, style: Tensor, history: dict,
                        title: str = "") -> list[Path]:
    """Write OUT.png (the result), OUT-loss.png and OUT-panel.png (content | style | result);
    return their paths."""
    from ..io import atomic_write_bytes

    paths = output_paths(out)
    datas = (png_bytes(result), loss_png(history, title), panel_png([content, style, result]))
    for p, data in zip(paths, datas):
        atomic_write_bytes(p, data)
    return list(paths)
