"""`genlab report` and `genlab demo`: self-contained pages, idempotent demo."""
from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from genlab.cli import main


def _images(html: str) -> list[Image.Image]:
    out = []
    for b64 in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        out.append(Image.open(io.BytesIO(base64.b64decode(b64))))
    return out


def test_report_is_self_contained_with_metrics_and_pictures(vae_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(vae_run.path), "--out", str(out)]) == 0
    html = out.read_text()
    # nothing fetched from elsewhere: every image is embedded, no external scripts or styles
    assert not re.search(r'(src|href)="(https?:)?//', html)
    imgs = _images(html)
    assert len(imgs) >= 4  # curves, reconstructions, samples, interpolation
    assert all(im.width > 0 and im.height > 0 for im in imgs)
    ev = json.loads((vae_run.path / "eval.json").read_text())
    for key in ("nelbo", "kl", "bce", "sse", "mse", "psnr"):
        assert key in html
    assert f"{ev['nelbo']:.4g}"[:4] in html


def test_report_of_a_non_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json" in err[0]


def test_demo_writes_reports_and_an_index_and_can_run_twice(tmp_path, capsys):
    out = tmp_path / "demo"
    for _ in range(2):  # idempotent: the second run replaces the first one's runs
        assert main(["demo", "--out", str(out), "--epochs", "2", "-q"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out / "index.html")
    for run in ("vae-digits", "ae-digits"):
        assert (out / run / "report.html").is_file()
        assert json.loads((out / run / "config.json").read_text())["train"]["epochs"] == 2
    html = (out / "index.html").read_text()
    assert "vae-digits/report.html" in html and "ae-digits/report.html" in html
    assert len(_images(html)) >= 3


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "vae-digits").mkdir(parents=True)
    (out / "vae-digits" / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(out), "--epochs", "1", "-q"]) == 2
    assert (out / "vae-digits" / "precious.txt").read_text() == "keep me"
    assert "vae-digits" in capsys.readouterr().err
