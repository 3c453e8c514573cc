"""`genlab export --format onnx`: every family's parts exported from tiny runs and run by
onnxruntime at batch 1 and 7 on the same file, compared with the PyTorch model's own methods
(encode, decode, posterior, sample, logits, stylize) -- not with the export's wrappers --, the
metadata, the errors and the command line. Models are tiny and trained a few steps; one export
takes about 1.5 s on one core."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import genlab
from genlab.errors import GenlabError, RunError

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from genlab.export import default_part, export_onnx, metadata, parts  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]
TOL = 1e-4
GAN_TINY = {"g_width": 4, "d_width": 4, "latent": 8}


def _ort(path, *arrays):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ascontiguousarray(a.numpy() if isinstance(a, torch.Tensor) else a)
             for i, a in zip(sess.get_inputs(), arrays)}
    return sess.run(None, feeds)


def _diff(got, want) -> float:
    want = want.detach().contiguous().numpy()
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


def _images(n, shape, seed, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def npz28(tmp_path_factory):
    """48 tiny 28x28 grey images with labels 0..2 (a bright stripe per class)."""
    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = rng.integers(0, 60, (48, 28, 28))
    for i, c in enumerate(y):
        x[i, :, c * 9:(c + 1) * 9] += 150
    p = tmp_path_factory.mktemp("data") / "stripes.npz"
    np.savez(p, x=x.astype(np.uint8), y=y.astype(np.int64))
    return p


def _train(model, data, out, steps=2, **sets):
    return genlab.train(model, data, out=out, steps=steps, batch_size=16, device="cpu", evaluate_at_end=False,
                        set=sets)


# ---------------------------------------------------------------- autoencoders
def test_ae_encoder_and_decoder_match_pytorch(ae_run, tmp_path):
    m = ae_run.model
    res = {p: export_onnx(ae_run, part=p, out=tmp_path / f"{p}.onnx") for p in ("encoder", "decoder")}
    for p, r in res.items():
        assert r["max_abs_diff"] <= TOL and r["part"] == p and r["bytes"] == (tmp_path / f"{p}.onnx").stat().st_size
    with torch.no_grad():
        for n in (1, 7):  # one file, two batch sizes
            x = _images(n, m.shape, n)
            z = torch.randn(n, 4, generator=torch.Generator().manual_seed(n))
            assert _diff(_ort(tmp_path / "encoder.onnx", x)[0], m.encode(x)) <= TOL
            assert _diff(_ort(tmp_path / "decoder.onnx", z)[0], m.decode(z)) <= TOL
    meta = metadata(tmp_path / "decoder.onnx")
    assert meta["genlab_version"] == genlab.__version__ and meta["genlab_model"] == "ae"
    assert meta["genlab_part"] == "decoder" and json.loads(meta["genlab_value_range"]) == [0.0, 1.0]
    assert json.loads(meta["genlab_inputs"]) == [{"name": "z", "dtype": "float32", "shape": ["batch", 4]}]
    assert json.loads(meta["genlab_outputs"]) == ["x"] == res["decoder"]["outputs"]
    assert res["decoder"]["inputs"][0]["shape"] == ["batch", 4] and res["decoder"]["opset"] >= 17


def test_conv_ae_encoder_and_decoder_match_pytorch(tmp_path):
    run = _train("conv-ae", "digits", tmp_path / "r", channels=[4, 8], latent=4)
    m = run.model
    for p in ("encoder", "decoder"):
        export_onnx(run, part=p)  # default out: RUN_DIR/PART.onnx
    with torch.no_grad():
        for n in (1, 7):
            x = _images(n, m.shape, n)
            z = torch.randn(n, 4, generator=torch.Generator().manual_seed(n))
            assert _diff(_ort(run.path / "encoder.onnx", x)[0], m.encode(x)) <= TOL
            assert _diff(_ort(run.path / "decoder.onnx", z)[0], m.decode(z)) <= TOL


def test_vae_encoder_gives_mean_and_logvar_and_decoder_matches(vae_run, tmp_path):
    m = vae_run.model
    enc = export_onnx(vae_run, part="encoder", out=tmp_path / "enc.onnx")
    export_onnx(vae_run, part="decoder", out=tmp_path / "dec.onnx")
    assert enc["outputs"] == ["mean", "logvar"]
    with torch.no_grad():
        for n in (1, 7):
            x = _images(n, m.shape, n)
            mean, logvar = _ort(tmp_path / "enc.onnx", x)
            mu, lv = m.posterior(x)
            assert _diff(mean, mu) <= TOL and _diff(logvar, lv) <= TOL
            assert _diff(mean, m.encode(x)) <= TOL
            g = torch.Generator().manual_seed(n)
            want = m.sample(n, generator=g)  # sample draws z ~ N(0, I) from g, then decodes
            z = torch.randn(n, m.config.latent, generator=torch.Generator().manual_seed(n))
            assert _diff(_ort(tmp_path / "dec.onnx", z)[0], want) <= TOL


# ---------------------------------------------------------------- GANs
@pytest.mark.parametrize("upsample", ["transposed", "pixelshuffle"])
def test_dcgan_generator_matches_sample(npz28, tmp_path, upsample):
    run = _train("dcgan", f"npz:{npz28}", tmp_path / "r", upsample=upsample, **GAN_TINY)
    r = export_onnx(run)
    assert r["part"] == "generator" and r["path"] == str(run.path / "generator.onnx")
    assert metadata(r["path"])["genlab_model"] == "dcgan"
    m = run.model
    for n in (1, 7):
        want = m.sample(n, generator=torch.Generator().manual_seed(n))
        z = torch.randn(n, 8, generator=torch.Generator().manual_seed(n))
        got = _ort(r["path"], z)[0]
        assert got.shape == (n, 1, 28, 28) and _diff(got, want) <= TOL


def test_cdcgan_generator_takes_labels(npz28, tmp_path):
    run = _train("cdcgan", f"npz:{npz28}", tmp_path / "r", classes=3, **GAN_TINY)
    r = export_onnx(run, out=tmp_path / "g.onnx")
    assert [i["name"] for i in r["inputs"]] == ["z", "labels"] and r["inputs"][1]["dtype"] == "int64"
    m = run.model
    for n in (1, 7):
        want, y = m.sample_labeled(n, generator=torch.Generator().manual_seed(n))
        g = torch.Generator().manual_seed(n)  # sample_labeled draws z, then the labels, from g
        z = torch.randn(n, 8, generator=g)
        assert torch.equal(torch.randint(3, (n,), generator=g), y)
        assert _diff(_ort(r["path"], z, y)[0], want) <= TOL
        other = (y + 1) % 3  # the same z with other labels: another sample, as in PyTorch
        want_other = m.sample(n, generator=torch.Generator().manual_seed(n), labels=other)
        assert float((want_other - want).abs().max()) > 1e-6
        assert _diff(_ort(r["path"], z, other)[0], want_other) <= TOL


@pytest.mark.parametrize("ema_bn", [0, 400])
def test_mlp_gan_generator_uses_the_ema_copy_as_sample_does(tmp_path, ema_bn):
    run = _train("gan", "digits", tmp_path / "r", steps=3, g_hidden=[16], d_hidden=[16], latent=4, ema=0.5, ema_bn=ema_bn)
    m = run.model
    if ema_bn:  # as a checkpoint saved after a G update holds it: the statistics are computed before the trace
        for b in m.g_ema.modules():
            if isinstance(b, torch.nn.BatchNorm1d):
                b.reset_running_stats()
        m.ema_bn_stale.fill_(True)
    r = export_onnx(run)
    for n in (1, 7):
        want = m.sample(n, generator=torch.Generator().manual_seed(n))
        z = torch.randn(n, 4, generator=torch.Generator().manual_seed(n))
        assert _diff(_ort(r["path"], z)[0], want) <= TOL
        with torch.no_grad():
            assert _diff(_ort(r["path"], z)[0], m._out(m.g_ema(z))) <= TOL


# ---------------------------------------------------------------- classifier, style net
def test_classifier_logits_match(tmp_path):
    run = _train("classifier", "digits", tmp_path / "r", backbone="small-cnn", weights="none", strategy="finetune")
    assert default_part(run.model) == "classifier" and set(parts(run.model)) == {"classifier", "encoder"}
    r = export_onnx(run)
    assert r["outputs"] == ["logits"]
    with torch.no_grad():
        for n in (1, 7):
            x = _images(n, run.model.shape, n)
            got = _ort(r["path"], x)[0]
            assert got.shape == (n, 10) and _diff(got, run.model.logits(x)) <= TOL


def test_style_net_takes_any_size(tmp_path):
    """A model built in Python, untrained: a run would add nothing but its loss network, which the
    export does not touch; a model without a run directory needs ``out``."""
    from genlab.errors import ConfigError
    from genlab.models import create_model

    torch.manual_seed(0)
    m = create_model("style-net", shape=(3, 16, 16), width=4, residual_blocks=1)
    with pytest.raises(ConfigError, match="name the .onnx file"):
        export_onnx(m)
    r = export_onnx(m, out=tmp_path / "style.onnx")
    assert r["part"] == "style-net" and r["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    assert "genlab_run" not in metadata(r["path"]) and metadata(r["path"])["genlab_model"] == "style-net"
    with torch.no_grad():
        for n, (h, w) in ((1, (16, 16)), (7, (21, 13))):
            x = _images(n, (3, h, w), n)
            got = _ort(r["path"], x)[0]
            assert got.shape == (n, 3, h, w) and _diff(got, m.stylize(x)) <= TOL


# ---------------------------------------------------------------- parts, errors, atomicity
def test_parts_and_defaults_per_family():
    from genlab.models import create_model

    ae = create_model("ae", shape=(1, 8, 8), hidden=[8], latent=2)
    assert default_part(ae) == "model" and set(parts(ae)) == {"model", "encoder", "decoder"}
    g = create_model("cgan", shape=(1, 8, 8), g_hidden=[8], d_hidden=[8], classes=3)
    assert default_part(g) == "generator" and list(parts(g)) == ["generator"]
    st = create_model("stacked-ae", shape=(1, 8, 8), hidden=[8, 4])
    assert default_part(st) == "classifier" and "decoder" in parts(st)


def test_a_part_the_model_lacks_names_those_it_has(ae_run, tmp_path):
    with pytest.raises(RunError, match=r"no part 'generator'; it has: model, encoder, decoder$"):
        export_onnx(ae_run, part="generator", out=tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


def test_failed_check_writes_nothing(ae_run, tmp_path, monkeypatch):
    import genlab.export as ex

    monkeypatch.setattr(ex, "TOLERANCE", -1.0)  # no difference passes
    with pytest.raises(RunError, match=r"encoder of ae differs from PyTorch by .* was not written"):
        export_onnx(ae_run, part="encoder", out=tmp_path / "e.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_says_what_to_install(ae_run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(GenlabError, match=r"onnxruntime.*pip install 'genlab\[export\]'"):
        export_onnx(ae_run, out=tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------- command line
def _cli(capsys, *argv):
    from genlab.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return (rc, *capsys.readouterr())


def test_cli_nonexistent_run_is_a_one_line_error(tmp_path, capsys):
    rc, out, err = _cli(capsys, "export", tmp_path / "nope", "--format", "onnx")
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genlab export: error: ") and "nope" in lines[0]


def test_cli_bad_part_is_a_one_line_error(ae_run, capsys):
    rc, out, err = _cli(capsys, "export", ae_run.path, "--part", "style-net")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "it has: model, encoder, decoder" in err


def test_cli_writes_the_file_and_json_parses(vae_run, tmp_path, capsys):
    out = tmp_path / "sub" / "vae.onnx"
    rc, stdout, err = _cli(capsys, "export", vae_run.path, "--format", "onnx", "--out", out, "--json",
                           "--time", "--batch", "3", "--repeats", "2", "--threads", "1")
    assert rc == 0, err
    res = json.loads(stdout)
    assert res["path"] == str(out) and out.is_file() and res["part"] == "model" and res["max_abs_diff"] <= TOL
    assert res["torch_ms"] > 0 and res["onnx_ms"] > 0 and res["time_batch"] == 3
    assert res["ratio_onnx_to_torch"] == pytest.approx(res["onnx_ms"] / res["torch_ms"])
    x = _images(7, vae_run.model.shape, 0)
    with torch.no_grad():
        assert _diff(_ort(out, x)[0], vae_run.model.reconstruct(x)) <= TOL


def test_cli_prints_the_file_the_check_and_the_times(ae_run, tmp_path, capsys):
    out = tmp_path / "d.onnx"
    rc, stdout, err = _cli(capsys, "export", ae_run.path, "--part", "decoder", "--out", out, "--time",
                           "--batch", "2", "--repeats", "2", "--threads", "1")
    assert rc == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0].startswith(f"wrote {out} (") and "ae decoder, z: float32[batch, 4] -> x" in lines[0]
    assert lines[1].startswith("check: onnxruntime vs PyTorch at batch 1 and 7, max abs difference ")
    assert lines[2].startswith("time: batch 2, 1 thread(s), median of 2: PyTorch ") and "onnxruntime/PyTorch" in lines[2]


def test_cli_best_without_best_weights_is_an_error(ae_run, tmp_path, capsys):
    rc, out, err = _cli(capsys, "export", ae_run.path, "--best", "--out", tmp_path / "m.onnx")
    assert rc == 2 and "best.safetensors" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
