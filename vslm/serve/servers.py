"""Start an OpenAI-compatible server for a recipe on loopback, wait until it answers, stop it by PID.

vLLM (base + adapter in one server, the request's `model` picks which) when a vLLM Python is found,
else `llamafactory-cli api` (one model per server; it ignores the request's `model`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..core.errors import RecipeError, ServerError
from ..core.paths import ROOT
from ..recipes.resolve import Resolved, ServeSettings


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def vllm_python() -> str | None:
    """The Python of a vLLM install: $VSLM_VLLM_PYTHON, else .venv-vllm/bin/python once scripts/install_vllm.sh
    finished there (its stamp file; a half-done install is not used), else this one if it has vllm."""
    if os.environ.get("VSLM_VLLM_PYTHON") and Path(os.environ["VSLM_VLLM_PYTHON"]).is_file():
        return os.environ["VSLM_VLLM_PYTHON"]
    venv = ROOT / ".venv-vllm"
    if (venv / "bin" / "python").is_file() and (venv / ".vslm-install").is_file():
        return str(venv / "bin" / "python")
    try:
        import vllm  # noqa: F401

        return sys.executable
    except ImportError:
        return None


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def url(self) -> str:
        """What clients use."""
        return self.base_url

    @property
    def ready_url(self) -> str:
        """Answers HTTP 200 once the server is ready."""
        return f"{self.base_url}/models"

    def start(self, timeout: float = 300) -> "Server":
        if port_in_use(self.host, self.port):
            raise ServerError(f"port {self.port} on {self.host} is already in use — stop what runs there or pass --port <free port>")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w", encoding="utf-8")
        print(f"[serve] {self.name}: {' '.join(self.cmd)}  (log: {self.log_path})", flush=True)
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_tail()
                raise ServerError(f"{self.name} exited with code {self.proc.returncode} before it was ready — last log line: {tail}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    print(f"[serve] {self.name} ready at {self.url} (pid {self.proc.pid})", flush=True)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise ServerError(f"{self.name} did not answer on {self.ready_url} within {timeout:.0f}s — see {self.log_path}")

    def log_tail(self) -> str:
        try:
            lines = [l for l in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
        except OSError:
            return "(no log)"
        return lines[-1][:300] if lines else "(empty log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        print(f"[serve] {self.name} (pid {self.proc.pid}) stopped", flush=True)

    def __enter__(self) -> "Server":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def llamafactory_api(config: Path, overrides: list[str], port: int, log_path: Path, name: str = "llamafactory-api") -> Server:
    from ..train.run import llamafactory_cli

    cmd = [llamafactory_cli(), "api", str(config), *overrides]
    env = {"API_HOST": "127.0.0.1", "API_PORT": str(port), "API_MODEL_NAME": name}
    return Server(name, cmd, port, log_path, env)


def vllm_for(backend: str) -> str | None:
    """The vLLM Python for --backend: auto = vLLM when installed, else None (llamafactory-cli api serves);
    llamafactory = None; vllm = vLLM or a one-line error."""
    python = vllm_python() if backend in ("auto", "vllm") else None
    if backend == "vllm" and python is None:
        raise RecipeError("vLLM is not installed: run `make vllm` (CPU) or `pip install vllm` (GPU), or use --backend llamafactory")
    return python


def vllm_server(python: str, base_model: str, adapters: dict[str, str], settings: ServeSettings, port: int, log_path: Path,
                served_base: str = "base") -> Server:
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", base_model, "--served-model-name", served_base,
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(settings.max_model_len)]
    if settings.dtype:
        cmd += ["--dtype", settings.dtype]
    if settings.enforce_eager:
        cmd.append("--enforce-eager")
    if adapters:
        cmd += ["--enable-lora", "--max-lora-rank", str(settings.max_lora_rank), "--lora-modules"]
        cmd += [f"{name}={path}" for name, path in adapters.items()]
    env = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    if settings.worker_in_engine:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return Server("vllm", cmd, port, log_path, env)


def recipe_vllm_server(python: str, plan: Resolved, port: int, log_path: Path, model: str = "fine-tuned") -> Server:
    """One vLLM process with the settings of the recipe's _vllm.yaml stage. A LoRA recipe: the base model as `base` and
    its adapter as `<recipe>`, whatever `model` says. A full fine-tune (one model per vLLM process): `model="fine-tuned"`
    serves the trained model as `<recipe>`, `model="base"` the base as `base`."""
    base = str(ROOT / plan.base_model) if (ROOT / plan.base_model).exists() else plan.base_model
    if not plan.full_finetune:
        return vllm_server(python, base, {plan.recipe.name: str(ROOT / plan.adapter_dir)}, plan.serving(), port, log_path)
    if model == "base":
        return vllm_server(python, base, {}, plan.serving(), port, log_path)
    return vllm_server(python, str(ROOT / plan.merged_dir), {}, plan.serving(), port, log_path, served_base=plan.recipe.name)


def llama_cpp_server(python: str, gguf: Path, port: int, log_path: Path, alias: str, n_ctx: int = 2048) -> Server:
    """llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`, .venv-gguf) for one GGUF file; the
    chat template is the one stored in the file."""
    cmd = [python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias, "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(os.cpu_count() or 1)]
    return Server("llama-cpp-python", cmd, port, log_path)
