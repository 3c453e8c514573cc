"""Reports and `genlab sample` for GANs: latent interpolations whose ends are G(z0) and G(z1),
per-class grids made of sample_class rows, the GAN training figure, collapse warnings in the
report, the scatter plot of toy 2-D data, and the one-line errors of the new sample options."""
from __future__ import annotations

import base64
import html as htmllib
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import genlab
from genlab.cli import main
from genlab.errors import GenlabError
from genlab.report import figures as F
from genlab.report import write_report
from genlab.report.plots import gan_curves_png, loss_curves_png

SMALL = {"g_hidden": [16], "d_hidden": [16], "d_maxout": 2, "g_batchnorm": True, "r1": 0.0, "beta1": 0.8, "ema": 0.0}  # the class defaults, pinned: on ring8 a run would otherwise get the tuned 2-D set-up
CONV = {"g_width": 4, "d_width": 4, "latent": 8}
CLASS_NAMES = ["Boot", "Coat", "Sneaker"]
TEST_WARNING = "step 7: diversity collapsed (3 of 10 classes)"


pytestmark = pytest.mark.usefixtures("one_thread")


def _append_warning(run, text: str) -> None:
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 7, "split": "warning", "warning": text}) + "\n")


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    """A tiny MLP GAN on ring8 with quality checks (best.json) and a warning line."""
    torch.set_num_threads(1)
    run = genlab.train("gan", "ring8", out=tmp_path_factory.mktemp("runs") / "gan", steps=10, batch_size=50,
                       set={**SMALL, "data.limit": 500, "train.quality_every": 5, "train.log_every": 2})
    _append_warning(run, "step 7: diversity collapsed (3 of 8 modes) <&>")
    return run


