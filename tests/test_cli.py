"""The `genlab` command line, end to end on digits with tiny models, and its error contract:
bad input exits with status 2 and one line on stderr that names the problem."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from genlab.cli import main
from genlab.registry import MODELS

TINY = ["--set", "hidden=[32]", "latent=4"]


def run_cli(capsys, *argv):
    capsys.readouterr()  # drop anything printed before
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0]
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


# --- happy paths ----------------------------------------------------------------------------
def test_train_prints_the_run_directory_last(tmp_path, capsys):
    out_dir = tmp_path / "run"
    rc, out, err = run_cli(capsys, "train", "ae", "--data", "digits", "--steps", 5, "--out", out_dir, "-q", *TINY)
    assert rc == 0
    assert out.strip().splitlines()[-1] == str(out_dir)
    assert (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file()
    assert "test:" in err  # the summary goes to stderr, not stdout


def test_eval_json_ae(ae_run, capsys):
    rc, out, _ = run_cli(capsys, "eval", ae_run.path, "--json")
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert {"mse", "sse", "bce", "psnr"} <= set(res) and "nelbo" not in res
    assert res["n"] == 360
    assert res["sse"] == pytest.approx(res["mse"] * 64, rel=1e-9)  # digits have 8 x 8 pixels
    # psnr is the mean of per-image 10 log10(1 / mse_i): by Jensen at least 10 log10(1 / mean mse)
    assert res["psnr"] >= 10 * math.log10(1 / res["mse"]) - 1e-9
    assert res["bce"] > 0


def test_eval_values_match_a_direct_computation(ae_run, capsys):
    rc, out, _ = run_cli(capsys, "eval", ae_run.path, "--json")
    res = json.loads(out)
    import torch

    m, ds = ae_run.model, ae_run.data()
    x = ds.test.x.float() / 16
    with torch.no_grad():
        r = m.reconstruct(x).double()
    x = x.double()
    err = ((r - x) ** 2).flatten(1)
    assert res["mse"] == pytest.approx(err.mean().item(), rel=1e-5)
    assert res["psnr"] == pytest.approx((10 * torch.log10(1 / err.mean(1))).mean().item(), rel=1e-5)
    p = r.clamp(1e-7, 1 - 1e-7)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean()
    assert res["bce"] == pytest.approx(bce.item(), rel=1e-5)


def test_eval_json_vae_with_iwae(vae_run, capsys):
    rc, out, _ = run_cli(capsys, "eval", vae_run.path, "--json", "--iwae-k", 200)
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert {"mse", "sse", "bce", "psnr", "nelbo", "kl", "nll_iwae"} <= set(res)
    assert res["iwae_k"] == 200
    assert res["sse"] == pytest.approx(res["mse"] * 64, rel=1e-9)
    assert res["kl"] >= 0
    # -IWAE_k is a tighter bound than the negative ELBO (both averaged over 360 images)
    assert res["nll_iwae"] <= res["nelbo"] + 0.1
    # and without --iwae-k there is no nll_iwae
    rc, out, _ = run_cli(capsys, "eval", vae_run.path, "--json")
    assert "nll_iwae" not in json.loads(out)


def test_eval_plain_text(vae_run, capsys):
    rc, out, _ = run_cli(capsys, "eval", vae_run.path)
    assert rc == 0
    table = dict(line.split() for line in out.strip().splitlines())
    assert {"mse", "nelbo", "kl", "n"} <= set(table)
    assert int(table["n"]) == 360


def test_sample_npz(vae_run, tmp_path, capsys):
    f = tmp_path / "x.npz"
    rc, out, _ = run_cli(capsys, "sample", vae_run.path, "--n", 10, "--seed", 3, "--out", f)
    assert rc == 0 and out.strip() == str(f)
    x = np.load(f)["x"]
    assert x.shape == (10, 1, 8, 8) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    # the same seed gives the same samples, another seed others
    run_cli(capsys, "sample", vae_run.path, "--n", 10, "--seed", 3, "--out", tmp_path / "y.npz")
    run_cli(capsys, "sample", vae_run.path, "--n", 10, "--seed", 4, "--out", tmp_path / "z.npz")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["x"], x)
    assert not np.array_equal(np.load(tmp_path / "z.npz")["x"], x)


def test_sample_png(vae_run, tmp_path, capsys):
    from PIL import Image

    f = tmp_path / "grid.png"
    rc, _, _ = run_cli(capsys, "sample", vae_run.path, "--n", 10, "--out", f)
    assert rc == 0
    with Image.open(f) as im:
        assert im.format == "PNG"
        # 10 images of 8x8 in ceil(sqrt(10)) = 4 columns and 3 rows, 1-pixel padding, enlarged 4x
        assert im.size == (4 * (4 * 9 + 1), 4 * (3 * 9 + 1))


def test_sample_from_an_autoencoder_exits_2(ae_run, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "sample", ae_run.path, "--out", tmp_path / "x.npz")
    assert_one_line_error(rc, err, "ae")
    assert out == "" and not (tmp_path / "x.npz").exists()


def test_list_models_names_every_registered_model(capsys):
    rc, out, _ = run_cli(capsys, "list", "models", "-v")
    assert rc == 0
    first_words = {line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")}
    assert first_words == set(MODELS.names())
    assert "    latent=" in out


@pytest.mark.parametrize("cmd", [[], ["list"], ["train"], ["eval"], ["sample"]])
def test_help_exits_0(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_bench_name_help_adds_the_benchmarks_protocol_and_settings(capsys):
    import sys

    with pytest.raises(SystemExit) as e:
        main(["bench", "gan-mixtures", "--help"])
    out = capsys.readouterr().out
    gan_mixtures = sys.modules["gan_mixtures"]  # loaded from benchmarks/ by the bench module
    assert e.value.code == 0 and "usage:" in out
    assert "gan-mixtures: " + gan_mixtures.DESCRIPTION in out
    assert gan_mixtures.__doc__.strip().splitlines()[0] in out
    assert "settings (--set KEY=VALUE): " + ", ".join(gan_mixtures.SETTINGS) in out
    with pytest.raises(SystemExit) as e:  # a misspelt name: one line, with the closest name
        main(["bench", "gan-mixturs", "--help"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert_one_line_error(2, err, "unknown benchmark 'gan-mixturs'", "did you mean 'gan-mixtures'")


# --- errors: exit 2, one line ------------------------------------------------------------------
def test_unknown_model(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "nosuchmodel", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "nosuchmodel")
    assert not (tmp_path / "r").exists()


def test_unknown_set_key(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--out", tmp_path / "r", "--set", "bogus_key=1")
    assert_one_line_error(rc, err, "bogus_key")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("item,name", [("latent=abc", "latent"), ("hidden=400", "hidden"),
                                       ("train.lr=-1", "lr"), ("data.binarize=maybe", "binarize"),
                                       ("noequals", "noequals")])
def test_bad_set_value(tmp_path, capsys, item, name):
    rc, _, err = run_cli(capsys, "train", "ae", "--out", tmp_path / "r", "--set", item)
    assert_one_line_error(rc, err, name)
    assert not (tmp_path / "r").exists()


def test_missing_mnist(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--data", "mnist", "--data-root", tmp_path,
                         "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "mnist", tmp_path / "MNIST" / "raw", "train-images-idx3-ubyte")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cmd", ["eval", "sample"])
def test_not_a_run_directory(tmp_path, capsys, cmd):
    (tmp_path / "plain").mkdir()
    rc, _, err = run_cli(capsys, cmd, tmp_path / "plain")
    assert_one_line_error(rc, err, tmp_path / "plain")
    rc, _, err = run_cli(capsys, cmd, tmp_path / "absent")
    assert_one_line_error(rc, err, tmp_path / "absent")


def test_damaged_config_json(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{not json")
    rc, _, err = run_cli(capsys, "eval", tmp_path / "r")
    assert_one_line_error(rc, err, "config.json")


def test_out_that_already_holds_a_run(ae_run, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--out", ae_run.path, *TINY, "--steps", 1)
    assert_one_line_error(rc, err, ae_run.path, "--resume")


def test_resume_without_a_checkpoint(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--resume")
    assert_one_line_error(rc, err, "--out")
    rc, _, err = run_cli(capsys, "train", "ae", "--resume", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, tmp_path / "r")


def test_malformed_toml(tmp_path, capsys):
    f = tmp_path / "broken.toml"
    f.write_text('[train]\nlr = 0.1\n[train]\nsteps = "\n')
    rc, _, err = run_cli(capsys, "train", "ae", "--config", f, "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "broken.toml")
    assert not (tmp_path / "r").exists()


def test_missing_config_file(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--config", tmp_path / "none.toml", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "none.toml")


def test_conv_model_on_28x28_with_three_layers(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8))
    rc, _, err = run_cli(capsys, "train", "conv-ae", "--data", f"npz:{tmp_path / 'd.npz'}",
                         "--set", "channels=[4,4,4]", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "channels", "28")
    assert not (tmp_path / "r").exists()


def test_eval_options_that_do_not_apply(ae_run, capsys):
    rc, _, err = run_cli(capsys, "eval", ae_run.path, "--iwae-k", 5)
    assert_one_line_error(rc, err, "--iwae-k")
    rc, _, err = run_cli(capsys, "eval", ae_run.path, "--split", "val")
    assert_one_line_error(rc, err, "val_fraction")
    rc, _, err = run_cli(capsys, "eval", ae_run.path, "--iwae-k", -1)
    assert_one_line_error(rc, err, "--iwae-k")


def test_sample_bad_arguments(vae_run, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "sample", vae_run.path, "--out", tmp_path / "x.jpg")
    assert_one_line_error(rc, err, "x.jpg")
    rc, _, err = run_cli(capsys, "sample", vae_run.path, "--n", 0, "--out", tmp_path / "x.npz")
    assert_one_line_error(rc, err, "--n")


def test_usage_errors_exit_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "ae", "--epochs", "2", "--steps", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--steps" in err
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("damage,name", [("weights", "model.safetensors"), ("state", "state.pt")])
def test_damaged_checkpoint_files(ae_run, tmp_path, capsys, damage, name):
    import shutil

    run = tmp_path / "r"
    shutil.copytree(ae_run.path, run)
    (run / name).write_bytes(b"garbage")
    cmd = ["eval", run] if damage == "weights" else ["train", "ae", "--out", run, "--resume", "--steps", 30]
    rc, _, err = run_cli(capsys, *cmd)
    assert_one_line_error(rc, err, run / name)


def test_run_without_weights(ae_run, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_bytes((ae_run.path / "config.json").read_bytes())
    rc, _, err = run_cli(capsys, "eval", tmp_path / "r")
    assert_one_line_error(rc, err, tmp_path / "r" / "model.safetensors")


def test_divergence_exits_2_naming_the_step(tmp_path, capsys):
    x = np.full((30, 4), 1e20, np.float32)
    np.savez(tmp_path / "big.npz", x=x)
    rc, _, err = run_cli(capsys, "train", "ae", "--data", f"npz:{tmp_path / 'big.npz'}", *TINY,
                         "--steps", 3, "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "step 1")


def test_too_few_examples_is_bad_input(tmp_path, capsys):
    """A data file with a single example cannot be split into train and test: that is the
    user's data, so exit 2 with a message, not an internal error (exit 1)."""
    np.savez(tmp_path / "one.npz", x=np.zeros((1, 4), np.float32))
    rc, _, err = run_cli(capsys, "train", "ae", "--data", f"npz:{tmp_path / 'one.npz'}", *TINY,
                         "--steps", 1, "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "one.npz")


def test_command_line_model_wins_over_the_config_file(tmp_path, capsys):
    """`genlab train MODEL --config FILE`: the epilog says the command line wins, so a file
    naming another model must not silently replace MODEL (an error would also be acceptable)."""
    f = tmp_path / "c.toml"
    f.write_text('model = "ae"\n[train]\nsteps = 2\n')
    rc, _, err = run_cli(capsys, "train", "vae", "--config", f, "--out", tmp_path / "r", *TINY, "-q")
    if rc == 2:
        assert_one_line_error(rc, err, "vae")
    else:
        assert rc == 0
        assert json.loads((tmp_path / "r" / "config.json").read_text())["model"] == "vae"


def test_folder_data_with_conv_vae_end_to_end(tmp_path, capsys):
    from PIL import Image

    for cname, color in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / "imgs" / cname).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (10, 12), color).save(tmp_path / "imgs" / cname / f"{i}.png")
    out = tmp_path / "r"
    rc, stdout, _ = run_cli(capsys, "train", "conv-vae", "--data", f"folder:{tmp_path / 'imgs'}", "--steps", 3,
                            "--set", "image_size=8", "channels=[4,8]", "latent=2", "--out", out, "-q")
    assert rc == 0 and stdout.strip().splitlines()[-1] == str(out)
    rc, stdout, _ = run_cli(capsys, "eval", out, "--json", "--iwae-k", 10)
    res = json.loads(stdout)
    assert res["n"] == math.ceil(0.2 * 12)  # the test split of 12 images
    assert res["sse"] == pytest.approx(res["mse"] * 3 * 8 * 8, rel=1e-6)
    rc, stdout, _ = run_cli(capsys, "sample", out, "--n", 5, "--out", tmp_path / "s.npz")
    assert rc == 0 and np.load(tmp_path / "s.npz")["x"].shape == (5, 3, 8, 8)


