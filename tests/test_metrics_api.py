"""`genlab metrics`: sources, feature cache, mode coverage and the CLI contract."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from genlab.cli import main
from genlab.errors import GenlabError
from genlab.metrics import core
from genlab.metrics.api import compute_metrics
from genlab.metrics.modes import mode_coverage
from genlab.metrics.sources import load_source


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))


def test_mode_coverage_against_hand_counts():
    c = 10
    logits = torch.full((30, c), -20.0)
    logits[torch.arange(30), torch.arange(30) % 3] = 20.0  # 3 modes, equally often, confidently
    r = mode_coverage(logits)
    assert r["modes_hit"] == 3 and r["high_quality"] == 1.0
    assert r["kl_to_uniform"] == pytest.approx(math.log(c / 3))
    uniform = torch.zeros(40, c)
    uniform[torch.arange(40), torch.arange(40) % c] = 20.0
    assert mode_coverage(uniform)["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    unsure = torch.zeros(5, c)  # p = 0.1 everywhere: no high-quality sample, no mode hit
    r = mode_coverage(unsure)
    assert r["high_quality"] == 0.0 and r["modes_hit"] == 0
    with pytest.raises(GenlabError, match="NaN"):
        mode_coverage(torch.tensor([[float("nan"), 0.0]]))


def test_dataset_source_is_the_split_in_unit_range():
    from genlab.data import DataConfig, load_data

    x, info = load_source("digits:test")
    ds = load_data(DataConfig(name="digits"))
    assert torch.equal(x, ds.as_float(ds.test.x)) and info["split"] == "test"
    sub, _ = load_source("digits:test", n=50, seed=3)
    sub2, _ = load_source("digits:test", n=50, seed=3)
    assert sub.shape[0] == 50 and torch.equal(sub, sub2)
    # every row of the subset is a row of the full split
    assert all((x == row).flatten(1).all(1).any() for row in sub)


def test_npz_and_folder_sources(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", x=a)
    x, _ = load_source(str(tmp_path / "s.npz"))
    assert x.shape == (6, 1, 5, 5) and torch.allclose(x[:, 0], torch.from_numpy(a).float() / 255)
    np.savez(tmp_path / "bad.npz", x=np.full((3, 4), 2.0))
    with pytest.raises(GenlabError, match=r"\[0, 1\]"):
        load_source(str(tmp_path / "bad.npz"))
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(a[i]).save(tmp_path / "imgs" / f"{i}.png")
    x, info = load_source(str(tmp_path / "imgs"))
    assert info["kind"] == "folder" and torch.allclose(x[:, 0], torch.from_numpy(a[:4]).float() / 255)
    Image.fromarray(rng.integers(0, 256, (7, 7), dtype=np.uint8)).save(tmp_path / "imgs" / "odd.png")
    with pytest.raises(GenlabError, match="--image-size"):
        load_source(str(tmp_path / "imgs"))
    assert load_source(str(tmp_path / "imgs"), image_size=5)[0].shape == (5, 1, 5, 5)


def test_run_sources(ae_run, vae_run):
    with pytest.raises(GenlabError, match="cannot sample"):
        load_source(str(ae_run.path))
    x, info = load_source(str(vae_run.path), n=12, seed=0)
    assert x.shape == (12, 1, 8, 8) and info["kind"] == "run"
    assert torch.allclose(x[:12], vae_run.sample(12, seed=0).clamp(0, 1))


def test_metrics_equal_the_core_functions_on_pixel_features():
    from genlab.data import DataConfig, load_data

    ds = load_data(DataConfig(name="digits"))
    real = ds.as_float(ds.test.x).flatten(1).double().numpy()
    fake = ds.as_float(ds.train.x).flatten(1).double().numpy()
    r = compute_metrics("digits:test", "digits:train", metrics=("fid", "mmd"), extractor="pixels", n=None)
    assert r["n_real"] == 360
    assert r["fid"] == pytest.approx(core.frechet_distance(real, fake), rel=1e-9)
    assert r["mmd2"] == pytest.approx(core.mmd_test(real, fake, seed=0)["mmd2"], rel=1e-9)
    assert 0.0 <= r["mmd_p_value"] <= 1.0


def test_features_are_cached_by_content(tmp_path, monkeypatch):
    import genlab.metrics.extractors as E

    first = compute_metrics("digits:test", "digits:train", metrics=("fid",), extractor="pixels", n=100)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2

    def boom(*a, **k):
        raise AssertionError("features recomputed despite the cache")

    ext = E.get_extractor("pixels")
    monkeypatch.setattr(type(ext), "features", boom)
    again = compute_metrics("digits:test", "digits:train", metrics=("fid",), extractor="pixels", n=100)
    assert again["fid"] == first["fid"]
    with pytest.raises(AssertionError):  # other images: another key, so features are computed
        compute_metrics("digits:test", "digits:train", metrics=("fid",), extractor="pixels", n=101)


def test_cli_json_and_errors(capsys):
    assert main(["metrics", "--real", "digits:test", "--fake", "digits:train", "--extractor", "pixels",
                 "--metrics", "fid,kid,pr", "--n", "200", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"fid", "kid_mean", "precision", "recall", "density", "coverage"} <= set(res)
    for argv, word in ((["--metrics", "fid,fdi"], "fdi"), (["--metrics", "is"], "classifier"),
                       (["--n", "1"], "--n")):
        assert main(["metrics", "--real", "digits:test", "--fake", "digits:train", "--extractor", "pixels", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0]
    assert main(["metrics", "--real", "digits:val", "--fake", "digits:train", "--extractor", "pixels"]) == 2
    assert "NAME:SPLIT" in capsys.readouterr().err


def test_eval_adds_sample_metrics_only_where_a_classifier_judges_them(vae_run, capsys):
    # digits has no shipped classifier: the VAE's eval is the likelihood family alone
    assert main(["eval", str(vae_run.path), "--json"]) == 0
    assert "fid" not in json.loads(capsys.readouterr().out)


@pytest.mark.data
def test_eval_of_an_mnist_vae_reports_fid_is_and_modes(data_root, tmp_path, capsys):
    import genlab

    run = genlab.train("vae", "mnist", data_root=str(data_root), out=tmp_path / "v", steps=20,
                       set={"hidden": [64], "latent": 4, "data.limit": 2000})
    assert main(["eval", str(run.path), "--json", "--samples", "300"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["extractor"] == "mnist-cnn" and res["n_samples"] == 300
    assert math.isfinite(res["fid"]) and res["fid"] > 0
    assert 1.0 <= res["is_mean"] <= 10.0 and 0 <= res["modes_hit"] <= 10
    assert main(["eval", str(run.path), "--json", "--samples", "0"]) == 0
    assert "fid" not in json.loads(capsys.readouterr().out)
