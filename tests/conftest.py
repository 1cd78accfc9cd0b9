"""Shared fixtures. Slow fixtures (tiny models, a real training run, servers) are session-scoped so the
suite builds and trains each thing once."""

from __future__ import annotations

import json
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
    from vslm.models.tiny import build_tiny

    return build_tiny("tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3() -> Path:
    from vslm.models.tiny import build_tiny

    return build_tiny("tiny-qwen3")


@pytest.fixture
def scripted_server(tmp_path):
    """Start tests/helpers/scripted.py servers with the given script; each is stopped by PID at teardown."""
    from vslm.serve.servers import Server, free_port

    servers = []

    def start(**script) -> Server:
        script.setdefault("request_log", str(tmp_path / f"requests{len(servers)}.jsonl"))
        cfg = tmp_path / f"script{len(servers)}.json"
        cfg.write_text(json.dumps(script, ensure_ascii=False))
        port = free_port()
        server = Server("scripted", [sys.executable, str(ROOT / "tests" / "helpers" / "scripted.py"), "--port", str(port), "--config", str(cfg)],
                        port, tmp_path / f"scripted{len(servers)}.log")
        servers.append(server)
        server.start(timeout=60)
        server.request_log = Path(script["request_log"])
        return server

    yield start
    for server in servers:
        server.stop()


def requests(server) -> list[dict]:
    """The requests a scripted server logged, in order."""
    return [json.loads(l) for l in server.request_log.read_text().splitlines()] if server.request_log.exists() else []
