"""Data sets: digits splits, validation split, npz: and folder: loaders, binarisation, IDX files."""
from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest
import torch

from genlab.data import DataConfig, load_data
from genlab.data.builtin import read_idx
from genlab.errors import ConfigError, DataError


def rows(x) -> np.ndarray:
    """The rows of x (N x ...) flattened and sorted lexicographically: a multiset of examples."""
    a = np.asarray(x).reshape(len(x), -1)
    return a[np.lexsort(a.T[::-1])]


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    return load_digits()


# --- digits ---------------------------------------------------------------------------------
def test_digits_splits_cover_the_data_set_and_are_stratified(sk_digits):
    ds = load_data(DataConfig(name="digits"))
    assert ds.shape == (1, 8, 8) and ds.train.x.dtype == torch.uint8
    assert len(ds.train) + len(ds.test) == 1797
    assert len(ds.test) == int(np.ceil(0.2 * 1797))
    # together the splits hold exactly sklearn's (label, image) pairs
    ref = np.concatenate([sk_digits.target[:, None], sk_digits.images.reshape(1797, -1)], 1)
    got = np.concatenate([
        np.concatenate([ds.train.y.numpy()[:, None], ds.train.x.numpy().reshape(len(ds.train), -1)], 1),
        np.concatenate([ds.test.y.numpy()[:, None], ds.test.x.numpy().reshape(len(ds.test), -1)], 1)])
    np.testing.assert_array_equal(rows(got), rows(ref.astype(np.int64)))
    # stratified: every class is in the test split in proportion (within one image)
    counts = np.bincount(sk_digits.target, minlength=10)
    test_counts = np.bincount(ds.test.y.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * counts) <= 1)
    # model inputs: stored values 0..16 scaled to [0, 1]
    x, y = ds.eval_inputs("test")
    torch.testing.assert_close(x, ds.test.x.float() / 16)
    assert ds.value_range == (0.0, 1.0) and x.max() == 1.0 and x.min() == 0.0
    assert ds.num_classes == 10


def test_digits_split_is_deterministic_and_follows_test_fraction():
    a = load_data(DataConfig(name="digits"))
    b = load_data(DataConfig(name="digits"))
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)
    half = load_data(DataConfig(name="digits", test_fraction=0.5))
    assert len(half.test) == int(np.ceil(0.5 * 1797)) and len(half.train) == 1797 - len(half.test)


def test_val_fraction_carves_a_disjoint_validation_split():
    full = load_data(DataConfig(name="digits"))
    ds = load_data(DataConfig(name="digits", val_fraction=0.25))
    n = len(full.train)
    assert len(ds.val) == round(0.25 * n) and len(ds.train) + len(ds.val) == n
    # train and val partition the original training split (as a multiset of (label, image))
    def pairs(s):
        return np.concatenate([s.y.numpy()[:, None], s.x.numpy().reshape(len(s), -1)], 1)
    both = np.concatenate([pairs(ds.train), pairs(ds.val)])
    np.testing.assert_array_equal(rows(both), rows(pairs(full.train)))
    # the test split is untouched, and the carving is the same every time
    assert torch.equal(ds.test.x, full.test.x)
    again = load_data(DataConfig(name="digits", val_fraction=0.25))
    assert torch.equal(again.val.x, ds.val.x)
    assert ds.eval_inputs("val")[0].shape == (len(ds.val), 1, 8, 8)


def test_no_val_split_is_a_config_error():
    ds = load_data(DataConfig(name="digits"))
    with pytest.raises(ConfigError) as e:
        ds.eval_inputs("val")
    assert "val_fraction" in str(e.value)


def test_limit_keeps_the_first_training_examples():
    full = load_data(DataConfig(name="digits"))
    ds = load_data(DataConfig(name="digits", limit=100))
    assert torch.equal(ds.train.x, full.train.x[:100]) and torch.equal(ds.test.x, full.test.x)


# --- binarisation -----------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_fixed_binarisation_is_a_threshold(threshold):
    ds = load_data(DataConfig(name="digits", binarize="fixed", threshold=threshold))
    grey = ds.test.x.numpy().astype(np.float64) / 16
    x, _ = ds.eval_inputs("test")
    np.testing.assert_array_equal(x.numpy(), (grey > threshold).astype(np.float32))
    tr = ds.prepare(ds.train.x[:50], train=True)
    np.testing.assert_array_equal(tr.numpy(), (ds.train.x[:50].numpy() / 16 > threshold).astype(np.float32))


