"""The README's Python quick start runs as written."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_quick_start_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python block"
    monkeypatch.chdir(tmp_path)  # it writes runs/vae-digits
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    assert (tmp_path / "runs" / "vae-digits" / "model.safetensors").is_file()
    assert ns["grid"].shape == (4, 8, 1, 8, 8)
    assert set(ns["terms"]) >= {"loss", "recon", "kl", "nelbo"}
    assert "nelbo" in capsys.readouterr().out
