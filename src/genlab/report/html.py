"""Small helpers that build a self-contained HTML page: inline CSS, images as data URIs."""
from __future__ import annotations

import base64
import html
from typing import Iterable

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1000px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
.sub { color: #666; margin-top: 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
td.note { color: #555; }
.tables { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.tables h3 { margin: 0.4em 0 0; font-size: 1em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
img.grid { image-rendering: pixelated; image-rendering: crisp-edges; }
figcaption { color: #555; font-size: 0.92em; margin-top: 0.3em; max-width: 760px; }
.row { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
a { color: #0b5cad; }
"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_width(png: bytes) -> int:
    """Width in pixels from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big")


def figure(png: bytes, alt: str, caption: str = "", grid: bool = False, scale: float = 1.0) -> str:
    """An embedded image with an optional caption. ``grid`` images are drawn with sharp pixels;
    ``scale`` enlarges them on screen (the PNG stays small)."""
    cls = ' class="grid"' if grid else ""
    width = f' width="{round(png_width(png) * scale)}"' if scale != 1.0 else ""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img{cls}{width} src="{data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def table(header: Iterable[str] | None, rows: Iterable[Iterable], num_cols: Iterable[int] = (),
          note_cols: Iterable[int] = ()) -> str:
    """An HTML table; cells are escaped. ``num_cols`` are right-aligned in a monospace font."""
    num, note = set(num_cols), set(note_cols)
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = ' class="num"' if i in num else ' class="note"' if i in note else ""
            cells.append(f"<td{cls}>{esc(c)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def fmt(v) -> str:
    """A metric value for a table: 4 significant digits for floats."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.4e}"
    return str(v)