@pytest.fixture(scope="module")
def cdcgan_run(tmp_path_factory):
    """A tiny conditional DCGAN on a folder of 32x32 images in three named classes."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASS_NAMES):
        (root / name).mkdir()
        for i in range(10):
            a = rng.integers(0, 60, size=(32, 32)).astype(np.uint8)
            a[:, c * 10:(c + 1) * 10] += 180
            Image.fromarray(a).save(root / name / f"{i}.png")
    run = genlab.train("cdcgan", f"folder:{root}", out=tmp_path_factory.mktemp("runs") / "cdcgan", steps=4,
                       batch_size=8, set={**CONV, "classes": 3, "data.grayscale": True, "train.log_every": 2})
    _append_warning(run, TEST_WARNING)
    return run


def _images(html: str) -> dict[str, Image.Image]:
    """Embedded images by their alt text."""
    out = {}
    for b64, alt in re.findall(r'<img[^>]* src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"', html):
        out[htmllib.unescape(alt)] = Image.open(io.BytesIO(base64.b64decode(b64)))
    return out


def _sections(html: str) -> list[str]:
    return re.findall(r"<h2[^>]*>([^<]*)</h2>", html)


# ------------------------------------------------------------------------------ latent helpers
@pytest.mark.parametrize("name,shape,kw", [("gan", (2,), SMALL), ("dcgan", (1, 28, 28), CONV),
                                           ("cgan", (1, 8, 8), {**SMALL, "classes": 3, "latent": 4})])
def test_interpolation_rows_are_g_along_the_line_from_z0_to_z1(name, shape, kw):
    torch.manual_seed(0)
    m = genlab.create_model(name, shape=shape, **kw)
    m.train()  # BatchNorm: the helper must evaluate in eval mode and restore the mode
    z0, z1 = F.latent_endpoints(m.latent, 3, seed=5)
    z = torch.randn(2, 3, m.latent, generator=torch.Generator().manual_seed(5))
    assert torch.equal(z0, z[0]) and torch.equal(z1, z[1])
    y = F.row_labels(m, 3)
    assert (y is None) == (name != "cgan")
    x = F.latent_interpolation(m, z0, z1, steps=7, y=y)
    assert m.training and x.shape == (3, 7, *shape)
    m.eval()
    yy = None if y is None else y
    torch.testing.assert_close(x[:, 0], m.generate(z0, ema=True, y=yy).reshape(3, *shape))
    torch.testing.assert_close(x[:, -1], m.generate(z1, ema=True, y=yy).reshape(3, *shape))
    mid = m.generate(0.5 * z0 + 0.5 * z1, ema=True, y=yy).reshape(3, *shape)
    torch.testing.assert_close(x[:, 3], mid)
    assert not torch.allclose(x[:, 0], x[:, -1])
    if name == "cgan":  # the label is fixed along a row: row i has class i
        assert y.tolist() == [0, 1, 2]
        other = m.generate(z0, ema=True, y=torch.tensor([2, 2, 2])).reshape(3, *shape)
        assert not torch.allclose(x[0, 0], other[0])
        assert F.row_labels(m, 4, label=2).tolist() == [2, 2, 2, 2]


def test_interpolation_of_a_vae_uses_its_decoder():
    torch.manual_seed(0)
    m = genlab.create_model("vae", shape=(1, 8, 8), hidden=[16], latent=3)
    assert F.latent_size(m) == 3
    z0, z1 = F.latent_endpoints(3, 2, seed=1)
    x = F.latent_interpolation(m, z0, z1, steps=4)
    torch.testing.assert_close(x[:, 0], m.decode(z0))
    torch.testing.assert_close(x[:, -1], m.decode(z1))


def test_models_without_a_latent_prior_are_refused():
    ae = genlab.create_model("ae", shape=(1, 8, 8), hidden=[16], latent=3)
    assert F.latent_size(ae) is None
    with pytest.raises(GenlabError, match="^--interpolate: ae has no latent space"):
        F.require_latent(ae)


def test_per_class_rows_are_sample_class_with_the_same_noise():
    torch.manual_seed(0)
    m = genlab.create_model("cdcgan", shape=(1, 28, 28), classes=3, **CONV)
    x, y = F.per_class_samples(m, 4, seed=3)
    assert x.shape == (12, 1, 28, 28) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    z = torch.randn(4, m.latent, generator=torch.Generator().manual_seed(3))
    m.eval()
    for c in range(3):
        row = x[4 * c:4 * (c + 1)]
        torch.testing.assert_close(row, m.sample_class(4, c, generator=torch.Generator().manual_seed(3)))
        torch.testing.assert_close(row, m.generate(z, ema=True, y=torch.full((4,), c)))
    assert not torch.allclose(x[:4], x[4:8])  # the label matters
    with pytest.raises(GenlabError, match="^--per-class: dcgan is not a conditional"):
        F.per_class_samples(genlab.create_model("dcgan", shape=(1, 28, 28), **CONV), 2)


def test_progress_grid_of_a_conditional_gan_has_one_row_per_class(tmp_path):
    from genlab.data.base import Dataset, Split
    from genlab.images import grid_png
    from genlab.run import write_progress_grids

    x = torch.randint(0, 255, (20, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(20) % 3
    ds = Dataset(name="t", train=Split(x, y), test=Split(x, y))
    torch.manual_seed(0)
    m = genlab.create_model("cdcgan", shape=(1, 28, 28), classes=3, **CONV)
    state = torch.get_rng_state()
    write_progress_grids(tmp_path, ds)(m, 0, 5)
    assert torch.equal(state, torch.get_rng_state())
    files = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert files == ["sample_step_0000005.png"]  # no "reconstruction" grid: a GAN has no encoder
    xs, _ = F.per_class_samples(m, 16, seed=1234)  # 3 classes: 16 per row
    assert (tmp_path / "samples" / files[0]).read_bytes() == grid_png(xs, nrow=16)


# ------------------------------------------------------------------------------ plots
def _gan_records():
    recs = []
    for s in range(2, 22, 2):
        r = {"step": s, "split": "train", "d_loss": 1.3 - s / 100, "d_real": 0.5 + s / 100, "d_fake": 0.5 - s / 100,
             "d_acc": 0.5 + s / 50, "grad_norm_d": 1.0 + s, "grad_norm_g": 0.1 * s}
        if s % 4 == 0:
            r["g_loss"] = 0.7 + s / 100
        recs.append(r)
    recs += [{"step": s, "split": "quality", "fid": 50.0 - s, "modes_hit": s // 2, "score": 50.0 - s,
              "score_name": "fid"} for s in (5, 10, 15, 20)]
    return recs


def test_gan_curves_figure_needs_d_loss_and_draws_every_panel():
    recs = _gan_records()
    assert loss_curves_png(recs) is None  # GAN train lines have no "loss"
    full = Image.open(io.BytesIO(gan_curves_png(recs, best={"step": 20, "score": 30.0, "metric": "fid"})))
    no_q = Image.open(io.BytesIO(gan_curves_png([r for r in recs if r["split"] == "train"])))
    bare = [{k: v for k, v in r.items() if not k.startswith("grad_norm")} for r in recs if r["split"] == "train"]
    one_row = Image.open(io.BytesIO(gan_curves_png(bare, critic=True)))
    assert full.height > one_row.height and full.size == no_q.size  # 2x2 panels (one blank) vs 1x2
    assert gan_curves_png([{"step": 1, "split": "quality", "score": 1.0}]) is None


# ------------------------------------------------------------------------------ reports
def test_report_of_a_gan_on_ring8(gan_run, tmp_path):
    state = torch.get_rng_state()
    out = write_report(gan_run, out=tmp_path / "r.html")
    assert torch.equal(state, torch.get_rng_state())
    html = out.read_text()
    sections = _sections(html)
    assert sections[0] == "Warnings" and "Reconstructions" not in sections and "Samples" in sections
    assert "diversity collapsed (3 of 8 modes) &lt;&amp;&gt;" in html  # every warning line, escaped
    warns = [r["warning"] for r in gan_run.metrics() if r.get("split") == "warning"]
    assert len(warns) >= 1 and all(w.replace("<&>", "&lt;&amp;&gt;") in html for w in warns)
    assert "Lower is better for reverse_kl; higher is better for modes, high_quality." in html
    best = json.loads((gan_run.path / "best.json").read_text())
    assert f"at step {best['step']}" in html and "final D loss" in html
    for key in ("modes", "high_quality", "reverse_kl", "d_real"):
        assert f"<td>{key}</td>" in html
    imgs = _images(html)
    assert set(imgs) == {"training curves", "samples over the data's modes"}
    assert imgs["training curves"].height > 400  # two rows of panels: losses, D, gradients, quality
    # the same pictures on a second write
    again = _images(write_report(gan_run, out=tmp_path / "r2.html").read_text())
    assert all(np.array_equal(np.asarray(imgs[k]), np.asarray(again[k])) for k in imgs)


def test_report_of_a_conditional_dcgan(cdcgan_run, tmp_path):
    html = write_report(cdcgan_run, out=tmp_path / "r.html").read_text()
    sections = _sections(html)
    assert sections[0] == "Warnings" and TEST_WARNING in html
    assert {"Samples", "Samples per class", "Interpolation"} <= set(sections)
    assert "Reconstructions" not in sections
    assert "0 (Boot), 1 (Coat), 2 (Sneaker)" in html  # rows named in the alt text and caption
    imgs = _images(html)
    per_class = next(im for alt, im in imgs.items() if alt.startswith("samples per class"))
    assert "Sneaker" in next(alt for alt in imgs if alt.startswith("samples per class"))
    # 3 rows of 10 images of 32 px with 1 px padding, enlarged 2x
    assert per_class.size == (2 * (10 * 33 + 1), 2 * (3 * 33 + 1))
    want = Image.open(io.BytesIO(F.per_class_png(cdcgan_run.model, (0.0, 1.0))))
    assert np.array_equal(np.asarray(per_class), np.asarray(want))
    interp = imgs["latent interpolation"]
    assert interp.size == (2 * (F.LATENT_INTERP_STEPS * 33 + 1), 2 * (F.INTERP_ROWS * 33 + 1))
    assert "final D loss" in html and "row i has class i mod classes" in html


def test_report_of_a_vae_has_no_warnings_section_and_says_which_way_is_better(vae_run, tmp_path):
    html = write_report(vae_run, out=tmp_path / "r.html").read_text()
    assert "Warnings" not in _sections(html) and "Reconstructions" in _sections(html)
    assert "higher is better for psnr" in html and "lower is better for nelbo" in html.lower()


# ------------------------------------------------------------------------------ genlab sample
from test_cli import assert_one_line_error, run_cli  # noqa: E402  (the CLI tests' helpers)


def test_sample_interpolate_npz_of_a_gan(gan_run, tmp_path, capsys):
    f = tmp_path / "i.npz"
    rc, out, _ = run_cli(capsys, "sample", gan_run.path, "--interpolate", 3, "--seed", 4, "--out", f)
    assert rc == 0 and out.strip() == str(f)
    a = np.load(f)
    assert a["x"].shape == (30, 2) and a["z"].shape == (30, 2) and "y" not in a
    z0, z1 = F.latent_endpoints(2, 3, seed=4)
    np.testing.assert_array_equal(a["z"][::10], z0.numpy())
    np.testing.assert_allclose(a["z"][9::10], z1.numpy(), rtol=0, atol=1e-6)
    m = gan_run.model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(a["x"][::10], m.generate(z0, ema=True).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a["x"][9::10], m.generate(z1, ema=True).numpy(), rtol=1e-5, atol=1e-6)
    rc, _, err = run_cli(capsys, "sample", gan_run.path, "--interpolate", 3, "--out", tmp_path / "i.png")
    assert_one_line_error(rc, err, "not images", ".npz")


def test_sample_interpolate_png_of_a_vae(vae_run, tmp_path, capsys):
    f = tmp_path / "i.png"
    rc, _, _ = run_cli(capsys, "sample", vae_run.path, "--interpolate", 2, "--out", f)
    assert rc == 0
    with Image.open(f) as im:  # 2 rows of 10 images of 8x8, enlarged 4x
        assert im.size == (4 * (10 * 9 + 1), 4 * (2 * 9 + 1))
    rc, _, _ = run_cli(capsys, "sample", vae_run.path, "--interpolate", 2, "--out", tmp_path / "i.npz")
    a = np.load(tmp_path / "i.npz")
    m = vae_run.model
    with torch.no_grad():
        want = m.decode(torch.as_tensor(a["z"][::10])).numpy()
    np.testing.assert_allclose(a["x"][::10], want, rtol=1e-5, atol=1e-6)


def test_sample_class_and_per_class_of_a_cdcgan(cdcgan_run, tmp_path, capsys):
    m = cdcgan_run.model
    f = tmp_path / "c.npz"
    rc, _, _ = run_cli(capsys, "sample", cdcgan_run.path, "--class", "sneaker", "--n", 5, "--seed", 2, "--out", f)
    assert rc == 0
    a = np.load(f)
    assert a["y"].tolist() == [2] * 5
    np.testing.assert_array_equal(a["x"], m.sample_class(5, 2, generator=torch.Generator().manual_seed(2)).numpy())
    rc, _, _ = run_cli(capsys, "sample", cdcgan_run.path, "--class", 2, "--n", 5, "--seed", 2, "--out", tmp_path / "d.npz")
    np.testing.assert_array_equal(np.load(tmp_path / "d.npz")["x"], a["x"])  # a label or its name
    rc, _, _ = run_cli(capsys, "sample", cdcgan_run.path, "--per-class", 4, "--out", tmp_path / "p.npz")
    p = np.load(tmp_path / "p.npz")
    assert p["y"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_array_equal(p["x"], F.per_class_samples(m, 4, seed=0)[0].numpy())
    rc, _, _ = run_cli(capsys, "sample", cdcgan_run.path, "--per-class", 4, "--out", tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:  # 3 rows (classes) of 4 images of 32 px, enlarged 2x
        assert rc == 0 and im.size == (2 * (4 * 33 + 1), 2 * (3 * 33 + 1))
    rc, _, _ = run_cli(capsys, "sample", cdcgan_run.path, "--interpolate", 2, "--class", "Coat", "--out", tmp_path / "i.npz")
    assert rc == 0 and np.load(tmp_path / "i.npz")["y"].tolist() == [1] * 20


@pytest.mark.parametrize("args,needles", [
    (["--class", "3"], ["--class 3", "0..2"]),
    (["--class", "-1"], ["--class -1", "0..2"]),
    (["--class", "Pants"], ["--class Pants", "Boot, Coat, Sneaker"]),
    (["--per-class", "2", "--class", "1"], ["--per-class", "--class"]),
    (["--per-class", "2", "--interpolate", "2"], ["--per-class", "--interpolate"]),
    (["--per-class", "0"], ["--per-class", "positive"]),
    (["--interpolate", "3", "--n", "5"], ["--n", "--interpolate"]),
])
def test_sample_option_errors_are_one_line(cdcgan_run, tmp_path, capsys, args, needles):
    rc, out, err = run_cli(capsys, "sample", cdcgan_run.path, *args, "--out", tmp_path / "x.png")
    assert_one_line_error(rc, err, *needles)
    assert out == "" and not (tmp_path / "x.png").exists()


def test_sample_options_on_models_that_lack_them(gan_run, ae_run, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "sample", gan_run.path, "--class", 1, "--out", tmp_path / "x.npz")
    assert_one_line_error(rc, err, "--class", "gan is not a conditional model")
    rc, _, err = run_cli(capsys, "sample", gan_run.path, "--per-class", 2, "--out", tmp_path / "x.npz")
    assert_one_line_error(rc, err, "--per-class", "not a conditional model")
    rc, _, err = run_cli(capsys, "sample", ae_run.path, "--interpolate", 2, "--out", tmp_path / "x.npz")
    assert_one_line_error(rc, err, "--interpolate", "ae has no latent space")
    assert not (tmp_path / "x.npz").exists()


def test_sample_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for needle in ("--interpolate K", "evenly spaced points", "--class C", "class name", "--per-class K",
                   "one row per class"):
        assert needle in out, needle
