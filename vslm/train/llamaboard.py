"""`vslm webui`: LlamaBoard (LlamaFactory's web UI, what `llamafactory-cli webui` starts) on this repository.

LlamaBoard 0.9.5 reads every path relative to its working directory, so it runs from the repository root:
the dataset registry is `dataset_info.json` there, i.e. Data dir `.` (what every recipe uses). Its
"Data dir" field starts at the hard-coded `data` (llamafactory.webui.common.DEFAULT_DATA_DIR) — neither its
user config (llamaboard_cache/user_config.yaml) nor an environment variable changes that — so either type
`.` there, or load a recipe preset: LlamaBoard's "Load arguments" button reads saved arguments from
llamaboard_config/<Config path>, and this command writes one preset per recipe there
(llamaboard_config/<recipe>.yaml, every field of the recipe's SFT stage, Data dir `.` included).

Offline and private by default: bound to 127.0.0.1, no Gradio share link, Gradio analytics and Hugging Face
telemetry off, and the page uses Gradio's bundled font instead of Google Fonts and drops the third-party
tags of Gradio's page template, so a browser opening it fetches nothing but the board itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from ..core.jsonio import atomic_write_text
from ..recipes.matrix import load_matrix, load_recipes
from ..recipes.resolve import dataset_names, resolve
from ..core.paths import ROOT
from ..core.errors import ServerError
from ..serve.servers import port_in_use

DATA_DIR = "."
DEFAULT_PORT = 7860  # Gradio's default, as `llamafactory-cli webui`
CONFIG_DIR = "llamaboard_config"  # llamafactory.webui.common.DEFAULT_CONFIG_DIR, relative to the working directory
CUSTOM_MODEL = "Custom"

# recipe key -> LlamaBoard element id (Train tab / top bar), with the value type LlamaBoard's component expects
_FIELDS: dict[str, tuple[str, type | None]] = {
    "finetuning_type": ("top.finetuning_type", None),
    "template": ("top.template", None),
    "dataset_dir": ("train.dataset_dir", str),
    "learning_rate": ("train.learning_rate", str),  # Textbox
    "num_train_epochs": ("train.num_train_epochs", str),
    "max_samples": ("train.max_samples", str),
    "max_grad_norm": ("train.max_grad_norm", str),
    "cutoff_len": ("train.cutoff_len", None),
    "per_device_train_batch_size": ("train.batch_size", None),
    "gradient_accumulation_steps": ("train.gradient_accumulation_steps", None),
    "val_size": ("train.val_size", None),
    "lr_scheduler_type": ("train.lr_scheduler_type", None),
    "logging_steps": ("train.logging_steps", None),
    "save_steps": ("train.save_steps", None),
    "warmup_steps": ("train.warmup_steps", None),
    "packing": ("train.packing", None),
    "neat_packing": ("train.neat_packing", None),
    "train_on_prompt": ("train.train_on_prompt", None),
    "mask_history": ("train.mask_history", None),
    "enable_thinking": ("train.enable_thinking", None),
    "report_to": ("train.report_to", None),
    "lora_rank": ("train.lora_rank", None),
    "lora_alpha": ("train.lora_alpha", None),
    "lora_dropout": ("train.lora_dropout", None),
    "lora_target": ("train.lora_target", str),
    "additional_target": ("train.additional_target", str),
    "loraplus_lr_ratio": ("train.loraplus_lr_ratio", None),
    "use_rslora": ("train.use_rslora", None),
    "use_dora": ("train.use_dora", None),
}
# set by LlamaBoard itself (stage dropdown, output folder, compute type) or always on there
_BOARD_OWNED = {"stage", "do_train", "output_dir", "plot_loss", "trust_remote_code", "bf16", "fp16", "pure_bf16",
                "model_name_or_path", "dataset"}


def offline_env(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> dict[str, str]:
    """Environment for LlamaBoard: loopback, the given port, nothing sent anywhere."""
    return {
        "GRADIO_SERVER_NAME": host,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",  # no usage analytics, no version check against gradio's servers
        "GRADIO_SHARE": "0",  # no public *.gradio.live tunnel
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "no_proxy": "localhost,127.0.0.1,0.0.0.0",  # what llamafactory's fix_proxy sets: Gradio checks its own URL
        "NO_PROXY": "localhost,127.0.0.1,0.0.0.0",
    }


def board_model_name(model: str) -> str:
    """The "Model name" LlamaBoard lists for a Hugging Face id (e.g. Qwen/Qwen3-0.6B -> Qwen3-0.6B-Thinking),
    else "Custom" (then Model path is typed)."""
    from llamafactory.extras.constants import SUPPORTED_MODELS, DownloadSource

    names = [name for name, paths in SUPPORTED_MODELS.items() if paths.get(DownloadSource.DEFAULT) == model]
    short = model.rstrip("/").split("/")[-1]
    return short if short in names else (names[0] if names else CUSTOM_MODEL)


def board_preset(train_config: dict[str, Any]) -> dict[str, Any]:
    """LlamaBoard's saved-arguments mapping (element id -> value) for one SFT recipe file; keys LlamaBoard has
    no field for go to "Extra arguments" (a JSON object LlamaBoard merges over its own arguments)."""
    if train_config.get("stage", "sft") != "sft":
        raise ValueError(f"LlamaBoard presets are for SFT stages, not stage {train_config.get('stage')!r}")
    model = str(train_config["model_name_or_path"])
    preset: dict[str, Any] = {"top.model_name": board_model_name(model), "top.model_path": model,
                              "train.dataset": dataset_names(train_config)}
    extra: dict[str, Any] = {"optim": "adamw_torch"}  # LlamaBoard's default Extra arguments
    for key, value in train_config.items():
        if key in _FIELDS:
            elem, kind = _FIELDS[key]
            preset[elem] = kind(value) if kind else value
        elif key not in _BOARD_OWNED:
            extra[key] = value
    precision = [p for p in ("pure_bf16", "bf16", "fp16") if train_config.get(p)]
    preset["train.compute_type"] = precision[0] if precision else "fp32"
    preset["train.extra_args"] = json.dumps(extra, ensure_ascii=False)
    return preset


def write_presets() -> list[Path]:
    """llamaboard_config/<recipe>.yaml for every recipe's SFT stage as shipped (LlamaBoard: Config path, Load arguments)."""
    written = []
    matrix = load_matrix()
    for name, recipe in load_recipes().items():
        train = resolve(recipe, None, matrix=matrix).stage("train")
        stage, config = train.stage, train.config
        out = ROOT / CONFIG_DIR / f"{name}.yaml"
        header = (f"# LlamaBoard arguments for recipe `{name}`, written by `vslm webui` from {stage.path.as_posix()}.\n"
                  f"# In LlamaBoard's Train tab: Config path `{name}.yaml`, then Load arguments.\n")
        atomic_write_text(out, header + yaml.safe_dump(board_preset(config), allow_unicode=True, sort_keys=False))
        written.append(out)
    return written


