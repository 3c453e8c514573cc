"""Bad input, one test per kind: a one-line error that names the problem, exit status 2, and
nothing lost (no half-made run directory; a run that was there is left as it was).

Cases already covered elsewhere are not repeated here: unknown model (test_cli.py::
test_unknown_model), unknown --set key (test_cli.py::test_unknown_set_key), a wrong type or an
out-of-range value in --set (test_cli.py::test_bad_set_value), missing MNIST files
(test_cli.py::test_missing_mnist, test_data.py::test_missing_mnist_names_the_files_and_folder),
a missing or empty image folder (test_data.py::test_folder_errors), a damaged config.json
(test_cli.py::test_damaged_config_json), damaged checkpoint files (test_cli.py::
test_damaged_checkpoint_files; the other checkpoint cases are test_engine.py's), unknown and
mistyped keys of a config file through the API (test_config.py::test_toml_errors_name_the_key).
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from genlab.cli import main
from genlab.data import DataConfig, load_data
from genlab.data.files import read_square
from genlab.errors import DataError, RunError

TINY = ["--set", "hidden=[32]", "latent=4"]


def run_cli(capsys, *argv):
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles, cmd="train"):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"genlab {cmd}: error:"), lines[0]
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- image folders ----------------------------------------------------------------------------
def png(mode="RGB", size=(8, 8), color=(200, 40, 10)):
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def noise_image(fmt: str, size=(16, 16), seed=0) -> bytes:
    from PIL import Image

    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt)
    return buf.getvalue()


def image_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def good_folder(root: Path, n: int = 4) -> dict[str, bytes]:
    return {f"{c}/{i}.png": png(color=col) for c, col in (("a", (250, 0, 0)), ("b", (0, 0, 250)))
            for i in range(n)}


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_image_fails_naming_the_file(tmp_path, fmt, ext):
    from PIL import ImageFile

    whole = noise_image(fmt)
    bad = tmp_path / "imgs" / "b" / f"cut{ext}"
    image_folder(tmp_path / "imgs", {**good_folder(tmp_path), f"b/cut{ext}": whole[: len(whole) // 2]})
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"folder:{tmp_path / 'imgs'}", image_size=8))
    msg = str(e.value)
    assert str(bad) in msg and "truncated" in msg and "bad_images=skip" in msg
    assert len(msg.splitlines()) == 1
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing switched PIL into padding cut files


def test_file_that_is_not_an_image_fails_naming_it(tmp_path):
    image_folder(tmp_path / "imgs", {**good_folder(tmp_path), "a/notes.png": b"just some text\n"})
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"folder:{tmp_path / 'imgs'}", image_size=8))
    assert str(tmp_path / "imgs" / "a" / "notes.png") in str(e.value) and "not an image" in str(e.value)


def test_skip_leaves_bad_images_out_with_one_warning_line(tmp_path, capsys):
    jpg = noise_image("JPEG")
    root = image_folder(tmp_path / "imgs", {**good_folder(tmp_path), "a/cut.jpg": jpg[:300],
                                            "b/text.png": b"not a png", "b/empty.gif": b""})
    capsys.readouterr()
    ds = load_data(DataConfig(name=f"folder:{root}", image_size=8, bad_images="skip"))
    assert len(ds.train) + len(ds.test) == 8 and ds.classes == ["a", "b"]
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "warning" in err and "skipped 3" in err
    for name in ("a/cut.jpg", "b/text.png", "b/empty.gif"):
        assert str(root / name) in err
    assert f"{root / 'a' / 'cut.jpg'} (truncated image)" in err and f"{root / 'b' / 'text.png'} (not an image)" in err


def test_skip_with_every_image_bad_is_an_error(tmp_path):
    root = image_folder(tmp_path / "imgs", {"a/1.png": b"x", "a/2.jpg": b"", "b/3.png": png()})
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"folder:{root}", image_size=8, bad_images="skip"))
    assert str(root / "a") in str(e.value)
    flat = image_folder(tmp_path / "flat", {"1.png": b"x", "2.png": b"y"})
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"folder:{flat}", image_size=8, bad_images="skip"))
    assert str(flat) in str(e.value) and "none of its 2" in str(e.value)


def test_bad_images_is_a_checked_choice():
    from genlab.config import describe_fields, from_dict
    from genlab.errors import ConfigError

    with pytest.raises(ConfigError, match="data.bad_images: expected one of fail, skip, got 'ignore'"):
        from_dict(DataConfig, {"bad_images": "ignore"}, where="data")
    (row,) = [r for r in describe_fields(DataConfig) if r[0] == "bad_images"]
    assert row[2] == "fail" and "fail|skip" in row[3] and "skip" in row[3]


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    """Leaving an empty class out would shift the labels of the classes after it."""
    root = image_folder(tmp_path / "imgs", good_folder(tmp_path))
    (root / "a0-empty").mkdir()
    (root / "a0-empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"folder:{root}", image_size=8))
    assert str(root / "a0-empty") in str(e.value)
    # also when every image of the class is skipped as unreadable
    shutil.rmtree(root / "a0-empty")
    (root / "c").mkdir()
    (root / "c" / "bad.png").write_bytes(b"oops")
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"folder:{root}", image_size=8, bad_images="skip"))
    assert str(root / "c") in str(e.value)


def _mixed_images(seed=0):
    """8x8 images of every mode a folder may hold, with their expected RGB and grey values
    (the same as PIL's convert; 16-bit grey scaled to 0..255)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8))
    grey = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8))
    pal = rgb.quantize(7)  # P with a 7-colour palette
    cmyk = rgb.convert("CMYK")
    a16 = rng.integers(0, 65536, (8, 8), dtype=np.uint16)
    i16 = Image.fromarray(a16)
    la = grey.convert("LA")
    g16 = np.rint(a16 / 257).astype(np.uint8)
    ims = {"0-L.png": (grey, "PNG"), "1-RGB.png": (rgb, "PNG"), "2-RGBA.png": (rgba, "PNG"),
           "3-P.png": (pal, "PNG"), "4-CMYK.tif": (cmyk, "TIFF"), "5-I16.png": (i16, "PNG"),
           "6-LA.png": (la, "PNG"), "7-P.gif": (pal, "GIF"), "8-L.bmp": (grey, "BMP")}
    files, expected = {}, {}
    for name, (im, fmt) in ims.items():
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        files[name] = buf.getvalue()
        if im.mode == "I;16":
            exp_l = g16
            exp_rgb = np.stack([g16] * 3, -1)
        else:
            exp_l, exp_rgb = np.asarray(im.convert("L")), np.asarray(im.convert("RGB"))
        expected[name] = (exp_l[None], exp_rgb.transpose(2, 0, 1))
    return files, expected