def test_dynamic_binarisation_fixes_the_eval_set():
    ds = load_data(DataConfig(name="digits", binarize="dynamic"))
    x1, _ = ds.eval_inputs("test")
    x2, _ = ds.eval_inputs("test")
    x3, _ = load_data(DataConfig(name="digits", binarize="dynamic")).eval_inputs("test")
    assert torch.equal(x1, x2) and torch.equal(x1, x3)
    assert set(torch.unique(x1).tolist()) <= {0.0, 1.0}
    grey = ds.test.x.float() / 16
    # a Bernoulli draw: never 1 where the pixel is 0, always 1 where it is 1, the right mean
    assert (x1[grey == 0] == 0).all() and (x1[grey == 1] == 1).all()
    assert abs(x1.mean().item() - grey.mean().item()) < 0.01
    assert not torch.equal(x1, (grey > 0.5).float())


def test_dynamic_binarisation_resamples_training_batches():
    ds = load_data(DataConfig(name="digits", binarize="dynamic"))
    b = ds.train.x[:200]
    torch.manual_seed(0)
    a1, a2 = ds.prepare(b, train=True), ds.prepare(b, train=True)
    torch.manual_seed(0)
    a3 = ds.prepare(b, train=True)
    assert set(torch.unique(a1).tolist()) <= {0.0, 1.0}
    assert not torch.equal(a1, a2) and torch.equal(a1, a3)  # drawn from the global RNG
    # outside training, prepare() gives the grey levels
    torch.testing.assert_close(ds.prepare(b, train=False), b.float() / 16)


def test_binarisation_needs_unit_range(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.linspace(-1, 3, 40, dtype=np.float32).reshape(10, 4))
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(name=f"npz:{p}", binarize="fixed"))
    assert "binarize" in str(e.value)


# --- npz: -------------------------------------------------------------------------------------
def test_npz_uint8_images_nhw(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 5, 7), dtype=np.uint8)
    xt = rng.integers(0, 256, (4, 5, 7), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, x_test=xt, y=np.arange(12) % 3)
    ds = load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}"))
    assert ds.shape == (1, 5, 7) and ds.value_range == (0.0, 1.0)
    np.testing.assert_array_equal(ds.train.x.numpy()[:, 0], x)
    np.testing.assert_array_equal(ds.train.y.numpy(), np.arange(12) % 3)
    assert ds.test.y is None
    torch.testing.assert_close(ds.eval_inputs("test")[0], torch.from_numpy(xt[:, None]).float() / 255)


def test_npz_uint8_images_nhwc_are_transposed(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, x_test=x[:2])
    ds = load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}"))
    assert ds.shape == (3, 5, 7)
    np.testing.assert_array_equal(ds.train.x.numpy(), x.transpose(0, 3, 1, 2))
    # channel c of image i at (h, w) is x[i, h, w, c]
    assert ds.train.x[4, 2, 3, 6].item() == x[4, 3, 6, 2]


def test_npz_float_vectors_keep_their_range(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, (20, 6))
    xt = rng.normal(3.0, 2.0, (5, 6))
    np.savez(tmp_path / "d.npz", x=x, x_test=xt)
    ds = load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}"))
    assert ds.shape == (6,) and not ds.is_image
    assert ds.value_range == pytest.approx((float(x.min()), float(x.max())), rel=1e-6)
    np.testing.assert_allclose(ds.eval_inputs("test")[0].numpy(), xt, rtol=1e-6)
    np.testing.assert_allclose(ds.as_float(ds.train.x).numpy(), x, rtol=1e-6)


def test_npz_without_test_array_is_split(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.random((50, 4)).astype(np.float32)
    y = np.repeat([0, 1], 25)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}", test_fraction=0.2))
    assert len(ds.train) == 40 and len(ds.test) == 10
    assert np.bincount(ds.test.y.numpy()).tolist() == [5, 5]  # stratified
    pairs = lambda s: np.concatenate([s.y.numpy()[:, None], s.x.numpy()], 1)  # noqa: E731
    np.testing.assert_array_equal(rows(np.concatenate([pairs(ds.train), pairs(ds.test)])),
                                  rows(np.concatenate([y[:, None], x], 1)))


