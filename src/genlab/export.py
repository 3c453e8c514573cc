"""``genlab export RUN_DIR --format onnx``: one part of a trained model as an ONNX graph.

Parts (``parts(model)`` lists those a model has, ``default_part(model)`` picks one):

- ``model``: the whole autoencoder, ``x -> x_hat`` (``reconstruct``: a VAE decodes its
  posterior mean, the context encoder inpaints the centre hole);
- ``encoder``: ``x -> code`` (``encode``); a VAE's gives two outputs, ``mean`` and ``logvar``
  of q(z|x); a classifier's gives ``features``, the head's inputs;
- ``decoder``: ``z -> x`` in the data's value range, what ``decode`` returns;
- ``generator``: a GAN's ``z -> x`` as ``sample`` draws it (through the EMA copy of G when the
  run keeps one); conditional GANs take ``(z, labels)``, labels int64 in 0..classes-1;
- ``classifier``: images in [0, 1] -> class ``logits`` (classifier, stacked-ae);
- ``style-net``: images in [0, 1] -> stylised RGB images in [0, 1]; with ``upsample=resize``
  (the default) of any size of at least 8x8 pixels (height and width are dynamic, as the
  batch), with ``upsample=transposed`` of the run's image size.

Defaults: autoencoders ``model``, GANs ``generator``, classifiers (and stacked-ae, whose end
product is its fine-tuned classifier) ``classifier``, the style network ``style-net``.

Every part is wrapped in a small module with a fixed signature and exported by the
torch.export-based exporter (``torch.onnx.export(..., dynamo=True)``, see :func:`_to_onnx`)
with a dynamic batch dimension. The graph carries genlab's metadata in ``metadata_props``
(``genlab_version``, ``genlab_model``, ``genlab_part``, ``genlab_inputs``, ``genlab_outputs``,
``genlab_value_range``, ...). Before the file is written, onnxruntime (CPUExecutionProvider)
runs it on seeded random inputs of batch 1 and 7 and its outputs are compared with PyTorch's; a
difference above 1e-4 is an error and nothing is written. The file is written atomically.

``benchmark_onnx`` times the exported graph under onnxruntime against the PyTorch module on the
CPU with the same number of threads.
"""
from __future__ import annotations

import json
import logging
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, GenlabError, RunError

TOLERANCE = 1e-4  # max abs difference between onnxruntime and PyTorch
CHECK_BATCHES = (1, 7)
EXPORT_BATCH = 2  # the example batch traced; 0 and 1 would be specialised by torch.export
INSTALL_HINT = "pip install 'genlab[export]'"
FORMATS = ("onnx",)


# ---------------------------------------------------------------- optional dependencies