@pytest.mark.parametrize("grey", [False, True])
def test_mixed_modes_convert_as_pil_does(tmp_path, grey):
    from PIL import Image

    files, expected = _mixed_images()
    for name, data in files.items():
        p = tmp_path / name
        p.write_bytes(data)
        with Image.open(p) as im:
            assert im.mode in ("L", "RGB", "RGBA", "P", "CMYK", "I;16", "LA")
        a = read_square(p, 8, "L" if grey else "RGB")
        assert a.dtype == np.uint8 and a.shape == ((1, 8, 8) if grey else (3, 8, 8))
        np.testing.assert_array_equal(a, expected[name][0 if grey else 1], err_msg=name)


def test_image_too_large_is_refused_before_decoding(tmp_path):
    """A PNG header claiming 100000 x 100000 pixels (a decompression bomb): a DataError, not
    PIL's DecompressionBombError (nor 10 GB of memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    p = tmp_path / "bomb.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
                  + chunk(b"IEND", b""))
    with pytest.raises(DataError, match="too large") as e:
        read_square(p, 8, "RGB")
    assert str(p) in str(e.value)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    """PIL's own I;16 -> L conversion clips at 255 (most 16-bit images would read white)."""
    from PIL import Image

    Image.fromarray(np.array([[0, 257, 32896, 65535]] * 4, np.uint16)).save(tmp_path / "g.png")
    a = read_square(tmp_path / "g.png", 4, "L")
    assert a[0, 0].tolist() == [0, 1, 128, 255]