@pytest.mark.parametrize("arrays,needle", [
    ({"images": np.zeros((4, 3), np.float32)}, "'x'"),
    ({"x": np.zeros((4, 3), np.float32), "y": np.zeros(3, np.int64)}, "'y'"),
    ({"x": np.zeros((2, 2, 2, 2, 2), np.uint8)}, "shape"),
    ({"x": np.array([[0.0, np.nan]] * 6, np.float32)}, "NaN"),
])
def test_npz_errors(tmp_path, arrays, needle):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}"))
    assert needle in str(e.value)


@pytest.mark.parametrize("n", [0, 1])
def test_npz_too_small_to_split_is_a_data_error(tmp_path, n):
    np.savez(tmp_path / "d.npz", x=np.zeros((n, 4), np.float32))
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}"))
    assert "d.npz" in str(e.value)


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"npz:{tmp_path / 'nope.npz'}"))
    assert "nope.npz" in str(e.value)


# --- folder: ----------------------------------------------------------------------------------
COLORS = {"cats": (200, 40, 10), "dogs": (30, 90, 250)}


def _write_folder(root, sizes=None, n=5):
    from PIL import Image

    sizes = sizes or {"cats": (14, 10), "dogs": (12, 20)}  # (width, height)
    for cname, color in COLORS.items():
        (root / cname).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", sizes[cname], color).save(root / cname / f"{i:03d}.png")


def test_folder_images_are_resized_and_labelled(tmp_path):
    _write_folder(tmp_path / "imgs")
    ds = load_data(DataConfig(name=f"folder:{tmp_path / 'imgs'}", image_size=8))
    assert ds.shape == (3, 8, 8) and ds.classes == ["cats", "dogs"]
    assert len(ds.train) + len(ds.test) == 10
    assert np.bincount(ds.test.y.numpy()).tolist() == [1, 1]
    for split in (ds.train, ds.test):
        for img, label in zip(split.x.numpy(), split.y.numpy()):
            color = np.array(COLORS[ds.classes[label]])[:, None, None]
            assert np.abs(img.astype(int) - color).max() <= 1  # a plain colour stays that colour


def test_folder_grayscale_uses_luma(tmp_path):
    _write_folder(tmp_path / "imgs", n=3)
    ds = load_data(DataConfig(name=f"folder:{tmp_path / 'imgs'}", image_size=6, grayscale=True))
    assert ds.shape == (1, 6, 6)
    for img, label in zip(ds.train.x.numpy(), ds.train.y.numpy()):
        r, g, b = COLORS[ds.classes[label]]
        luma = (299 * r + 587 * g + 114 * b) / 1000  # ITU-R 601-2, PIL's "L" conversion
        assert np.abs(img.astype(float) - luma).max() <= 1


def test_folder_crops_the_centre_square(tmp_path):
    from PIL import Image

    for cname in ("a", "b"):
        (tmp_path / "imgs" / cname).mkdir(parents=True)
        for i in range(3):
            im = np.zeros((8, 16), np.uint8)  # 16 wide, 8 high: left half black, right half white
            im[:, 8:] = 255
            Image.fromarray(im).save(tmp_path / "imgs" / cname / f"{i}.png")
    ds = load_data(DataConfig(name=f"folder:{tmp_path / 'imgs'}", image_size=8, grayscale=True))
    img = ds.train.x[0, 0].numpy()
    # the short side is already 8: the centre crop keeps columns 4..11 of the original
    np.testing.assert_array_equal(img[:, :4], 0)
    np.testing.assert_array_equal(img[:, 4:], 255)


def test_folder_with_train_and_test_subfolders(tmp_path):
    _write_folder(tmp_path / "imgs" / "train", n=3)
    _write_folder(tmp_path / "imgs" / "test", n=2)
    ds = load_data(DataConfig(name=f"folder:{tmp_path / 'imgs'}", image_size=4))
    assert len(ds.train) == 6 and len(ds.test) == 4
    assert ds.classes == ["cats", "dogs"] and ds.test.y.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("make", ["missing", "empty", "no_images"])
def test_folder_errors(tmp_path, make):
    root = tmp_path / "imgs"
    if make != "missing":
        root.mkdir()
    if make == "no_images":
        (root / "cats").mkdir()
        (root / "cats" / "notes.txt").write_text("hi")
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"folder:{root}"))
    assert str(root) in str(e.value)


