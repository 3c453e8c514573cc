"""`genlab bench`: named benchmarks that reproduce published numbers and time genlab against a
reference measured in the same run.

Each benchmark is a module in the repository's ``benchmarks/`` folder with ``NAME``,
``DESCRIPTION``, ``run(ctx) -> dict`` and optionally ``SETTINGS``, the names that
``--set name=value`` may change (read with ``ctx.param``). The dict holds the figures, a ``table`` (list of
rows) that ``genlab bench NAME`` prints, and a ``protocol`` string saying how they were made.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch

from .errors import GenlabError

REPO_ROOT = Path(__file__).resolve().parents[2]


def benchmarks_dir() -> Path:
    env = os.environ.get("GENLAB_BENCHMARKS")
    cands = [Path(env)] if env else []
    cands += [REPO_ROOT / "benchmarks", Path.cwd() / "benchmarks"]
    for c in cands:
        if c.is_dir() and any(c.glob("*.py")):
            return c
    raise GenlabError(
        "benchmarks/ folder not found (looked in "
        + ", ".join(str(c) for c in cands)
        + "); genlab bench runs from a source checkout, or set GENLAB_BENCHMARKS"
    )


def _load(path: Path) -> ModuleType:
    # registered under its file name (the benchmarks folder is on sys.path), so that functions
    # of a benchmark can be sent to worker processes
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _modules() -> dict[str, ModuleType]:
    out = {}
    d = benchmarks_dir()
    if str(d) not in sys.path:  # benchmarks share helpers such as _reference.py
        sys.path.insert(0, str(d))
    for p in sorted(d.glob("*.py")):
        if p.name.startswith("_"):
            continue
        mod = _load(p)
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            out[mod.NAME] = mod
    return out


def list_benchmarks() -> list[tuple[str, str]]:
    return [(n, getattr(m, "DESCRIPTION", "")) for n, m in _modules().items()]


def default_data_root() -> Path:
    env = os.environ.get("GENLAB_DATA_ROOT")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


@dataclass
class Context:
    quick: bool
    data_root: Path
    echo: bool
    params: dict = field(default_factory=dict)

    def param(self, name: str, default, quick=None):
        """A benchmark setting that `genlab bench NAME --set name=value` may change."""
        if name in self.params:
            value = self.params[name]
            if type(value) is not type(default) and not (isinstance(default, float) and isinstance(value, int)):
                raise GenlabError(f"--set {name}: expected a {type(default).__name__}, got {value!r}")
            return value
        return quick if (self.quick and quick is not None) else default

    @property
    def progress(self) -> bool:
        """Progress bars only on an interactive terminal."""
        return self.echo and sys.stderr.isatty()

    def log(self, msg: str) -> None:
        if self.echo:
            print(msg, file=sys.stderr, flush=True)

    def figure(self, filename: str, images, nrow: int | None = None, value_range=(0.0, 1.0)) -> str | None:
        """Save an image grid next to the results (``benchmarks/results/figures/``, or
        $GENLAB_BENCH_FIGURES), full runs only: the README's pictures come from the same runs
        as its numbers. Returns the path written, or None for a quick run."""
        if self.quick:
            return None
        from .images import save_grid

        d = Path(os.environ.get("GENLAB_BENCH_FIGURES") or (REPO_ROOT / "benchmarks" / "results" / "figures"))
        d.mkdir(parents=True, exist_ok=True)
        save_grid(d / filename, images, nrow=nrow, value_range=value_range)
        p = (d / filename).resolve()
        return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)

    def plot(self, filename: str, fig) -> str | None:
        """Save a matplotlib figure next to the results (as :meth:`figure`), full runs only;
        the figure is closed either way. Returns the path written, or None for a quick run."""
        import io

        import matplotlib.pyplot as plt

        from .io import atomic_write_bytes

        try:
            if self.quick:
                return None
            d = Path(os.environ.get("GENLAB_BENCH_FIGURES") or (REPO_ROOT / "benchmarks" / "results" / "figures"))
            d.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            atomic_write_bytes(d / filename, buf.getvalue())
        finally:
            plt.close(fig)
        p = (d / filename).resolve()
        return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)

    def need_mnist(self, folder: str = "MNIST") -> str:
        raw = self.data_root / folder / "raw"
        if not raw.is_dir():
            raise GenlabError(f"this benchmark needs {folder} in {raw} (pass --data-root DIR or set GENLAB_DATA_ROOT)")
        return str(self.data_root)


def machine_info() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor() or ""}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def device_name(train_device: str = "auto") -> str:
    """Where ``genlab.train`` runs with ``train.device=train_device``, in words for a protocol:
    "this CPU" or e.g. "cuda (NVIDIA H100 80GB HBM3)"."""
    from .train.engine import resolve_device

    dev = resolve_device(train_device)
    return "this CPU" if dev.type == "cpu" else f"{dev.type} ({torch.cuda.get_device_name(dev)})"


def measure_gflops(seconds: float = 2.0, n: int = 1024) -> float:
    """Sustained float32 matmul throughput of this machine with torch's threads, in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def format_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        if isinstance(v, float):
            if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
                return f"{v:.3e}"
            return f"{v:.2f}" if abs(v) >= 1 else f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _module(name: str, mods: dict[str, ModuleType]) -> ModuleType:
    if name not in mods:
        import difflib

        close = difflib.get_close_matches(name, mods, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise GenlabError(f"unknown benchmark {name!r}{hint}; known: {', '.join(mods)}")
    return mods[name]


def benchmark_help(name: str) -> str:
    """What `genlab bench NAME --help` prints after the command's options: the benchmark's
    one-line description, its module docstring (protocol, published figures, settings) and the
    settings `--set` takes."""
    import inspect

    mod = _module(name, _modules())
    known = tuple(getattr(mod, "SETTINGS", ()))
    doc = inspect.cleandoc(mod.__doc__ or "")
    return "\n\n".join(part for part in (
        f"{name}: {getattr(mod, 'DESCRIPTION', '')}", doc,
        f"settings (--set KEY=VALUE): {', '.join(known) if known else 'none'}") if part)


def run_benchmark(name: str, quick: bool = False, data_root: str | None = None, echo: bool = True,
                  params: dict | None = None) -> dict:
    mod = _module(name, _modules())
    known = tuple(getattr(mod, "SETTINGS", ()))
    unknown = sorted(set(params or {}) - set(known))
    if unknown:
        raise GenlabError(f"--set {', '.join(unknown)}: not a setting of benchmark {name!r} "
                          f"({'it takes: ' + ', '.join(known) if known else 'it takes none'})")
    ctx = Context(quick=quick, data_root=Path(data_root) if data_root else default_data_root(), echo=echo,
                  params=dict(params or {}))
    t0 = time.perf_counter()
    res = mod.run(ctx)
    if ctx.params:
        res["settings"] = ctx.params
    res = {"name": name, "quick": quick, **res, "wall_seconds": round(time.perf_counter() - t0, 2),
           "machine": machine_info()}
    if echo:
        print(f"# {name}{' (quick)' if quick else ''}: {mod.DESCRIPTION}")
        if res.get("table"):
            print(format_table(res["table"]))
        if res.get("protocol"):
            print(f"\nprotocol: {res['protocol']}")
        for note in res.get("notes", []):
            print(f"note: {note}")
    return res