def test_vector_data_with_gaussian_vae(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(100, 5)).astype(np.float32)
    np.savez(tmp_path / "vec.npz", x=x)
    out = tmp_path / "r"
    rc, _, _ = run_cli(capsys, "train", "vae", "--data", f"npz:{tmp_path / 'vec.npz'}", "--steps", 3,
                       "--set", "decoder=gaussian", "hidden=[8]", "latent=2", "--out", out, "-q")
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    rc, stdout, _ = run_cli(capsys, "eval", out, "--json")
    res = json.loads(stdout)
    assert "bce" not in res  # the data are not in [0, 1]
    assert res["sse"] == pytest.approx(res["mse"] * 5, rel=1e-6)
    lo, hi = cfg["value_range"]
    # the value range is the min and max of the training part (80 of the 100 rows)
    assert x.min() <= lo < hi <= x.max()
    assert np.isin(np.float32(lo), x) and np.isin(np.float32(hi), x)
    assert res["psnr"] >= 10 * math.log10((hi - lo) ** 2 / res["mse"]) - 1e-9
    rc, _, err = run_cli(capsys, "sample", out, "--out", tmp_path / "s.png")
    assert_one_line_error(rc, err, "s.png", ".npz")
    rc, _, _ = run_cli(capsys, "sample", out, "--n", 3, "--out", tmp_path / "s.npz")
    assert rc == 0 and np.load(tmp_path / "s.npz")["x"].shape == (3, 5)


