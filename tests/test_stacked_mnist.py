"""stacked-mnist: the data set (three MNIST digits as RGB channels, 1000 modes) and its mode
coverage score (VEEGAN / PacGAN protocol)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.data import DataConfig, load_data
from genlab.data.stacked import N_TEST, N_TRAIN, stack_digits
from genlab.errors import GenlabError
from genlab.metrics.modes import stacked_mnist_coverage


def _write_fake_mnist(root, n_train=50, n_test=20):
    """IDX files whose image k is filled with the value 10 * label (so the digit is readable)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = np.repeat(10 * y, 28 * 28).reshape(n, 28, 28).astype(np.uint8)
        for name, a in ((f"{split}-images-idx3-ubyte", x), (f"{split}-labels-idx1-ubyte", y)):
            head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
            (raw / name).write_bytes(head + a.tobytes())


class ValueClassifier:
    """A stand-in digit classifier: predicts round(10 * mean pixel value) with confidence 0.95,
    except for images whose top-left pixel is 1 (confidence 0.5)."""

    def features_and_logits(self, x):
        d = (x.mean((1, 2, 3)) * 10).round().long().clamp(0, 9)
        p = torch.full((x.shape[0], 10), 0.05 / 9)
        p[torch.arange(x.shape[0]), d] = 0.95
        low = x[:, 0, 0, 0] == 1
        p[low] = 0.5 / 9
        p[low, d[low]] = 0.5
        return torch.zeros(x.shape[0], 1), p.log()


def _digits_image(a, b, c):
    return torch.stack([torch.full((28, 28), v / 10) for v in (a, b, c)])


def test_stack_digits_labels_name_the_channels():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 30)
    x = (np.arange(30, dtype=np.uint8)[:, None, None, None] * np.ones((1, 1, 4, 4), np.uint8))  # image i has value i
    imgs, modes = stack_digits(x, y, 200, np.random.default_rng(2))
    assert imgs.shape == (200, 3, 4, 4) and imgs.dtype == np.uint8
    src = imgs[:, :, 0, 0].astype(int)  # which source image fills each channel
    np.testing.assert_array_equal(modes, 100 * y[src[:, 0]] + 10 * y[src[:, 1]] + y[src[:, 2]])
    assert (imgs == imgs[:, :, :1, :1]).all()  # channels are whole source images


def test_stacked_mnist_data_set_from_idx_files(tmp_path):
    _write_fake_mnist(tmp_path)
    cfg = DataConfig(name="stacked-mnist", root=str(tmp_path))
    d = load_data(cfg)
    assert d.shape == (3, 28, 28) and len(d.train) == N_TRAIN and len(d.test) == N_TEST
    assert len(d.classes) == 1000 and d.value_range == (0.0, 1.0)
    x, y = d.train.x[:500], d.train.y[:500]
    digits = x[:, :, 0, 0].long() // 10  # the fake digits are readable from the pixel values
    assert torch.equal(y, 100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2])
    again = load_data(cfg)
    assert torch.equal(again.train.x[:100], d.train.x[:100])  # fixed seed: the same images every load
    small = load_data(DataConfig(name="stacked-mnist", root=str(tmp_path), limit=64))
    assert len(small.train) == 64 and torch.equal(small.train.x, d.train.x[:64])


def test_stacked_mnist_missing_files_name_the_folder(tmp_path):
    from genlab.errors import DataError

    with pytest.raises(DataError, match="MNIST/raw"):
        load_data(DataConfig(name="stacked-mnist", root=str(tmp_path)))


def test_coverage_counts_modes_and_kl_against_a_direct_computation():
    triples = [(1, 2, 3)] * 5 + [(9, 9, 9)] * 3 + [(0, 0, 7)] * 2
    x = torch.stack([_digits_image(*t) for t in triples])
    x[-1, 0, 0, 0] = 1.0  # one unconfident channel: the sample is not high quality
    r = stacked_mnist_coverage(x, ValueClassifier())
    assert r["modes"] == 3 and r["num_modes"] == 1000 and r["n"] == 10
    q = np.array([0.5, 0.3, 0.2])
    assert r["kl_to_uniform"] == pytest.approx(float((q * np.log(q * 1000)).sum()), rel=1e-12)
    assert r["high_quality"] == pytest.approx(0.9)
    assert r["modes_high_quality"] == 3  # (0, 0, 7) keeps one confident sample
    # channel histograms: red 1 x5, 9 x3, 0 x2
    h = np.array([0.5, 0.3, 0.2])
    assert r["channel_kl"][0] == pytest.approx(float((h * np.log(h * 10)).sum()))


