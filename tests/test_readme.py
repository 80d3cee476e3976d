"""The README's Python example, run so that it cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_python_example_runs_and_prints_what_its_comments_say(tmp_path):
    (code,) = re.findall(r"```python\n(.*?)```", _section("Use it from Python"), re.S)
    env = {**os.environ, "DATE_SEQ2SEQ_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    assert lines[0] == "torch.Size([32, 8]) torch.Size([32, 11])"
    assert lines[2] == "target 1.0"
    assert lines[3] == "22/Nov/2024 True"
    assert lines[4] == "22/Nov/2024"
    assert lines[-1] == "torch.Size([1, 10, 27])"
    assert (tmp_path / "dates.pt").is_file()
