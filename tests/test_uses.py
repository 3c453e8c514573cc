"""genlab.uses and its commands (encode, classify, embed, denoise, anomaly): each result is checked
against an independent computation in the test, on tiny models trained a few steps on digits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_MLP, train_tiny

import genlab
from genlab import uses
from genlab.cli import main
from genlab.data import DataConfig, load_data
from genlab.errors import ConfigError, DataError
from test_cli import assert_one_line_error, run_cli  # noqa: E402  (the CLI tests' helpers)


def digits_test_x():
    ds = load_data(DataConfig(name="digits"))
    return ds, ds.test.x.float() / 16, ds.test.y.numpy()


@pytest.fixture(scope="module")
def ae8(tmp_path_factory):
    """An MLP autoencoder with an 8-d code, trained long enough for its codes to carry the class."""
    return train_tiny("ae", tmp_path_factory.mktemp("uses") / "ae8", steps=150, set={"latent": 8})


@pytest.fixture(scope="module")
def per_class(tmp_path_factory):
    """Method II on digits: ten tiny autoencoders, one per class."""
    out = tmp_path_factory.mktemp("uses") / "pc"
    res = uses.per_class_autoencoders("ae", "digits", dict(TINY_MLP), out=out, steps=60, device="cpu")
    return out, res


# --- the class filter of the data config -------------------------------------------------------
def test_data_classes_keeps_those_classes_in_every_split_with_their_labels():
    full = load_data(DataConfig(name="digits"))
    ds = load_data(DataConfig(name="digits", classes=[3, 7]))
    for s_full, s in ((full.train, ds.train), (full.test, ds.test)):
        keep = (s_full.y == 3) | (s_full.y == 7)
        assert torch.equal(s.x, s_full.x[keep]) and torch.equal(s.y, s_full.y[keep])
    # the limit picks the first N training images, then the filter takes a class among them
    ds = load_data(DataConfig(name="digits", limit=100, classes=[0]))
    assert torch.equal(ds.train.x, full.train.x[:100][full.train.y[:100] == 0])


@pytest.mark.parametrize("classes,needle", [([-1], "classes"), ([2, 2], "classes")])
def test_data_classes_validation(classes, needle):
    from genlab.config import from_dict

    with pytest.raises(ConfigError) as e:
        from_dict(DataConfig, {"name": "digits", "classes": classes})
    assert needle in str(e.value)


def test_data_classes_absent_class_names_it():
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(name="digits", classes=[42]))
    assert "42" in str(e.value) and "data.classes" in str(e.value)


# --- codes and method I ------------------------------------------------------------------------
def test_codes_equal_model_encode(ae_run):
    ds, x, y = digits_test_x()
    z, labels = uses.codes(ae_run.model, ae_run.data(), "test", batch_size=7)  # batches of 7: joins are right
    with torch.no_grad():
        expected = ae_run.model.encode(x).numpy()
    assert z.shape == (360, TINY_MLP["latent"]) and z.dtype == np.float32
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, y)


def test_vae_codes_are_the_posterior_mean(vae_run):
    _, x, _ = digits_test_x()
    z, _ = uses.codes(vae_run.model, vae_run.data(), "test")
    with torch.no_grad():
        mu = vae_run.model.posterior(x)[0].numpy()
    np.testing.assert_allclose(z, mu, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("classifier", ["logreg", "svm"])
def test_classify_codes_matches_sklearn_on_the_same_codes(ae8, classifier):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    res = uses.classify_codes(ae8, classifier=classifier)
    ds = ae8.data()
    with torch.no_grad():
        ztr = ae8.model.encode(ds.train.x.float() / 16).numpy()
        zte = ae8.model.encode(ds.test.x.float() / 16).numpy()
    clf = LogisticRegression(max_iter=2000) if classifier == "logreg" else LinearSVC(max_iter=10000, random_state=0)
    ref = make_pipeline(StandardScaler(), clf).fit(ztr, ds.train.y.numpy()).score(zte, ds.test.y.numpy())
    assert res["accuracy"] == pytest.approx(ref, abs=1 / 360 + 1e-12)  # at most one test image apart
    assert (res["n_train"], res["n_test"], res["code_size"], res["classifier"]) == (1437, 360, 8, classifier)
    assert res["converged"] and res["accuracy"] > 0.5  # codes of an 8-d autoencoder carry the digit


def test_classify_codes_with_a_bare_model_needs_data(ae_run):
    with pytest.raises(ConfigError):
        uses.classify_codes(ae_run.model)
    with pytest.raises(ConfigError) as e:
        uses.classify_codes(ae_run, classifier="forest")
    assert "forest" in str(e.value)


def test_fit_score_drops_unlabelled_and_subsamples():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    y_missing = y.copy()
    y_missing[:50] = -1
    res = uses.fit_score(x, y_missing, x, y)
    assert res["n_train"] == 150 and res["accuracy"] > 0.9
    assert uses.fit_score(x, y, x, y, max_train=40)["n_train"] == 40


# --- method II ----------------------------------------------------------------------------------
def test_per_class_decision_is_the_argmin_of_reconstruction_errors(per_class):
    out, res = per_class
    ds, x, y = digits_test_x()
    errors = []
    for c in range(10):
        run = genlab.load_run(res["runs"][c])
        assert run.data_config.classes == [c]
        with torch.no_grad():
            errors.append(((run.model.reconstruct(x).double() - x.double()) ** 2).flatten(1).sum(1).numpy())
    errors = np.stack(errors, 1)
    np.testing.assert_allclose(res["errors"], errors, rtol=1e-6)
    np.testing.assert_array_equal(res["pred"], errors.argmin(1))
    np.testing.assert_array_equal(res["y"], y)
    assert res["accuracy"] == pytest.approx(float((errors.argmin(1) == y).mean()))
    conf = np.array(res["confusion"])
    assert conf.sum() == 360 and np.trace(conf) == round(res["accuracy"] * 360)
    np.testing.assert_array_equal(conf.sum(1), np.bincount(y, minlength=10))


def test_per_class_accuracy_is_well_above_chance(per_class):
    _, res = per_class
    assert res["accuracy"] > 0.6  # chance: 0.1


def test_per_class_trains_each_class_on_its_own_images(per_class):
    out, res = per_class
    full = load_data(DataConfig(name="digits"))
    for c in range(10):
        ds = genlab.load_run(res["runs"][c]).data()
        assert torch.equal(ds.train.x, full.train.x[full.train.y == c])
        assert res["n_train"][c] == int((full.train.y == c).sum())


def test_per_class_index_reopens_and_rescoring_agrees(per_class):
    out, res = per_class
    index = json.loads((out / "index.json").read_text())
    assert index["classes"] == list(range(10)) and index["runs"]["3"] == "class-3"
    assert index["accuracy"] == res["accuracy"] and index["confusion"] == res["confusion"]
    again = uses.score_per_class(out, device="cpu")
    np.testing.assert_array_equal(again["pred"], res["pred"])


def test_per_class_refuses_an_existing_folder_and_a_loaded_dataset(per_class):
    out, _ = per_class
    with pytest.raises(ConfigError) as e:
        uses.per_class_autoencoders("ae", "digits", dict(TINY_MLP), out=out, steps=1)
    assert str(out) in str(e.value)
    with pytest.raises(ConfigError):
        uses.per_class_autoencoders("ae", load_data(DataConfig(name="digits")), out=out / "x", steps=1)


# --- AE vs PCA ---------------------------------------------------------------------------------
def test_pca_mse_equals_a_direct_svd_reconstruction(ae8):
    res = uses.pca_vs_autoencoder(ae8)
    ds = ae8.data()
    xtr = (ds.train.x.double() / 16).flatten(1).numpy()
    xte = (ds.test.x.double() / 16).flatten(1).numpy()
    mean = xtr.mean(0)
    _, _, vt = np.linalg.svd(xtr - mean, full_matrices=False)
    v = vt[:8].T
    rec = (xte - mean) @ v @ v.T + mean
    assert res["pca_mse"] == pytest.approx(float(((rec - xte) ** 2).mean()), rel=1e-4)
    with torch.no_grad():
        ae_rec = ae8.model.reconstruct(torch.from_numpy(xte).float().view(-1, 1, 8, 8)).double().flatten(1).numpy()
    assert res["ae_mse"] == pytest.approx(float(((ae_rec - xte) ** 2).mean()), rel=1e-5)
    assert [r["method"] for r in res["table"]] == ["autoencoder (ae)", "pca"]
    assert [r["code_size"] for r in res["table"]] == [8, 8]
    # projections: the PCA panel holds the first two principal components of the pixels (up to sign)
    p = res["projection"]["pca"]
    direct = (xte - mean) @ vt[:2].T
    np.testing.assert_allclose(np.abs(p), np.abs(direct), rtol=1e-3, atol=1e-4)
    assert res["projection"]["autoencoder"].shape == (360, 2)


def test_a_2d_code_is_plotted_as_is(tmp_path):
    run = train_tiny("ae", tmp_path / "ae2", steps=5, set={"latent": 2})
    res = uses.pca_vs_autoencoder(run)
    z, _ = uses.codes(run.model, run.data(), "test")
    np.testing.assert_allclose(res["projection"]["autoencoder"], z, rtol=1e-6)


# --- anomaly scores and denoising ----------------------------------------------------------------
def test_anomaly_scores_rank_an_outlier_above_clean_images(ae8):
    _, x, _ = digits_test_x()
    g = torch.Generator().manual_seed(0)
    outlier = torch.rand(1, 1, 8, 8, generator=g)  # uniform noise: nothing like a digit
    batch = torch.cat([x[:20], outlier])
    s = uses.anomaly_scores(ae8.model, batch, batch_size=6)
    with torch.no_grad():
        direct = ((ae8.model.reconstruct(batch) - batch) ** 2).flatten(1).sum(1).double().numpy()
    np.testing.assert_allclose(s["sse"], direct, rtol=1e-5)
    np.testing.assert_allclose(s["mse"], direct / 64, rtol=1e-5)
    assert s["sse"].argmax() == 20
    assert "sse_corrupted" not in s


def test_denoising_model_scores_and_denoise(tmp_path):
    run = genlab.train("denoising-ae", "digits", out=tmp_path / "dae", steps=30, device="cpu",
                       set={"hidden": [32], "latent": 8, "level": 0.3})
    m = run.model
    _, x, _ = digits_test_x()
    s = uses.anomaly_scores(m, x[:30])
    with torch.no_grad():
        plain = ((m.reconstruct(x[:30]) - x[:30]) ** 2).flatten(1).sum(1).double().numpy()
        xn = m.corrupt(x[:30], generator=torch.Generator().manual_seed(0))
        corrupted = ((m.reconstruct(xn) - x[:30]) ** 2).flatten(1).sum(1).double().numpy()
    np.testing.assert_allclose(s["sse"], plain, rtol=1e-5)
    np.testing.assert_allclose(s["sse_corrupted"], corrupted, rtol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(uses.denoise(m, xn, batch_size=7).numpy(), m.denoise(xn).numpy(), rtol=1e-6)


def test_read_images_resizes_and_maps_to_the_value_range(tmp_path):
    from PIL import Image

    a = np.zeros((16, 16), np.uint8)
    a[:, 8:] = 255
    Image.fromarray(a).save(tmp_path / "half.png")
    Image.fromarray(np.stack([a] * 3, -1)).save(tmp_path / "rgb.png")
    x = uses.read_images([tmp_path / "half.png", tmp_path / "rgb.png"], (1, 8, 8), (0.0, 1.0))
    assert x.shape == (2, 1, 8, 8)
    np.testing.assert_allclose(x[0, 0, :, :3], 0, atol=1e-6)  # away from the edge, which the filter blends
    np.testing.assert_allclose(x[0, 0, :, 5:], 1, atol=1e-6)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    np.testing.assert_allclose(x[1], x[0], atol=1 / 255)
    y = uses.read_images([tmp_path / "half.png"], (3, 8, 8), (-1.0, 1.0))
    assert y.shape == (1, 3, 8, 8) and float(y.min()) == -1.0 and float(y.max()) == 1.0
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        uses.read_images([tmp_path / "bad.png"], (1, 8, 8))
    assert "bad.png" in str(e.value)


# --- the commands, end to end ------------------------------------------------------------------
def test_encode_cli_writes_z_and_y(ae_run, tmp_path, capsys):
    f = tmp_path / "codes.npz"
    rc, out, _ = run_cli(capsys, "encode", ae_run.path, "--out", f)
    assert rc == 0 and out.strip() == str(f)
    d = np.load(f)
    z, _ = uses.codes(ae_run.model, ae_run.data(), "test")
    np.testing.assert_array_equal(d["z"], z)
    np.testing.assert_array_equal(d["y"], ae_run.data().test.y.numpy())
    rc, _, _ = run_cli(capsys, "encode", ae_run.path, "--split", "train", "--out", tmp_path / "tr.npz")
    assert rc == 0 and np.load(tmp_path / "tr.npz")["z"].shape == (1437, TINY_MLP["latent"])


def test_classify_cli_codes_json_and_text(ae8, capsys):
    rc, out, _ = run_cli(capsys, "classify", ae8.path, "--json")
    assert rc == 0 and len(out.strip().splitlines()) == 1
    res = json.loads(out)
    assert res["accuracy"] == uses.classify_codes(ae8)["accuracy"]
    assert res["method"] == "codes" and res["classifier"] == "logreg"
    rc, out, _ = run_cli(capsys, "classify", ae8.path, "--classifier", "svm")
    assert rc == 0 and len(out.strip().splitlines()) == 1 and "test accuracy" in out and "svm" in out


def test_classify_cli_per_class(tmp_path, capsys):
    out_dir = tmp_path / "pc"
    rc, out, err = run_cli(capsys, "classify", "--per-class", "ae", "--data", "digits", "--steps", 3, "--out", out_dir,
                           "--set", "hidden=[8]", "latent=2", "data.classes=[0,1]", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["classes"] == [0, 1] and res["n_test"] == 72 and 0 <= res["accuracy"] <= 1
    assert res["model_config"]["hidden"] == [8] and res["train"]["steps"] == 3
    assert sorted(p.name for p in out_dir.iterdir()) == ["class-0", "class-1", "index.json"]


def test_embed_cli_prints_the_table_and_writes_a_png(ae_run, tmp_path, capsys):
    from PIL import Image

    f = tmp_path / "e.png"
    rc, out, _ = run_cli(capsys, "embed", ae_run.path, "--out", f)
    assert rc == 0 and out.strip().splitlines()[-1] == str(f)
    assert "autoencoder (ae)" in out and "pca" in out
    with Image.open(f) as im:
        assert im.format == "PNG" and im.size[0] > 400
    rc, out, _ = run_cli(capsys, "embed", ae_run.path, "--out", f, "--json")
    res = json.loads(out)
    assert res["pca_mse"] == pytest.approx(uses.pca_vs_autoencoder(ae_run)["pca_mse"])


def test_denoise_cli_png_in_png_out(ae_run, tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(src / "a.png")
    Image.fromarray((np.random.default_rng(1).random((8, 8, 3)) * 255).astype(np.uint8)).save(src / "b.jpg")
    rc, out, _ = run_cli(capsys, "denoise", ae_run.path, src / "a.png", src / "b.jpg", "--out", tmp_path / "o")
    assert rc == 0
    assert out.split() == [str(tmp_path / "o" / "a.png"), str(tmp_path / "o" / "b.png")]
    x = uses.read_images([src / "a.png"], (1, 8, 8))
    expected = (uses.denoise(ae_run.model, x)[0, 0].numpy() * 255 + 0.5).astype(np.uint8)
    with Image.open(tmp_path / "o" / "a.png") as im:
        assert im.size == (8, 8) and im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), expected)


def test_anomaly_cli_lists_the_highest_first(ae_run, ae8, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "anomaly", ae_run.path, "--top", 5, "--json")
    assert rc == 0
    res = json.loads(out)
    s = uses.anomaly_scores(ae_run.model, ae_run.data().eval_inputs("test")[0])["sse"]
    assert res["n"] == 360 and [it["index"] for it in res["items"]] == list(np.argsort(-s)[:5])
    assert [it["sse"] for it in res["items"]] == sorted((it["sse"] for it in res["items"]), reverse=True)
    from PIL import Image

    _, x, _ = digits_test_x()
    for i in range(3):  # three test digits as PNG files (exact: 0..16 maps onto 0..255 by 255/16)
        Image.fromarray((x[i, 0].numpy() * 255 + 0.5).astype(np.uint8)).save(tmp_path / f"digit{i}.png")
    Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "noise.png")
    files = [tmp_path / "digit0.png", tmp_path / "noise.png", tmp_path / "digit1.png", tmp_path / "digit2.png"]
    rc, out, _ = run_cli(capsys, "anomaly", ae8.path, "--images", *files, "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["items"][0]["file"] == str(tmp_path / "noise.png") and res["n"] == 4


# --- bad input: exit 2, one line ---------------------------------------------------------------
@pytest.mark.parametrize("cmd", [["encode", "{run}", "--out", "{tmp}/c.npz"], ["classify", "{run}"],
                                 ["embed", "{run}"], ["denoise", "{run}", "{tmp}/x.png", "--out", "{tmp}/o"],
                                 ["anomaly", "{run}"]])
def test_missing_run_directory(tmp_path, capsys, cmd):
    argv = [a.format(run=tmp_path / "absent", tmp=tmp_path) for a in cmd]
    rc, _, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, tmp_path / "absent")


def test_unreadable_image(ae_run, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    rc, out, err = run_cli(capsys, "denoise", ae_run.path, tmp_path / "bad.png", "--out", tmp_path / "o")
    assert_one_line_error(rc, err, tmp_path / "bad.png")
    assert out == "" and not (tmp_path / "o").exists()
    rc, _, err = run_cli(capsys, "anomaly", ae_run.path, "--images", tmp_path / "missing.png")
    assert_one_line_error(rc, err, tmp_path / "missing.png")


@pytest.mark.parametrize("argv,needle", [
    (["--classifier", "forest"], "forest"),
    (["--epochs", "3"], "--epochs"),
    (["--per-class", "ae", "--data", "digits"], "--out"),
    (["--max-train", "0"], "--max-train"),
])
def test_classify_bad_flags(ae_run, capsys, argv, needle):
    run = [] if "--per-class" in argv else [ae_run.path]
    rc, _, err = run_cli(capsys, "classify", *run, *argv)
    assert_one_line_error(rc, err, needle)


def test_classify_needs_a_run_or_per_class(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "classify")
    assert_one_line_error(rc, err, "--per-class")
    rc, _, err = run_cli(capsys, "classify", "--per-class", "nosuchmodel", "--out", tmp_path / "pc")
    assert_one_line_error(rc, err, "nosuchmodel")
    assert not (tmp_path / "pc").exists()


def test_encode_other_data_of_another_shape(ae_run, tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 5, 5), np.uint8), y=np.arange(10) % 2)
    rc, _, err = run_cli(capsys, "encode", ae_run.path, "--data", f"npz:{tmp_path / 'd.npz'}", "--out", tmp_path / "c.npz")
    assert_one_line_error(rc, err, "shape")


@pytest.mark.parametrize("cmd", ["encode", "classify", "embed", "denoise", "anomaly"])
def test_help_exits_0(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


# --- the benchmark's quick version ---------------------------------------------------------------
@pytest.mark.data
def test_ae_classification_quick(data_root, capsys):
    rc = main(["bench", "ae-classification", "--quick", "--json", "--data-root", str(data_root),
               "--set", "datasets=mnist"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    r = res["results"]["mnist"]
    assert res["quick"] and res["limit"] == 2000 and r["n_train"] == 2000 and r["n_test"] == 10000
    # even one epoch on 2000 images: every method far above chance (0.1)
    for key in ("raw_logreg", "method_1", "method_2"):
        assert r[key]["accuracy"] > 0.5, (key, r[key])
    assert sum(r["method_2"]["n_train_per_class"].values()) == 2000
    assert len(res["table"]) == 3 and res["protocol"]