def _offline_theme(demo) -> None:
    """Gradio 5's default theme loads its font from Google Fonts; use the same theme with the font Gradio ships."""
    import gradio as gr
    from gradio.themes.utils.fonts import LocalFont

    theme = gr.themes.Default(font=[LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"])
    # what gr.Blocks.__init__ derives from its theme (gradio==5.50.0, pinned; its launch() takes no theme)
    demo.theme, demo.theme_css, demo.stylesheets = theme, theme._get_theme_css(), theme._stylesheets
    demo.theme_hash = hashlib.sha256(demo.theme_css.encode("utf-8")).hexdigest()


def _json_outputs_as_data() -> None:
    """Gradio 5 answers events run with queue=False (LlamaBoard's "Preview dataset") by serialising a gr.JSON
    value with str(), so the rows show as the Python text "root=[{...}]" (gradio issue #12341, fixed in gradio 6,
    which LlamaFactory 0.9.5 does not allow). Serialise pydantic models as their data instead; everything else
    is encoded exactly as before."""
    import orjson
    import pydantic
    from gradio import routes

    def default(obj):
        return obj.model_dump() if isinstance(obj, pydantic.BaseModel) else str(obj)

    def render(content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME, default=default)

    routes.ORJSONResponse._render = staticmethod(render)


_EXTERNAL_TAGS = re.compile(rb'<link[^>]*href="https?://[^"]*"[^>]*>|<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', re.S)


class StripExternalTags:
    """ASGI middleware: drop the tags Gradio's page template hard-codes to reach third parties (a cdnjs
    iframe-resizer script, only used when the page is embedded in a Hugging Face Space, and Google Fonts
    preconnects), so the browser fetches nothing but the board itself."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start: dict | None = None
        chunks: list[bytes] = []

        async def filtered_send(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if b"text/html" in headers.get(b"content-type", b"") and b"content-encoding" not in headers:
                    start = message  # hold it until the body is complete
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = _EXTERNAL_TAGS.sub(b"", b"".join(chunks))
                headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, filtered_send)


def run(host: str = "127.0.0.1", port: int = DEFAULT_PORT, open_browser: bool = False, presets: bool = True) -> None:
    """Serve LlamaBoard from the repository root until interrupted (llamafactory.webui.interface.run_web_ui,
    with our host, port, offline settings and no automatic browser tab unless asked)."""
    if port_in_use(host, port):
        raise ServerError(f"port {port} on {host} is already in use — stop what runs there or pass --port <free port>")
    os.chdir(ROOT)  # LlamaBoard's data dir `.`, saves/, llamaboard_cache/ and llamaboard_config/ are relative paths
    os.environ.update(offline_env(host, port))
    if presets:
        names = [p.stem for p in write_presets()]
        print(f"[webui] recipe presets in {CONFIG_DIR}/: {', '.join(f'{n}.yaml' for n in names)} "
              "(Train tab: Config path, then Load arguments)", flush=True)
    from llamafactory.webui.interface import create_ui

    demo = create_ui()
    _offline_theme(demo)
    _json_outputs_as_data()
    print(f"[webui] LlamaBoard on http://{host}:{port} — Train tab: Data dir `{DATA_DIR}` to see this repository's datasets",
          flush=True)
    from starlette.middleware import Middleware

    demo.queue().launch(server_name=host, server_port=port, share=False, inbrowser=open_browser,
                        app_kwargs={"middleware": [Middleware(StripExternalTags)]})

