"""Fuzzing the parsers of user input with hypothesis: the ``--set`` parser and config routing,
``--config`` TOML files, the image readers (``read_square``, the ``folder:`` loader, the style
image reader) and the ``npz:`` loader. Whatever the input, the only exception allowed is a
GenlabError whose message is one non-empty line (and, for files, names the file); anything that
loads must have the promised shape and dtype.

Deterministic (``derandomize=True``: the same inputs on every run and in CI) and sized to run in
well under a minute on one core. The number of inputs each test tried is printed at the end of the
module (``pytest -s`` or ``-rA`` shows it; ``--hypothesis-show-statistics`` gives hypothesis' own
account).
"""
from __future__ import annotations

import io
import json
import math
import string
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genlab.config import fields_of, from_dict, parse_set, parse_value
from genlab.data import DataConfig, load_data
from genlab.data.files import read_square
from genlab.errors import DataError, GenlabError
from genlab.models import model_config_class
from genlab.registry import MODELS
from genlab.run import new_run_config, route_overrides
from genlab.train import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # PIL's, from the reference decodes here

TRIED: Counter = Counter()  # inputs tried per test, printed at the end of the module


def fuzz(n: int):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    line = "fuzz inputs tried: " + ", ".join(f"{k}={v}" for k, v in sorted(TRIED.items()))
    if tr is not None:
        tr.write_line("\n" + line)
    else:  # pragma: no cover
        print(line)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="genlab-fuzz-") as d:
        yield Path(d)


def assert_one_line(e: GenlabError, *needles) -> None:
    msg = str(e)
    assert msg.strip(), "empty error message"
    assert len(msg.splitlines()) == 1, msg
    for n in needles:
        assert str(n) in msg, (n, msg)


# --- strategies ---------------------------------------------------------------------------------
MODEL_NAMES = MODELS.names()
CONFIG_CLASSES = [TrainConfig, DataConfig] + [model_config_class(m) for m in MODEL_NAMES]
FIELD_NAMES = sorted(set().union(*(fields_of(c) for c in CONFIG_CLASSES)))

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70), st.floats(),
                    st.text(max_size=12), st.sampled_from(["none", "mse", "bce", "relu", "auto", "cpu", "skip"]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                           max_leaves=8)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10),
                 st.builds(lambda s, f: f"{s}.{f}", st.sampled_from(["model", "train", "data", "optim", ""]),
                           st.sampled_from(FIELD_NAMES) | st.text(max_size=6)))


def _dump(v) -> str:
    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return str(v)


value_texts = st.one_of(st.text(max_size=20), json_values.map(_dump),
                        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 400, "[" * 3000, "true", "null"]))
set_items = st.one_of(st.text(max_size=30), st.builds(lambda k, v: f"{k}={v}", keys, value_texts))


# --- (a) --set and config routing ---------------------------------------------------------------------
@fuzz(600)
@given(items=st.lists(set_items, max_size=4), model=st.sampled_from(MODEL_NAMES))
def test_set_parser_routing_and_validation(items, model):
    """genlab train MODEL --set ITEMS..., without the data: parse, route, check each section."""
    TRIED["set_items"] += 1
    try:
        parsed = parse_set(items)
        for _, v in parsed:
            json.dumps(v, allow_nan=True)  # parse_value gives JSON-like values only
        routed = route_overrides(model, parsed)
        from_dict(TrainConfig, routed["train"], where="train")
        from_dict(DataConfig, routed["data"], where="data")
        from_dict(model_config_class(model), routed["model"], where=f"model {model}")
    except GenlabError as e:
        assert_one_line(e)


@fuzz(300)
@given(text=st.text(max_size=40))
def test_parse_value_never_raises(text):
    TRIED["parse_value"] += 1
    v = parse_value(text)
    assert v is None or isinstance(v, (bool, int, float, str, list, dict))


@fuzz(600)
@given(cls=st.sampled_from(CONFIG_CLASSES),
       data=st.one_of(st.dictionaries(keys, json_values, max_size=4), json_values))