def _require(*modules: str) -> None:
    import importlib

    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m)
    if missing:
        raise GenlabError(f"ONNX export needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          f"not installed: {INSTALL_HINT}")


# ---------------------------------------------------------------- the parts

class _Call(nn.Module):
    """A part with one input: ``x -> model.<method>(x, **kwargs)``, the fixed one-argument
    forward the exporter traces (``__call__`` for the style network itself)."""

    def __init__(self, model, method: str, **kwargs):
        super().__init__()
        self.model, self.method, self.kwargs = model, method, kwargs

    def forward(self, x):
        return getattr(self.model, self.method)(x, **self.kwargs)


class _ConditionalGenerator(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z, labels):
        return self.model.generate(z, ema=True, y=labels)


@dataclass
class Input:
    """One input of a part: ``shape`` after the batch dimension; ``kind`` says how random
    check inputs are drawn: ``data`` (uniform in ``low``..``high``), ``normal`` or ``labels``
    (integers ``low``..``high``-1)."""

    name: str
    shape: tuple[int, ...]
    kind: str = "data"
    low: float = 0.0
    high: float = 1.0
    dtype: str = "float32"
    dynamic_hw: bool = False  # height and width dynamic too (the style network)

    def describe(self) -> dict:
        shape: list[Any] = ["batch", *self.shape]
        if self.dynamic_hw:
            shape[-2:] = ["height", "width"]
        return {"name": self.name, "dtype": self.dtype, "shape": shape}

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        if self.kind == "labels":
            return torch.randint(int(self.low), int(self.high), (n, *self.shape), generator=g)
        if self.kind == "normal":
            return torch.randn(n, *self.shape, generator=g)
        return self.low + (self.high - self.low) * torch.rand(n, *self.shape, generator=g)


@dataclass
class Part:
    name: str
    module: nn.Module
    inputs: list[Input]
    outputs: list[str]
    description: str
    output_range: list[float] | None = None  # where the outputs lie (images), None for codes and logits

    def example(self, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        return tuple(i.sample(n, g) for i in self.inputs)


def _overrides(model, name: str) -> bool:
    """Whether ``model`` has a real ``name`` method (not GenModel's stub that raises)."""
    from .models.base import GenModel

    fn = getattr(type(model), name, None)
    return fn is not None and fn is not getattr(GenModel, name, None)


def _kind(model) -> str:
    if getattr(model, "name", "") == "style-net":
        return "style"
    if hasattr(model, "generate") and hasattr(model, "generator"):
        return "gan"
    if getattr(model, "classifies", False):
        return "classifier"
    return "autoencoder"


def parts(model) -> dict[str, str]:
    """The parts ``model`` can export, name -> what it maps."""
    kind = _kind(model)
    if kind == "style":
        return {"style-net": "images in [0, 1] -> stylised RGB images in [0, 1]"}
    if kind == "gan":
        return {"generator": "(z, labels) -> samples" if getattr(model, "uses_labels", False) else "z -> samples"}
    out = {}
    if kind == "autoencoder" and _overrides(model, "encode") and _overrides(model, "decode"):
        out["model"] = "x -> reconstruction"
    if _overrides(model, "encode"):
        out["encoder"] = "x -> features" if kind == "classifier" else ("x -> (mean, logvar)" if hasattr(model, "posterior")
                                                                       else "x -> code")
    if kind == "autoencoder" and _overrides(model, "decode"):
        out["decoder"] = "z -> x"
    if hasattr(model, "logits"):
        out["classifier"] = "x -> class logits"
    return out


def default_part(model) -> str:
    kind = _kind(model)
    if kind == "style":
        return "style-net"
    if kind == "gan":
        return "generator"
    if kind == "classifier" or hasattr(model, "logits"):
        return "classifier"
    return "model"


def build_part(model, part: str | None = None, where: str = "") -> Part:
    """The wrapper module, inputs and outputs of ``part`` (default: :func:`default_part`)."""
    have = parts(model)
    part = part or default_part(model)
    if part not in have:
        raise RunError(f"{where or model.name}: a {model.name} model has no part {part!r}; it has: "
                       f"{', '.join(have)}")
    shape = tuple(model.shape)
    lo, hi = model.value_range
    data = Input("x", shape, "data", lo, hi)
    vr = [lo, hi]
    if part == "style-net":
        # upsample=resize: any size; upsample=transposed picks its output padding from the size's
        # parity, which torch.export cannot keep symbolic: that graph is fixed to the run's size
        inp = Input("x", shape, "data", 0.0, 1.0, dynamic_hw=model.config.upsample == "resize")
        return Part(part, _Call(model, "__call__"), [inp], ["y"], have[part], [0.0, 1.0])
    if part == "generator":
        z = Input("z", (int(model.latent),), "normal")
        if getattr(model, "uses_labels", False):
            y = Input("labels", (), "labels", 0, int(model.config.classes), dtype="int64")
            return Part(part, _ConditionalGenerator(model), [z, y], ["x"], have[part], vr)
        return Part(part, _Call(model, "generate", ema=True), [z], ["x"], have[part], vr)
    if part == "classifier":
        return Part(part, _Call(model, "logits"), [data], ["logits"], have[part])
    if part == "model":
        return Part(part, _Call(model, "reconstruct"), [data], ["x_hat"], have[part], vr)
    if part == "encoder":
        if hasattr(model, "posterior"):
            return Part(part, _Call(model, "posterior"), [data], ["mean", "logvar"], have[part])
        return Part(part, _Call(model, "encode"), [data], ["features" if _kind(model) == "classifier" else "code"], have[part])
    # decoder: the code size from one encoding
    with torch.no_grad():
        code = model.encode(data.sample(EXPORT_BATCH, torch.Generator().manual_seed(0)))
    return Part(part, _Call(model, "decode"), [Input("z", tuple(code.shape[1:]), "normal")], ["x"], have[part], vr)


# ---------------------------------------------------------------- export

def _to_onnx(part: Part, opset: int | None):
    """The one place that calls torch's exporter: the torch.export-based one (``dynamo=True``,
    the default since torch 2.9; the TorchScript exporter is deprecated), with the batch
    dimension (and the style network's height and width) dynamic. Returns an onnx.ModelProto."""
    batch = torch.export.Dim("batch", min=1)
    dyn: list[dict[int, Any]] = []  # positional, in the order of the part's inputs
    for i in part.inputs:
        d: dict[int, Any] = {0: batch}
        if i.dynamic_hw:
            d[len(i.shape) - 1] = torch.export.Dim("height", min=8)  # tensor dims 2 and 3
            d[len(i.shape)] = torch.export.Dim("width", min=8)
        dyn.append(d)
    args = part.example(EXPORT_BATCH)
    if any(i.dynamic_hw for i in part.inputs):  # an example size that is no special case
        args = tuple(a[..., :37, :41] if i.dynamic_hw and a.shape[-1] >= 41 and a.shape[-2] >= 37 else a
                     for a, i in zip(args, part.inputs))
    kw = {} if opset is None else {"opset_version": int(opset)}
    loggers = [logging.getLogger(n) for n in ("onnxscript", "torch.onnx", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    try:  # the exporter's warnings and logged tracebacks are not for the user; its errors are raised
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prog = torch.onnx.export(part.module, args, dynamo=True, input_names=[i.name for i in part.inputs],
                                     output_names=list(part.outputs), dynamic_shapes=tuple(dyn), verbose=False,
                                     optimize=True, **kw)
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
    return prog.model_proto


def _set_metadata(proto, meta: dict[str, str]) -> None:
    keep = [p for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    for p in keep:
        proto.metadata_props.add(key=p.key, value=p.value)
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)


def metadata(path_or_proto) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (or ModelProto) as a dict."""
    import onnx

    proto = path_or_proto if hasattr(path_or_proto, "metadata_props") else onnx.load(str(path_or_proto))
    return {p.key: p.value for p in proto.metadata_props}


def _session(model_bytes_or_path, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    src = model_bytes_or_path if isinstance(model_bytes_or_path, bytes) else str(model_bytes_or_path)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def check_onnx(model, part: Part, batches=CHECK_BATCHES, seed: int = 0, threads: int | None = 1) -> float:
    """Max abs difference between onnxruntime's outputs for ``model`` (bytes or a path) and the
    PyTorch part's, over seeded random inputs of each batch size in ``batches``."""
    sess = _session(model, threads)
    names = [i.name for i in sess.get_inputs()]
    worst = 0.0
    for k, n in enumerate(batches):
        args = part.example(n, seed + k)
        if any(i.dynamic_hw for i in part.inputs) and k % 2 == 1:  # another size than the first check
            args = tuple(a[..., : max(8, a.shape[-2] - 3), : max(8, a.shape[-1] - 1)] if i.dynamic_hw else a
                         for a, i in zip(args, part.inputs))
        got = sess.run(None, {nm: a.numpy() for nm, a in zip(names, args)})
        with torch.no_grad():
            want = _as_tuple(part.module(*args))
        if len(got) != len(want):
            raise RunError(f"part {part.name}: onnxruntime gave {len(got)} outputs, PyTorch {len(want)}")
        for g, w in zip(got, want):
            w = w.detach().float().contiguous().numpy()
            if g.shape != w.shape:
                raise RunError(f"part {part.name}: onnxruntime output of shape {g.shape} at batch {n}, "
                               f"PyTorch {w.shape}")
            d = float(abs(g.astype("float64") - w.astype("float64")).max()) if g.size else 0.0
            if not d == d:  # NaN
                return float("nan")
            worst = max(worst, d)
    return worst


@dataclass
class _Source:
    model: nn.Module
    name: str
    path: Path | None  # the run directory, None for a model given as such
    best: bool = False

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else self.name


def _source(obj, best: bool) -> _Source:
    """A run (a Run or its path) or a model built in Python (``create_model``)."""
    from .models.base import GenModel
    from .run import Run, load_run

    if isinstance(obj, GenModel):
        return _Source(obj.eval(), obj.name, None)
    run = obj if isinstance(obj, Run) else load_run(obj, best=best)
    return _Source(run.model.eval(), run.model_name, Path(run.path), bool(getattr(run, "best", False)))


def export_onnx(run_or_path, part: str | None = None, out: str | Path | None = None, opset: int | None = None,
                check: bool = True, best: bool = False) -> dict:
    """Export ``part`` of a run's model to ONNX (see the module docstring). ``run_or_path``: a
    run directory, a :class:`~genlab.run.Run`, or a model (``create_model``; it is put in eval
    mode; then name ``out``).
    ``out`` defaults to ``RUN_DIR/<part>.onnx``. Returns path, part, model, inputs, outputs,
    max_abs_diff (None without ``check``), opset and bytes."""
    _require("onnx", "onnxscript")
    if check:
        _require("onnxruntime")
    if opset is not None and opset < 1:
        raise ConfigError(f"--opset {opset}: expected an ONNX opset version such as 18")
    src = _source(run_or_path, best)
    model = src.model
    p = build_part(model, part, where=src.where)
    if out is None and src.path is None:
        raise ConfigError(f"out: name the .onnx file to write the {p.name} of a {src.name} model that has no run directory")
    out = Path(out) if out is not None else src.path / f"{p.name}.onnx"
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out}: expected a file name ending in .onnx")
    if hasattr(model, "fresh_ema_bn"):  # a GAN's EMA generator with ema_bn: its statistics before the trace
        model.fresh_ema_bn()
    try:
        proto = _to_onnx(p, opset)
    except GenlabError:
        raise
    except Exception as e:  # the exporter's own errors: one line, naming the part
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RunError(f"{src.where}: exporting the {p.name} of {src.name} to ONNX failed: "
                       f"{type(e).__name__}: {msg[:300]}") from None
    from . import __version__

    used_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and used_opset != opset:  # a conversion the exporter could not make
        raise ConfigError(f"--opset {opset}: torch's exporter could not convert the {p.name} of {src.name} "
                          f"to opset {opset} (it wrote opset {used_opset}); use {used_opset} or newer")
    inputs = [i.describe() for i in p.inputs]
    outputs = [o.name for o in proto.graph.output]
    _set_metadata(proto, {
        "genlab_version": __version__,
        "genlab_model": src.name,
        "genlab_part": p.name,
        "genlab_part_description": p.description,
        "genlab_inputs": json.dumps(inputs),
        "genlab_outputs": json.dumps(outputs),
        "genlab_value_range": json.dumps(list(model.value_range)),
        "genlab_output_range": json.dumps(p.output_range),
        "genlab_shape": json.dumps(list(model.shape)),
        **({"genlab_run": str(src.path.resolve()),
            "genlab_weights": "best.safetensors" if src.best else "model.safetensors"} if src.path is not None else {}),
    })
    proto.doc_string = f"genlab {__version__}: {src.name} {p.name} ({p.description})"
    data = proto.SerializeToString()
    diff = None
    if check:
        import onnx

        onnx.checker.check_model(proto)
        diff = check_onnx(data, p)
        if not diff <= TOLERANCE:
            raise RunError(f"{src.where}: the exported {p.name} of {src.name} differs from PyTorch by "
                           f"{diff:.3g} (max abs, onnxruntime, batches {CHECK_BATCHES}); expected at most "
                           f"{TOLERANCE:g}; {out} was not written")
    from .io import atomic_write_bytes

    atomic_write_bytes(out, data)
    return {"path": str(out), "part": p.name, "model": src.name, "inputs": inputs,
            "outputs": outputs, "max_abs_diff": diff, "opset": used_opset, "bytes": len(data)}


# ---------------------------------------------------------------- speed

def benchmark_onnx(path, module: nn.Module, inputs: tuple[torch.Tensor, ...], repeats: int = 20,
                   warmup: int = 3, threads: int = 1) -> dict:
    """Milliseconds per batch on the CPU: the PyTorch ``module`` (inference mode) and the ONNX
    graph at ``path`` (a file or bytes) under onnxruntime, both with ``threads`` threads; after
    ``warmup`` calls each, ``repeats`` timed calls alternating between the two; medians.
    ``ratio`` is onnxruntime's time over PyTorch's (below 1: onnxruntime is faster)."""
    _require("onnxruntime")
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ConfigError(f"benchmark: expected repeats >= 1, warmup >= 0, threads >= 1; got {repeats}, {warmup}, {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sess = _session(path, threads)
        feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
        module.eval()

        def run_torch():
            with torch.inference_mode():
                module(*inputs)

        def run_ort():
            sess.run(None, feeds)

        for _ in range(warmup):
            run_torch()
            run_ort()
        t_torch, t_ort = [], []
        for r in range(repeats):
            order = ((run_torch, t_torch), (run_ort, t_ort)) if r % 2 == 0 else ((run_ort, t_ort), (run_torch, t_torch))
            for fn, acc in order:
                t0 = time.perf_counter()
                fn()
                acc.append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(before)
    pt, ox = statistics.median(t_torch), statistics.median(t_ort)
    return {"torch_ms": pt, "onnx_ms": ox, "ratio": ox / pt, "batch": int(inputs[0].shape[0]),
            "threads": threads, "repeats": repeats, "warmup": warmup}


def time_export(run_or_path, result: dict, batch: int = 64, repeats: int = 20, warmup: int = 3,
                threads: int = 1, best: bool = False) -> dict:
    """:func:`benchmark_onnx` for a file written by :func:`export_onnx` (its ``result``), at
    ``batch`` seeded random inputs."""
    if batch < 1:
        raise ConfigError(f"--batch: expected a positive batch size, got {batch}")
    src = _source(run_or_path, best)
    p = build_part(src.model, result["part"], where=src.where)
    return benchmark_onnx(result["path"], p.module, p.example(batch, seed=1), repeats, warmup, threads)
