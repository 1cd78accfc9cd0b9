"""Shared fixtures. Slow fixtures (tiny models, a real training run, servers) are session-scoped so the
suite builds and trains each thing once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command from the repository root, capturing text output."""
    return subprocess.run(cmd, cwd=kw.pop("cwd", ROOT), capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def tiny_qwen2() -> Path:
    from vslm.tiny import build_tiny

    return build_tiny("tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3() -> Path:
    from vslm.tiny import build_tiny

    return build_tiny("tiny-qwen3")