# --- IDX files ----------------------------------------------------------------------------------
def idx_bytes(a: np.ndarray) -> bytes:
    """An unsigned-byte IDX file, written from the format's definition (big-endian dims)."""
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    labels = np.array([7, 0, 255], np.uint8)
    for name, a in (("img", imgs), ("lab", labels)):
        p = tmp_path / (name + (".gz" if gz else ""))
        data = idx_bytes(a)
        p.write_bytes(gzip.compress(data) if gz else data)
        got = read_idx(p)
        assert got.shape == a.shape
        np.testing.assert_array_equal(got, a)


def test_read_idx_large_dims(tmp_path):
    # dims are 4-byte big-endian: 300 = 0x0000012c must not be read as one byte
    a = np.arange(300 * 2, dtype=np.int64).astype(np.uint8).reshape(300, 2)
    (tmp_path / "f").write_bytes(idx_bytes(a))
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), a)


@pytest.mark.parametrize("content,needle", [
    (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]), "magic"),  # float IDX
    (bytes([1, 2]), "magic"),
    (bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3]), "truncated"),  # 3 of 6 values
])
def test_read_idx_rejects_bad_files(tmp_path, content, needle):
    p = tmp_path / "bad-idx"
    p.write_bytes(content)
    with pytest.raises(DataError) as e:
        read_idx(p)
    assert needle in str(e.value) and "bad-idx" in str(e.value)


def test_read_idx_bad_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"not gzip at all")
    with pytest.raises(DataError) as e:
        read_idx(p)
    assert "x.gz" in str(e.value)


def _fake_mnist(root, n_train=5, n_test=3, gz_images=True):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        arrays[split] = (x, y)
        img = idx_bytes(x)
        if gz_images:
            (raw / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(img))
        else:
            (raw / f"{split}-images-idx3-ubyte").write_bytes(img)
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(y))
    return arrays


def test_mnist_loader_on_small_idx_files(tmp_path):
    arrays = _fake_mnist(tmp_path)
    ds = load_data(DataConfig(name="mnist", root=str(tmp_path)))
    assert ds.shape == (1, 28, 28) and len(ds.train) == 5 and len(ds.test) == 3
    np.testing.assert_array_equal(ds.train.x.numpy()[:, 0], arrays["train"][0])
    np.testing.assert_array_equal(ds.test.y.numpy(), arrays["t10k"][1])
    torch.testing.assert_close(ds.eval_inputs("test")[0][:, 0], torch.from_numpy(arrays["t10k"][0]).float() / 255)


def test_mnist_loader_uses_env_root(tmp_path, monkeypatch):
    _fake_mnist(tmp_path, gz_images=False)
    monkeypatch.setenv("GENLAB_DATA_ROOT", str(tmp_path))
    assert len(load_data(DataConfig(name="mnist")).train) == 5


def test_missing_mnist_names_the_files_and_folder(tmp_path):
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name="mnist", root=str(tmp_path)))
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg


@pytest.mark.data
def test_read_idx_matches_torchvision_on_mnist_t10k(data_root, tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = data_root / "MNIST" / "raw"
    for stem, reader, shape in (("t10k-images-idx3-ubyte", read_image_file, (10000, 28, 28)),
                                ("t10k-labels-idx1-ubyte", read_label_file, (10000,))):
        src = raw / (stem + ".gz") if (raw / (stem + ".gz")).is_file() else raw / stem
        plain = tmp_path / stem  # torchvision's readers take uncompressed files
        if src.suffix == ".gz":
            with gzip.open(src, "rb") as f, open(plain, "wb") as g:
                shutil.copyfileobj(f, g)
        else:
            shutil.copy(src, plain)
        ours = read_idx(src)
        ref = reader(str(plain)).numpy()
        assert ours.shape == shape
        np.testing.assert_array_equal(ours, ref)


@pytest.mark.data
def test_mnist_data_set(data_root):
    ds = load_data(DataConfig(name="mnist", root=str(data_root)))
    assert len(ds.train) == 60000 and len(ds.test) == 10000 and ds.shape == (1, 28, 28)
    # MNIST's published class counts
    assert np.bincount(ds.test.y.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(ds.train.y.numpy()).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