def test_from_dict_on_json_like_values(cls, data):
    """Each config class (train, data and every model's) built from arbitrary JSON-like values."""
    TRIED["from_dict"] += 1
    # bias towards the class's own fields, so that the validators are reached
    if isinstance(data, dict) and data:
        own = sorted(fields_of(cls))
        data = {(own[hash(k) % len(own)] if i % 2 == 0 else k): v for i, (k, v) in enumerate(data.items())}
    try:
        obj = from_dict(cls, data, where="cfg")
    except GenlabError as e:
        assert_one_line(e)
    else:
        assert isinstance(obj, cls)


# --- (b) --config FILE.toml -----------------------------------------------------------------------------
def _toml_key(k: str) -> str:
    return k if k and all(c in string.ascii_letters + string.digits + "_-" for c in k) else json.dumps(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return '"?"'


toml_scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=10),
                         st.sampled_from(["vae", "ae", "digits", "mse", "skip"]))
toml_values = st.recursive(toml_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=2),
                           max_leaves=6)
table_names = st.sampled_from(["model", "train", "data", "optim", "Model", ""]) | st.text(max_size=6)
toml_keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10))
tables = st.dictionaries(table_names, st.dictionaries(toml_keys, toml_values, max_size=4), max_size=3)


def _toml_text(top: dict, tabs: dict) -> str:
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in top.items()]
    for name, body in tabs.items():
        lines.append(f"[{_toml_key(name)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


@fuzz(400)
@given(top=st.dictionaries(st.sampled_from(["model", "name", "lr", "x"]) | st.text(max_size=5), toml_values, max_size=2),
       tabs=tables, raw=st.one_of(st.none(), st.binary(max_size=60), st.text(max_size=60)),
       model=st.sampled_from([None, "ae", "vae", "classifier"]))
def test_config_file(workdir, top, tabs, raw, model):
    """`genlab train [MODEL] --config FILE.toml` up to the data: the file read, routed and checked
    as the CLI does (run.new_run_config). Mostly well-formed TOML with arbitrary keys and
    values, sometimes arbitrary text or bytes."""
    TRIED["toml"] += 1
    f = workdir / "c.toml"
    if raw is None:
        f.write_text(_toml_text(top, tabs), encoding="utf-8")
    elif isinstance(raw, bytes):
        f.write_bytes(raw)
    else:
        f.write_text(raw, encoding="utf-8", errors="surrogatepass")
    try:
        new_run_config(model, None, f, [], {})
    except GenlabError as e:
        assert_one_line(e)


# --- (c) image readers ---------------------------------------------------------------------------------
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "HSV"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}


def make_image(mode: str, w: int, h: int, seed: int, constant: bool = False):
    from PIL import Image

    rng = np.random.default_rng(seed)
    if mode == "I;16":
        a = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        return Image.fromarray(np.full_like(a, a[0, 0]) if constant else a)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if constant:
        a[:] = a[0, 0]
    im = Image.fromarray(a)
    if mode == "1":
        return im.convert("L").convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        return im.quantize(16)
    if mode == "PA":
        return im.quantize(16).convert("PA")
    return im.convert(mode)


def encode(im, fmt: str) -> bytes | None:
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # this format cannot hold this mode
    return buf.getvalue()


images = st.builds(make_image, st.sampled_from(MODES), st.integers(1, 24), st.integers(1, 24), st.integers(0, 2**16))


def pil_loads(p: Path) -> bool:
    """The reference: can PIL itself decode the whole file?"""
    from PIL import Image

    try:
        with Image.open(p) as im:
            im.load()
        return True
    except Exception:
        return False


def read_square_or_named_error(p, size: int, mode: str) -> DataError | None:
    """``read_square(p, size, mode)``: an array of the right shape and dtype, or a one-line
    DataError naming the file, which is returned."""
    try:
        a = read_square(p, size, mode)
    except DataError as e:
        assert_one_line(e, p)
        return e
    assert a.shape == ((1 if mode == "L" else 3), size, size) and a.dtype == np.uint8
    return None


@fuzz(400)
@given(data=st.binary(max_size=3000), ext=st.sampled_from(sorted(set(FORMATS.values()) | {".jpeg", ".x"})),
       size=st.integers(4, 12), mode=st.sampled_from(["L", "RGB"]))
def test_read_square_on_arbitrary_bytes(workdir, data, ext, size, mode):
    TRIED["read_square_bytes"] += 1
    p = workdir / f"b{ext}"
    p.write_bytes(data)
    read_square_or_named_error(p, size, mode)