def test_coverage_of_all_modes_equally_is_zero_kl_and_of_one_mode_is_log_1000():
    x = torch.stack([_digits_image(m // 100, m // 10 % 10, m % 10) for m in range(1000)])
    r = stacked_mnist_coverage(x, ValueClassifier(), batch=300)
    assert r["modes"] == 1000 and r["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert r["channel_kl"] == pytest.approx([0.0] * 3, abs=1e-12)
    r = stacked_mnist_coverage(x[:1].expand(40, -1, -1, -1), ValueClassifier())
    assert r["modes"] == 1 and r["kl_to_uniform"] == pytest.approx(math.log(1000))


@pytest.mark.parametrize("bad, needle", [(torch.zeros(4, 1, 28, 28), "N, 3, H, W"),
                                         (torch.full((2, 3, 28, 28), float("nan")), "NaN")])
def test_coverage_rejects_bad_samples(bad, needle):
    with pytest.raises(GenlabError, match=needle):
        stacked_mnist_coverage(bad, ValueClassifier())


def test_real_stacked_test_images_are_scored_by_their_labels(data_root):
    """The shipped mnist-cnn classifies the real stacked test images: the predicted modes agree
    with the true ones (about 0.99^3 of them), and every mode of 1000 is hit by 10000 images."""
    from genlab.metrics.extractors import get_extractor

    d = load_data(DataConfig(name="stacked-mnist", root=str(data_root), limit=64))
    x, y = d.eval_inputs("test")
    x, y = x[:3000], y[:3000]
    ext = get_extractor("mnist-cnn")
    pred = [ext.features_and_logits(x[:, c:c + 1].contiguous())[1].argmax(1) for c in range(3)]
    agree = (100 * pred[0] + 10 * pred[1] + pred[2] == y).float().mean().item()
    assert agree > 0.96
    r = stacked_mnist_coverage(x, ext)
    q = np.bincount(y.numpy(), minlength=1000) / len(y)
    direct_kl = float((q[q > 0] * np.log(q[q > 0] * 1000)).sum())
    assert abs(r["kl_to_uniform"] - direct_kl) < 0.05 and abs(r["modes"] - int((q > 0).sum())) <= 20


# --- dcgan on stacked-mnist: the benchmark's tuned set-up for unset fields, explicit values win --
def test_dcgan_on_stacked_mnist_gets_the_tuned_set_up_for_unset_fields(tmp_path, capsys):
    import json

    import genlab
    from genlab.train.engine import TrainConfig
    from genlab.models.gans.dcgan import DCGAN
    from genlab.models.gans.gan import STACKED_MODEL_DEFAULTS, STACKED_TRAIN_DEFAULTS
    from genlab.run import new_run_config

    _, t, _, _ = new_run_config("dcgan", "stacked-mnist", None, [])
    assert (t.batch_size, t.steps) == (128, 16000) == tuple(STACKED_TRAIN_DEFAULTS.values())
    _, t, _, _ = new_run_config("dcgan", "stacked-mnist", None, [("train.batch_size", 32)], cli={"epochs": 2})
    assert (t.batch_size, t.epochs, t.steps) == (32, 2, TrainConfig().steps)  # given: kept; a given length drops the default
    for model, data in (("cdcgan", "stacked-mnist"), ("dcgan", "mnist"), ("dcgan", "fashion-mnist")):
        _, t, _, _ = new_run_config(model, data, None, [])
        assert (t.batch_size, t.steps) == (TrainConfig().batch_size, TrainConfig().steps), (model, data)
    _write_fake_mnist(tmp_path)
    genlab.train("dcgan", "stacked-mnist", data_root=str(tmp_path), out=tmp_path / "r", steps=1, device="cpu",
                 set={"r1": 0.0, "g_width": 8, "d_width": 8, "data.limit": 64}, evaluate_at_end=False)
    err = capsys.readouterr().err
    got = json.loads((tmp_path / "r" / "config.json").read_text())["model_config"]
    assert got["r1"] == 0.0 and " r1=" not in err  # given: kept, and not named as filled
    for k in ("pack", "r1_every", "ema"):
        assert got[k] == STACKED_MODEL_DEFAULTS[k] and f"{k}=" in err, k
    assert "dcgan on stacked-mnist" in err and "batch_size=128" in err
    # another image data set: the class defaults, no message
    assert DCGAN.prepare_config({}, type("D", (), {"name": "mnist"})()) == ({}, None)
    assert genlab.create_model("dcgan", shape=(3, 28, 28)).config.pack == 1