def test_folder_of_mixed_modes_and_sizes_loads(tmp_path):
    """One data set from grey, RGB, RGBA, palette, CMYK and 16-bit files of different sizes:
    every image converted to RGB at data.image_size; same-size files keep PIL's pixel values."""
    from PIL import Image

    files, expected = _mixed_images()
    root = tmp_path / "imgs"
    for split in ("train", "test"):
        for cname in ("x", "y"):
            image_folder(root / split / cname, files)
    # other sizes: a wide RGBA, a tall palette image, a tiny grey one
    for name, im in (("w.png", Image.new("RGBA", (40, 10), (10, 200, 30, 128))),
                     ("t.png", Image.new("RGB", (5, 30), (90, 90, 250)).quantize(4)),
                     ("s.png", Image.new("L", (3, 3), 77))):
        im.save(root / "train" / "y" / name)
    ds = load_data(DataConfig(name=f"folder:{root}", image_size=8))
    assert ds.shape == (3, 8, 8) and ds.classes == ["x", "y"]
    assert len(ds.train) == 2 * len(files) + 3 and len(ds.test) == 2 * len(files)
    x = ds.test.x.numpy()
    for i, name in enumerate(sorted(files)):  # files of a class in sorted order, class x first
        np.testing.assert_array_equal(x[i], expected[name][1], err_msg=name)
        np.testing.assert_array_equal(x[len(files) + i], expected[name][1], err_msg=name)
    tail = ds.train.x.numpy()[-3:]  # s.png, t.png, w.png sort after the digits
    assert (tail[0] == 77).all()
    assert np.abs(tail[1].reshape(3, -1) - np.array([90, 90, 250])[:, None]).max() <= 2
    assert np.abs(tail[2].reshape(3, -1) - np.array([10, 200, 30])[:, None]).max() <= 1


def test_cli_bad_image_in_folder(tmp_path, capsys):
    jpg = noise_image("JPEG")
    root = image_folder(tmp_path / "imgs", {**good_folder(tmp_path), "b/cut.jpg": jpg[:250]})
    out = tmp_path / "r"
    rc, _, err = run_cli(capsys, "train", "ae", "--data", f"folder:{root}", *TINY, "--steps", 1, "--out", out)
    assert_one_line_error(rc, err, root / "b" / "cut.jpg", "truncated")
    assert not out.exists()
    rc, stdout, err = run_cli(capsys, "train", "ae", "--data", f"folder:{root}", "--set", "hidden=[32]", "latent=4",
                              "data.bad_images=skip", "data.image_size=8", "--steps", 1, "--out", out, "-q")
    assert rc == 0, err
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and str(root / "b" / "cut.jpg") in warnings[0] and "skipped 1" in warnings[0]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["bad_images"] == "skip" and cfg["format"] == 1


