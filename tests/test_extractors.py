"""Feature extractors (genlab.metrics.extractors): shipped weights, accuracy, batching, errors."""
from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from genlab.errors import GenlabError
from genlab.metrics import extractors as ex
from genlab.metrics.extractors import get_extractor, list_extractors

WEIGHT_FILES = ("mnist-cnn.safetensors", "fashion-cnn.safetensors")


def _images(n=20, c=1, h=28, w=28, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def mnist_cnn():
    return get_extractor("mnist-cnn")


# --------------------------------------------------------------------------- shipped weights

def test_shipped_weights_match_sha256sums():
    sums = {}
    for line in (ex.WEIGHTS_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    assert sorted(sums) == sorted(WEIGHT_FILES)
    for name in WEIGHT_FILES:
        path = ex.WEIGHTS_DIR / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sums[name], name
        assert path.stat().st_size < 2_000_000


def test_tampered_weights_give_hash_mismatch(tmp_path, monkeypatch):
    shutil.copytree(ex.WEIGHTS_DIR, tmp_path / "w")
    target = tmp_path / "w" / "mnist-cnn.safetensors"
    expected = hashlib.sha256(target.read_bytes()).hexdigest()
    data = bytearray(target.read_bytes())
    data[-10] ^= 0x01  # flip one bit of a weight
    target.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    monkeypatch.setattr(ex, "WEIGHTS_DIR", tmp_path / "w")
    with pytest.raises(GenlabError) as e:
        get_extractor("mnist-cnn")
    msg = str(e.value)
    assert str(target) in msg and expected in msg and actual in msg
    # a missing file is named too
    target.unlink()
    with pytest.raises(GenlabError, match="mnist-cnn.safetensors is missing"):
        get_extractor("mnist-cnn")


def _accuracy(name, data_root, dataset, n=2000):
    from genlab.data import DataConfig, load_data

    try:
        ds = load_data(DataConfig(name=dataset, root=str(data_root)))
    except GenlabError as e:
        pytest.skip(str(e))
    x, y = ds.as_float(ds.test.x[:n]), ds.test.y[:n]
    return (get_extractor(name).logits(x).argmax(1) == y).float().mean().item()


@pytest.mark.data
def test_mnist_cnn_accuracy(data_root):
    assert _accuracy("mnist-cnn", data_root, "mnist") >= 0.99


@pytest.mark.data
def test_fashion_cnn_accuracy(data_root):
    assert _accuracy("fashion-cnn", data_root, "fashion-mnist") >= 0.91


# --------------------------------------------------------------------------- behaviour

@pytest.mark.parametrize("name", ["mnist-cnn", "fashion-cnn", "pixels"])
def test_features_shape_and_batching_invariance(name):
    x = _images(23)
    whole = get_extractor(name).features(x)
    small = get_extractor(name, batch_size=7).features(x)
    ext = get_extractor(name)
    assert whole.shape == (23, ext.dim if ext.dim else 28 * 28) and whole.dtype == torch.float32
    torch.testing.assert_close(small, whole, rtol=1e-5, atol=1e-5)


def test_cnn_logits_and_features_and_logits(mnist_cnn):
    x = _images(9)
    lg = mnist_cnn.logits(x)
    assert mnist_cnn.dim == 128 and mnist_cnn.num_classes == 10 and lg.shape == (9, 10)
    f2, lg2 = mnist_cnn.features_and_logits(x)
    torch.testing.assert_close(f2, mnist_cnn.features(x))
    torch.testing.assert_close(lg2, lg)
    assert mnist_cnn.features(x[:0]).shape == (0, 128)


def test_cnn_adapts_rgb_and_size(mnist_cnn):
    x = _images(5)
    # RGB with three equal channels is the grey image
    torch.testing.assert_close(mnist_cnn.features(x.repeat(1, 3, 1, 1)), mnist_cnn.features(x))
    assert mnist_cnn.features(_images(4, 3, 32, 32)).shape == (4, 128)
    with pytest.raises(GenlabError, match="mnist-cnn.*channels, got 2"):
        mnist_cnn.features(_images(2, 2))


def test_pixels_equals_flatten():
    x = _images(11, 3, 8, 6)
    ext = get_extractor("pixels", batch_size=4)
    assert torch.equal(ext.features(x), x.flatten(1))
    assert ext.dim == 3 * 8 * 6 and ext.num_classes == 0
    with pytest.raises(GenlabError, match="'pixels' has no classifier"):
        ext.logits(x)


def test_bad_inputs_are_refused(mnist_cnn):
    with pytest.raises(GenlabError, match=r"mnist-cnn.*\(N, C, H, W\).*\(28, 28\)"):
        mnist_cnn.features(torch.rand(28, 28))
    with pytest.raises(GenlabError, match="float images"):
        mnist_cnn.features(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(GenlabError, match=r"values in \[0, 1\]"):
        mnist_cnn.features(_images(2) * 2 - 1)
    with pytest.raises(GenlabError, match="NaN"):
        mnist_cnn.features(torch.full((2, 1, 28, 28), float("nan")))


# --------------------------------------------------------------------------- registry

def test_unknown_extractor_lists_known_names():
    with pytest.raises(GenlabError) as e:
        get_extractor("mnist-cn")
    msg = str(e.value)
    assert "'mnist-cn'" in msg and "did you mean 'mnist-cnn'" in msg
    for name in ("fashion-cnn", "inception-v3", "mnist-cnn", "pixels"):
        assert name in msg
    names = [n for n, _ in list_extractors()]
    assert {"pixels", "mnist-cnn", "fashion-cnn", "inception-v3", "tv:MODEL:LAYER"} <= set(names)


def test_unknown_option_and_bad_batch_size():
    with pytest.raises(GenlabError, match="has no option 'batchsize'.*batch_size"):
        get_extractor("mnist-cnn", batchsize=3)
    with pytest.raises(GenlabError, match="batch_size must be an integer >= 1"):
        get_extractor("pixels", batch_size=0)


# --------------------------------------------------------------------------- inception-v3

def test_inception_without_weights_names_expected_files(tmp_path, monkeypatch):
    monkeypatch.delenv(ex.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(GenlabError) as e:
        get_extractor("inception-v3")
    msg = str(e.value)
    for name in ex.INCEPTION_FILES:
        assert name in msg
    assert str(tmp_path / "checkpoints") in msg and ex.INCEPTION_ENV in msg and "never downloads" in msg
    monkeypatch.setenv(ex.INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(GenlabError, match="nope.pth does not exist"):
        get_extractor("inception-v3")


def test_inception_fid_variant_loads_from_hub_cache(tmp_path, monkeypatch):
    """A 1008-class checkpoint with the FID file name, found in the hub cache, builds the FID
    Inception; random weights stand in for the real ones (which are never downloaded)."""
    torch.manual_seed(0)
    net = ex.fid_inception_v3()
    (tmp_path / "checkpoints").mkdir()
    torch.save(net.state_dict(), tmp_path / "checkpoints" / ex.INCEPTION_FILES[0])
    monkeypatch.delenv(ex.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ext = get_extractor("inception-v3")
    assert ext.variant == "fid" and ext.dim == 2048 and ext.num_classes == 1008
    f, lg = ext.features_and_logits(_images(2, 1, 28, 28))
    assert f.shape == (2, 2048) and lg.shape == (2, 1008)
    # the same thing the pytorch-fid way: resize, 2x-1, the net's own forward
    x = torch.nn.functional.interpolate(_images(2, 1, 28, 28).repeat(1, 3, 1, 1), size=(299, 299),
                                        mode="bilinear", align_corners=False)
    with torch.no_grad():
        ref = net.eval()(x * 2 - 1)
    torch.testing.assert_close(lg, ref, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- tv:MODEL:LAYER

def test_tv_extractor_untrained_and_errors(tmp_path):
    with pytest.raises(GenlabError, match="weights=PATH.*pretrained=False"):
        get_extractor("tv:resnet18:avgpool")
    with pytest.raises(GenlabError, match="expected tv:MODEL:LAYER"):
        get_extractor("tv:resnet18")
    with pytest.raises(GenlabError, match="unknown torchvision model 'resnet19'"):
        get_extractor("tv:resnet19:avgpool", pretrained=False)
    with pytest.raises(GenlabError, match="no layer 'avgpol'.*avgpool"):
        get_extractor("tv:resnet18:avgpol", pretrained=False)
    with pytest.raises(GenlabError, match="does not exist"):
        get_extractor("tv:resnet18:avgpool", weights=tmp_path / "missing.pth")
    ext = get_extractor("tv:resnet18:avgpool", pretrained=False, size=64)
    assert ext.dim == 512 and ext.num_classes == 0 and "UNTRAINED" in ext.description
    f = ext.features(_images(3))
    assert f.shape == (3, 512)
    with pytest.raises(GenlabError, match="no classifier"):
        ext.logits(_images(3))


def test_tv_extractor_with_weights_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    torch.save(net.state_dict(), tmp_path / "m.pth")
    ext = get_extractor("tv:mobilenet_v3_small:flatten", weights=tmp_path / "m.pth", size=64, batch_size=2)
    assert ext.dim == 576 and ext.num_classes == 1000
    x = _images(3, 3, 40, 40)
    f, lg = ext.features_and_logits(x)
    assert f.shape == (3, 576) and lg.shape == (3, 1000)
    xn = (torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
          - torch.tensor(ex.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(ex.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(lg, net.eval()(xn), rtol=1e-4, atol=1e-4)