@fuzz(400)
@given(im=images, fmt=st.sampled_from(sorted(FORMATS)), cut=st.floats(0, 1), flip=st.one_of(st.none(), st.integers(0, 10**6)),
       size=st.integers(4, 12), mode=st.sampled_from(["L", "RGB"]))
def test_read_square_on_truncated_and_damaged_files(workdir, im, fmt, cut, flip, size, mode):
    """A valid file cut short at any point (and sometimes one byte flipped): the right array or
    a DataError naming the file; and whenever PIL itself decodes the whole file, so does genlab."""
    b = encode(im, fmt)
    assume(b is not None)  # a format that cannot hold the mode
    TRIED["read_square_truncated"] += 1
    b = b[: int(len(b) * cut)]
    if flip is not None and b:
        i = flip % len(b)
        b = b[:i] + bytes([b[i] ^ 0xFF]) + b[i + 1:]
    p = workdir / f"t{FORMATS[fmt]}"
    p.write_bytes(b)
    e = read_square_or_named_error(p, size, mode)
    assert e is None or not pil_loads(p), str(e)  # PIL decodes it, so genlab must


@fuzz(400)
@given(mode=st.sampled_from(MODES), w=st.integers(1, 30), h=st.integers(1, 30), seed=st.integers(0, 2**16),
       fmt=st.sampled_from(["PNG", "BMP", "TIFF", "GIF"]), size=st.integers(4, 16), target=st.sampled_from(["L", "RGB"]))
def test_read_square_converts_every_mode_and_size(workdir, mode, w, h, seed, fmt, size, target):
    """A one-colour image of any mode and size, saved losslessly, reads as that colour converted
    as PIL converts it (16-bit grey scaled to 0..255) at the requested shape."""
    from PIL import Image

    b = encode(make_image(mode, w, h, seed, constant=True), fmt)
    assume(b is not None)
    TRIED["read_square_modes"] += 1
    p = workdir / f"m{FORMATS[fmt]}"
    p.write_bytes(b)
    with Image.open(p) as ref:
        ref.load()
        stored_mode = ref.mode
        one = ref.crop((0, 0, 1, 1))
    if stored_mode == "I" or stored_mode.startswith("I;16"):
        v = int(np.asarray(one).astype(np.int64).ravel()[0])
        expected = np.asarray(Image.new("L", (1, 1), int(round(min(max(v, 0), 65535) / 257))).convert(target))
    else:
        expected = np.asarray(one.convert(target))
    expected = expected.reshape(-1)  # (1,) grey or (3,) RGB
    try:
        a = read_square(p, size, target)
    except DataError as e:  # only for modes PIL cannot convert at all
        assert_one_line(e, p)
        with pytest.raises(Exception):
            one.convert(target)
        return
    assert a.shape == ((1 if target == "L" else 3), size, size) and a.dtype == np.uint8
    np.testing.assert_allclose(a.reshape(a.shape[0], -1).astype(int), np.broadcast_to(
        expected.astype(int)[:, None], (a.shape[0], size * size)), atol=1)


file_kinds = st.one_of(
    st.tuples(st.just("image"), images, st.sampled_from(sorted(FORMATS))),
    st.tuples(st.just("bytes"), st.binary(max_size=200), st.sampled_from([".png", ".jpg"])),
    st.tuples(st.just("cut"), images, st.sampled_from(["PNG", "JPEG", "GIF"])),
)


@fuzz(150)
@given(classes=st.lists(st.lists(file_kinds, min_size=0, max_size=3), min_size=1, max_size=3),
       bad=st.sampled_from(["fail", "skip"]), grey=st.booleans(), size=st.integers(4, 8))