# --- unknown names, options and values on the command line ---------------------------------------
def test_unknown_data_set(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--data", "mnits", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "mnits", "mnist")
    assert not (tmp_path / "r").exists()


def test_unknown_backbone(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "classifier", "--backbone", "resnet17", "--weights", "none",
                         "--out", tmp_path / "r", "--steps", 1)
    assert_one_line_error(rc, err, "resnet17", "resnet18")
    assert not (tmp_path / "r").exists()


def test_unknown_option(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--epochz", "3", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "--epochz")
    rc, _, err = run_cli(capsys, "train", "ae", "--learning-rate", "0.1", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "--learning-rate")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("item,needles", [
    ("train.lr=NaN", ["train.lr", "finite"]),            # json.loads reads NaN and Infinity
    ("data.threshold=Infinity", ["threshold", "finite"]),
    ("train.min_lr=1e999", ["min_lr", "finite"]),
    ("latent=1e30", ["latent", "2**63"]),
    ("train.lr=" + "9" * 5000, ["train.lr", "expected a number", "..."]),  # not a 5000-digit line
    ("hidden=" + "[" * 5000, ["hidden", "expected a list"]),
    ("data.bad_images=ignore", ["bad_images", "fail, skip"]),
    ("data.image_size=2", ["image_size", "at least 4"]),
])
def test_bad_set_values_beyond_the_existing_ones(tmp_path, capsys, item, needles):
    rc, _, err = run_cli(capsys, "train", "ae", "--out", tmp_path / "r", "--set", item)
    assert_one_line_error(rc, err, *needles)
    assert len(err) < 1000
    assert not (tmp_path / "r").exists()


def test_a_line_break_in_a_set_key_stays_one_line(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--out", tmp_path / "r", "--set", "lat\nent=3")
    assert_one_line_error(rc, err, "lat\\nent")


@pytest.mark.parametrize("text,needles", [
    ('[train]\nlearning_rate = 1\n', ["[train]", "learning_rate"]),
    ('[data]\nbad_images = "maybe"\n', ["bad_images", "fail, skip"]),
    ('[model]\nlatent = "four"\n', ["[model]", "latent", "integer"]),
    ('[train]\nlr = nan\n', ["lr", "finite"]),
    ('[model]\nname = 3\n', ["name", "3"]),
    ('[model]\nname = "vea"\n', ["vea", "vae"]),
    ('model = "ae"\ntrain = 3\n', ["[train]", "table"]),
    ('[optimizer]\nlr = 1\n', ["optimizer"]),
])
def test_config_file_errors_through_the_cli(tmp_path, capsys, text, needles):
    f = tmp_path / "c.toml"
    f.write_text(text)
    rc, _, err = run_cli(capsys, "train", "ae", "--config", f, "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "c.toml", *needles)
    assert not (tmp_path / "r").exists()


def test_config_file_not_utf8(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_bytes(b"[train]\nlr = 0.1 # caf\xe9\n")
    rc, _, err = run_cli(capsys, "train", "ae", "--config", f, "--out", tmp_path / "r")
    assert_one_line_error(rc, err, "c.toml", "TOML")


# --- data roots -----------------------------------------------------------------------------------------
def test_missing_data_root(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--data", "mnist", "--data-root", tmp_path / "nowhere",
                         "--out", tmp_path / "r")
    assert_one_line_error(rc, err, tmp_path / "nowhere", "--data-root", "MNIST/raw")
    assert not (tmp_path / "r").exists()


def test_missing_folder_through_the_cli(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "ae", "--data", f"folder:{tmp_path / 'photos'}", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, tmp_path / "photos")
    assert not (tmp_path / "r").exists()


# --- npz ----------------------------------------------------------------------------------------------
class _Boom:
    """Unpickling it would write a file: the object array must be refused before that."""

    target = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    boom = _Boom()
    boom.target = str(marker)
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = boom, boom
    np.savez(tmp_path / "d.npz", x=arr)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}"))
    assert "d.npz" in str(e.value) and "object" in str(e.value)
    assert not marker.exists()
    labels = np.empty(4, dtype=object)
    labels[:] = [boom] * 4
    np.savez(tmp_path / "e.npz", x=np.zeros((4, 3), np.float32), y=labels)
    with pytest.raises(DataError, match="'y'.*object"):
        load_data(DataConfig(name=f"npz:{tmp_path / 'e.npz'}"))
    assert not marker.exists()
    np.load(tmp_path / "d.npz", allow_pickle=True)["x"]  # the control: unpickling does run the payload
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("arrays,needle", [
    ({"x": np.zeros((6, 4), np.float32), "y": np.array([0, 1, -1, 0, 1, 0])}, "class labels"),
    ({"x": np.zeros((6, 4), np.float32), "y": np.array([0, 1, 0.5, 0, 1, 0])}, "whole-number"),
    ({"x": np.zeros((6, 4), np.float32), "x_test": np.zeros((3, 5), np.float32)}, "'x_test'"),
    ({"x": np.zeros((6, 4), np.uint8), "x_test": np.zeros((3, 4), np.float32)}, "'x_test'"),
    ({"x": np.zeros((6, 4), np.float32), "y_test": np.zeros(3, np.int64)}, "'y_test'"),
    ({"x": np.zeros((6, 4), np.bool_)}, "dtype bool"),
    ({"x": np.zeros((6, 0), np.float32)}, "empty"),
    ({"x": np.zeros((0, 4), np.float32), "x_test": np.zeros((3, 4), np.float32)}, "no examples"),
    ({"x": np.ones((6, 4)) * 1e300}, "float32"),
])
def test_npz_inconsistent_arrays(tmp_path, arrays, needle):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError) as e:
        load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}"))
    assert "d.npz" in str(e.value) and needle in str(e.value)


def test_npy_instead_of_npz(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((6, 4)))
    (tmp_path / "d.npy").rename(tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"d\.npz: a single \.npy array"):
        load_data(DataConfig(name=f"npz:{tmp_path / 'd.npz'}"))


# --- run directories ----------------------------------------------------------------------------
@pytest.fixture
def run_copy(ae_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(ae_run.path, dst)
    return dst


def edit_config(run: Path, fn) -> None:
    cfg = json.loads((run / "config.json").read_text())
    fn(cfg)
    (run / "config.json").write_text(json.dumps(cfg))


def test_new_runs_record_the_config_format(ae_run):
    from genlab.run import CONFIG_FORMAT

    assert json.loads((ae_run.path / "config.json").read_text())["format"] == CONFIG_FORMAT == 1


def test_run_of_an_older_format_still_opens(run_copy, capsys):
    edit_config(run_copy, lambda c: c.pop("format"))  # runs written before the field existed
    rc, out, err = run_cli(capsys, "eval", run_copy, "--json")
    assert rc == 0, err
    assert "mse" in json.loads(out)


def test_run_of_a_newer_format_is_refused(run_copy, capsys):
    edit_config(run_copy, lambda c: c.update(format=7))
    before = snapshot(run_copy)
    rc, _, err = run_cli(capsys, "eval", run_copy)
    assert_one_line_error(rc, err, run_copy / "config.json", "'format'", "7", cmd="eval")
    rc, _, err = run_cli(capsys, "train", "ae", "--out", run_copy, "--resume", "--steps", 30)
    assert_one_line_error(rc, err, run_copy / "config.json", "'format'", "7")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("edit,needles", [
    (lambda c: c.pop("shape"), ["'shape'", "missing"]),
    (lambda c: c.pop("model_config"), ["'model_config'", "missing"]),
    (lambda c: c.update(model="autoencoder"), ["'model'", "autoencoder"]),
    (lambda c: c.update(format="2"), ["'format'", "'2'"]),
    (lambda c: c.update(shape=[1, 8]), ["'shape'"]),
    (lambda c: c.update(value_range=[1, 0]), ["'value_range'"]),
    (lambda c: c["model_config"].update(dropout=0.5), ["model_config", "'dropout'"]),  # a field of another version
    (lambda c: c["data"].update(bad_images="sometimes"), ["data", "bad_images"]),
])
def test_run_config_with_missing_or_foreign_fields(run_copy, capsys, edit, needles):
    edit_config(run_copy, edit)
    rc, _, err = run_cli(capsys, "eval", run_copy)
    assert_one_line_error(rc, err, run_copy / "config.json", *needles, cmd="eval")


def test_config_json_that_is_not_an_object(run_copy, capsys):
    (run_copy / "config.json").write_text('"model shape value_range train data model_config"')
    rc, _, err = run_cli(capsys, "eval", run_copy)
    assert_one_line_error(rc, err, run_copy / "config.json", "JSON object", cmd="eval")
    (run_copy / "config.json").write_bytes(b"\xff\xfe{}")
    rc, _, err = run_cli(capsys, "eval", run_copy)
    assert_one_line_error(rc, err, run_copy / "config.json", cmd="eval")


def test_weights_of_another_model(run_copy, vae_run, capsys):
    """config.json says ae, the weights are a VAE's."""
    shutil.copy(vae_run.path / "model.safetensors", run_copy / "model.safetensors")
    rc, _, err = run_cli(capsys, "eval", run_copy)
    assert_one_line_error(rc, err, run_copy / "model.safetensors", "'ae'", "'model'", cmd="eval")


def test_resume_a_run_of_another_model(run_copy, capsys):
    before = snapshot(run_copy)
    rc, _, err = run_cli(capsys, "train", "vae", "--out", run_copy, "--resume", "--steps", 30)
    assert_one_line_error(rc, err, run_copy, "'ae'", "'vae'")
    assert snapshot(run_copy) == before


def _first_mismatch(run: Path):
    """(parameter, shape in the weights file, shape in the model config.json describes)."""
    from safetensors import safe_open

    from genlab.run import build_model

    cfg = json.loads((run / "config.json").read_text())
    m = build_model(cfg["model"], cfg["model_config"], cfg["shape"], cfg["value_range"])
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        for k, v in m.state_dict().items():
            stored = list(f.get_slice(k).get_shape())
            if stored != list(v.shape):
                return k, stored, list(v.shape)
    raise AssertionError("no mismatch")  # pragma: no cover


def _names_shapes(line: str, name: str, a: list, b: list) -> bool:
    norm = line.replace("(", "[").replace(")", "]").replace("torch.Size", "")
    return name in norm and str(a) in norm and str(b) in norm


def test_checkpoint_whose_shapes_do_not_match(run_copy, capsys):
    """config.json edited to another latent size: the error names the parameter and both shapes,
    for eval (Run.model) and for --resume, and the run is left as it was."""
    edit_config(run_copy, lambda c: c["model_config"].update(latent=5))
    name, stored, wanted = _first_mismatch(run_copy)
    before = snapshot(run_copy)
    rc, _, err = run_cli(capsys, "eval", run_copy)
    assert_one_line_error(rc, err, run_copy / "model.safetensors", cmd="eval")
    assert _names_shapes(err, name, stored, wanted), err
    rc, _, err = run_cli(capsys, "train", "ae", "--out", run_copy, "--resume", "--steps", 30)
    assert_one_line_error(rc, err)
    assert _names_shapes(err, name, stored, wanted), err
    assert snapshot(run_copy) == before


def test_run_model_error_is_a_run_error(run_copy):
    from genlab.run import load_run

    edit_config(run_copy, lambda c: c["model_config"].update(hidden=[16]))
    with pytest.raises(RunError) as e:
        load_run(run_copy).model
    assert "model.safetensors" in str(e.value) and "[16" in str(e.value) and "[32" in str(e.value)