def test_a_run_trained_on_relative_paths_evaluates_from_another_folder(tmp_path, monkeypatch):
    import numpy as np

    import genlab

    (tmp_path / "a" / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a" / "data" / "d.npz", x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8))
    monkeypatch.chdir(tmp_path / "a")
    genlab.train("ae", "npz:data/d.npz", out="run", steps=2, set={"hidden": [8], "latent": 2})
    cfg = json.loads((tmp_path / "a" / "run" / "config.json").read_text())
    assert cfg["data"]["name"] == "npz:" + str(tmp_path / "a" / "data" / "d.npz")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    res = genlab.load_run(tmp_path / "a" / "run").evaluate()
    assert res["n"] == 8  # 20% of 40 test examples


@pytest.mark.parametrize("flag", ["--epochs", "--steps", "--batch-size"])
def test_zero_or_negative_budgets_are_refused(tmp_path, capsys, flag):
    # epochs=0 in a config means "the default"; on the command line 0 is a mistake
    assert main(["train", "ae", flag, "0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert not (tmp_path / "r").exists()


def test_resume_reads_the_model_from_the_run(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "train", "ae", *TINY, "--steps", 2, "--out", tmp_path / "r")
    assert rc == 0
    rc, out, _ = run_cli(capsys, "train", "--out", tmp_path / "r", "--resume", "--steps", 4)
    assert rc == 0 and out.strip().splitlines()[-1] == str(tmp_path / "r")
    assert json.loads((tmp_path / "r" / "eval.json").read_text())["steps"] == 4
    rc, _, err = run_cli(capsys, "train", "--steps", 4)
    assert_one_line_error(rc, err, "MODEL")
