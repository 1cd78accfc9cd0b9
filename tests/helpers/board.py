"""`vslm webui` started as a server the tests (and nothing else) stop by PID: the browser tests of LlamaBoard."""

from __future__ import annotations

import sys
from pathlib import Path

from vslm.serve.servers import Server
from vslm.train.llamaboard import offline_env


class BoardServer(Server):
    """LlamaBoard started by `vslm webui` in its own process group (stopped by PID like every vslm server);
    ready when its page answers."""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def ready_url(self) -> str:
        return self.url


def board_server(port: int, log_path: Path, host: str = "127.0.0.1") -> BoardServer:
    cmd = [sys.executable, "-m", "vslm", "webui", "--host", host, "--port", str(port)]
    return BoardServer("llamaboard", cmd, port, log_path, offline_env(host, port), host=host)
