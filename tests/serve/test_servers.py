"""Server commands: what vslm starts for a recipe (no server is started here; the slow tests serve for real)."""

from __future__ import annotations

import pytest

from conftest import ROOT
from vslm.core.errors import RecipeError, ServerError
from vslm.recipes import resolve as resolver
from vslm.recipes.matrix import get_recipe
from vslm.recipes.resolve import ServeSettings, resolve
from vslm.serve import servers


def _flag(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_recipe_vllm_server_serves_base_and_adapter_with_the_recipes_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    monkeypatch.setattr(resolver, "accelerator_count", lambda: 0)
    plan = resolve(get_recipe("telecom_r32"), "tiny")
    server = servers.recipe_vllm_server("/usr/bin/python3", plan, 8123, tmp_path / "vllm.log")
    cmd = server.cmd
    assert _flag(cmd, "--model") == str(ROOT / "models" / "tiny-qwen2")
    assert _flag(cmd, "--served-model-name") == "base"
    assert _flag(cmd, "--lora-modules") == f"telecom_r32={ROOT / tmp_path / 'tiny' / 'telecom_r32' / 'adapter'}"
    assert _flag(cmd, "--max-model-len") == "2048" and _flag(cmd, "--max-lora-rank") == "32"
    assert _flag(cmd, "--dtype") == "float32"
    assert server.env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and "--enforce-eager" in cmd  # ServeSettings.cpu
    assert server.base_url == "http://127.0.0.1:8123/v1"


def test_gpu_settings_leave_the_dtype_to_vllm(tmp_path):
    server = servers.vllm_server("python", "Qwen/Qwen2.5-1.5B-Instruct", {}, ServeSettings(4096, 64, None), 8000,
                                 tmp_path / "log")
    assert "--dtype" not in server.cmd and "--enable-lora" not in server.cmd
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in server.env and "--enforce-eager" not in server.cmd
    assert _flag(server.cmd, "--max-model-len") == "4096"


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(servers, "vllm_python", lambda: None)
    assert servers.vllm_for("auto") is None and servers.vllm_for("llamafactory") is None
    with pytest.raises(RecipeError, match=r"vLLM is not installed: run `make vllm` \(CPU\) .*or use --backend llamafactory"):
        servers.vllm_for("vllm")
    monkeypatch.setattr(servers, "vllm_python", lambda: "/opt/vllm/bin/python")
    assert servers.vllm_for("auto") == "/opt/vllm/bin/python"
    assert servers.vllm_for("llamafactory") is None


def test_a_taken_port_is_refused_before_anything_starts(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = servers.Server("x", ["false"], port, tmp_path / "x.log")
        with pytest.raises(ServerError, match=rf"port {port} on 127.0.0.1 is already in use"):
            server.start(timeout=5)
    assert not (tmp_path / "x.log").exists()