def test_folder_loader(workdir, capsys, classes, bad, grey, size):
    """folder:PATH with class folders of good, cut-short and arbitrary files, bad_images fail or
    skip: a data set of exactly the readable files (skip) or all of them (fail), or a DataError
    naming the folder or a file; skip warns on one line naming each file left out."""
    TRIED["folder"] += 1
    root = workdir / f"f{TRIED['folder']}"
    good, bad_files = 0, []
    for ci, files in enumerate(classes):
        (root / f"c{ci}").mkdir(parents=True)
        for fi, (kind, thing, fmt) in enumerate(files):
            if kind == "bytes":
                b, ext = thing, fmt
            else:
                b = encode(thing, fmt) or b""
                ext = FORMATS[fmt]
                if kind == "cut":
                    b = b[: len(b) // 2]
            p = root / f"c{ci}" / f"{fi}{ext}"
            p.write_bytes(b)
            if pil_loads(p):
                good += 1
            else:
                bad_files.append(p)
    capsys.readouterr()
    try:
        ds = load_data(DataConfig(name=f"folder:{root}", image_size=size, grayscale=grey, bad_images=bad))
    except DataError as e:
        assert_one_line(e, root)
    else:
        n = len(ds.train) + len(ds.test)
        assert ds.shape == ((1 if grey else 3), size, size) and ds.train.x.dtype == ds.test.x.dtype
        assert str(ds.train.x.dtype) == "torch.uint8"
        assert n == good and (bad == "skip" or not bad_files)
        err = capsys.readouterr().err
        if bad_files:
            assert len(err.strip().splitlines()) == 1 and f"skipped {len(bad_files)}" in err
            assert all(str(p) in err for p in bad_files)
        else:
            assert err == ""


@fuzz(250)
@given(thing=st.one_of(st.binary(max_size=300), st.tuples(images, st.sampled_from(sorted(FORMATS)), st.floats(0.3, 1))))
def test_style_image_reader(workdir, thing):
    from genlab.style.nst import load_image

    p = workdir / "style.img"
    if isinstance(thing, bytes):
        p.write_bytes(thing)
    else:
        im, fmt, keep = thing
        b = encode(im, fmt)
        assume(b is not None)
        p.write_bytes(b[: max(1, int(len(b) * keep))])
    TRIED["style_image"] += 1
    try:
        x = load_image(p)
    except DataError as e:
        assert_one_line(e, p)
        assert not pil_loads(p), str(e)
    else:
        assert x.ndim == 4 and x.shape[:2] == (1, 3) and str(x.dtype) == "torch.float32"
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


# --- (d) npz: -----------------------------------------------------------------------------------------
DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint64, np.float16, np.float32,
          np.float64, np.bool_, np.complex64, "U3", "S2", "datetime64[s]"]


def _arrays(draw_dtype):
    return hnp.arrays(draw_dtype, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))


@st.composite
def npz_members(draw):
    out = {}
    for name in draw(st.lists(st.sampled_from(["x", "y", "x_test", "y_test", "other"]), unique=True, max_size=5)):
        kind = draw(st.sampled_from(["array", "array", "labels", "object"]))
        if kind == "object":
            a = np.empty(3, dtype=object)
            a[0], a[1], a[2] = draw(json_values), None, "a"
            out[name] = a
        elif kind == "labels":
            labels = np.asarray(draw(st.lists(st.integers(-2, 12), max_size=12)), dtype=np.int64)
            out[name] = labels.astype(draw(st.sampled_from([np.int64, np.float32, np.uint8])))
        else:
            out[name] = draw(_arrays(draw(st.sampled_from(DTYPES))))
    return out


@fuzz(300)
@given(members=npz_members(), raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_npz_loader(workdir, members, raw):
    """npz:PATH holding arrays of random shapes and dtypes (object arrays among them, which must
    be refused without unpickling), or arbitrary bytes: a data set or a DataError naming the file."""
    TRIED["npz"] += 1
    p = workdir / "d.npz"
    if raw is not None:
        p.write_bytes(raw)
    else:
        with open(p, "wb") as f:
            np.savez(f, **members)
    try:
        ds = load_data(DataConfig(name=f"npz:{p}"))
    except DataError as e:
        assert_one_line(e, p)
    else:
        x = members["x"]
        assert ds.train.x.shape[1:] == ds.test.x.shape[1:] and ds.train.x.dtype == ds.test.x.dtype
        assert str(ds.train.x.dtype) in ("torch.uint8", "torch.float32")
        if "x_test" not in members:
            assert len(ds.train) + len(ds.test) == len(x)
        for s in (ds.train, ds.test):
            assert s.y is None or (len(s.y) == len(s) and str(s.y.dtype) == "torch.int64" and int(s.y.min()) >= 0)
