"""Wall time of the README's two set-up commands, `make demo` and `make test`, on a fresh clone."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

NAME = "setup-times"
DESCRIPTION = "wall time of `make demo` and `make test` on a fresh clone of this checkout (installs from the package index)"


def run(ctx) -> dict:
    from genlab.bench import REPO_ROOT
    from genlab.errors import GenlabError

    if not (REPO_ROOT / ".git").exists():
        raise GenlabError(f"{REPO_ROOT}: not a git checkout; setup-times clones it")
    rows, times = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "genlab"
        subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
        # the clone sits where the checkout sits relative to shared data: point it there
        env = {**os.environ, "GENLAB_DATA_ROOT": str(ctx.data_root)}
        targets = ["demo"] if ctx.quick else ["demo", "test"]
        for target in targets:
            ctx.log(f"make {target} in a fresh clone ...")
            t0 = time.perf_counter()
            p = subprocess.run(["make", target], cwd=clone, env=env, capture_output=True, text=True)
            times[target] = time.perf_counter() - t0
            rows.append({"command": f"make {target}", "seconds": round(times[target], 1), "exit": p.returncode,
                         "note": "includes creating .venv and installing" if target == "demo" else "set-up already done"})
            if p.returncode != 0:
                raise GenlabError(f"make {target} failed in the fresh clone (exit {p.returncode}): {p.stderr.strip()[-300:]}")
    return {"seconds": times, "table": rows,
            "protocol": "git clone of this checkout into a temporary folder, then `make demo` (creates .venv, installs "
                        "genlab with the pinned torch/torchvision, runs the demo) and `make test`, timed one after the other"}
