"""`vslm webui`: LlamaBoard on this repository's registry, on loopback, offline — driven in a real browser
(Debian's headless Chromium through Selenium and chromium-driver), plus quick checks of what it presets."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import ROOT
from vslm.recipes.matrix import load_recipes
from vslm.train.llamaboard import DATA_DIR, board_model_name, board_preset, offline_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = ROOT / "saves" / "webui"  # git-ignored artifacts
RECIPE = "telecom_r32"
USER_CONFIG = ROOT / "llamaboard_cache" / "user_config.yaml"  # LlamaBoard's own settings (language, last model)


def recipe_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "recipes" / f"{name}.yaml").read_text(encoding="utf-8"))


def first_row(dataset: str) -> dict:
    registry = json.loads((ROOT / "dataset_info.json").read_text(encoding="utf-8"))
    with (ROOT / registry[dataset]["file_name"]).open(encoding="utf-8") as f:
        return json.loads(f.readline())


# ---------------------------------------------------------------- quick: what `vslm webui` sets up


def test_offline_loopback_environment():
    env = offline_env(port=7999)
    assert env["GRADIO_SERVER_NAME"] == "127.0.0.1" and env["GRADIO_SERVER_PORT"] == "7999"
    assert env["GRADIO_ANALYTICS_ENABLED"] == "False" and env["GRADIO_SHARE"] == "0"
    from vslm.cli import build_parser

    args = build_parser().parse_args(["webui"])
    assert (args.host, args.port, args.open) == ("127.0.0.1", 7860, False)


def test_llamaboard_model_names():
    assert board_model_name("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen2.5-1.5B-Instruct"
    assert board_model_name("Qwen/Qwen3-0.6B") == "Qwen3-0.6B-Thinking"  # LlamaBoard 0.9.5 lists no plain "Qwen3-0.6B"
    assert board_model_name("models/tiny-qwen2") == "Custom"


def test_preset_is_the_recipe_in_llamaboard_fields():
    config = recipe_config(RECIPE)
    preset = board_preset(config)
    assert preset["train.dataset_dir"] == DATA_DIR == config["dataset_dir"]
    assert preset["train.dataset"] == ["telecom_train"]
    assert (preset["top.model_name"], preset["top.model_path"], preset["top.template"]) == (
        "Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", "qwen")
    assert (preset["train.lora_rank"], preset["train.lora_alpha"], preset["train.lora_dropout"]) == (32, 64, 0.05)
    assert (preset["train.learning_rate"], preset["train.num_train_epochs"]) == ("0.0001", "5")
    assert preset["train.compute_type"] == "bf16"
    extra = json.loads(preset["train.extra_args"])
    assert extra["default_system"] == config["default_system"] and extra["optim"] == "adamw_torch"
    assert extra["flash_attn"] == "fa2" and extra["enable_liger_kernel"] is True
    assert not {"stage", "do_train", "output_dir", "model_name_or_path"} & extra.keys()
    # Qwen3 switches land in LlamaBoard's own checkboxes; a two-stage recipe's SFT continues the pt adapter
    qwen3 = board_preset(recipe_config("platform_classifier"))
    assert qwen3["train.enable_thinking"] is False and "train.neat_packing" not in qwen3
    assert board_preset({**recipe_config("platform_classifier"), "neat_packing": True})["train.neat_packing"] is True
    assert qwen3["top.model_name"] == "Qwen3-0.6B-Thinking" and qwen3["top.template"] == "qwen3"
    two_stage = json.loads(board_preset(recipe_config("finance_rules"))["train.extra_args"])
    assert two_stage["adapter_name_or_path"] == "saves/finance_rules/pt_adapter"


def test_family_readmes_name_the_fields_llamaboard_shows():
    recipes = load_recipes()
    for md in sorted((ROOT / "recipes" / "families").glob("*.md")):
        section = md.read_text(encoding="utf-8").split("## LlamaBoard", 1)[1].split("\n## ", 1)[0]
        section = " ".join(section.split())
        name = re.search(r"Config path `(\w+)\.yaml`", section)[1]
        recipe = recipes[name]
        assert "`vslm webui`" in section and "Data dir `.`" in section, md.name
        assert f"Model name `{board_model_name(recipe['model'])}`" in section, md.name
        assert f"Dataset `{','.join(recipe['datasets'])}`" in section, md.name
        assert f"LoRA rank {recipe['lora']['rank']}, LoRA alpha {recipe['lora']['alpha']}" in section, md.name


def test_page_loses_its_third_party_tags():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from vslm.train.llamaboard import StripExternalTags

    page = ('<head><link rel="preconnect" href="https://fonts.googleapis.com" />\n<script\n src="https://cdnjs.cloudflare.com/x.js"'
            '\n async\n></script><link rel="stylesheet" href="./theme.css"><script src="./assets/index.js"></script></head>')
    app = Starlette(routes=[Route("/", lambda r: HTMLResponse(page)), Route("/j", lambda r: JSONResponse({"u": "https://x"}))],
                    middleware=[Middleware(StripExternalTags)])
    client = TestClient(app)
    html = client.get("/")
    assert "https://" not in html.text and "./theme.css" in html.text and "./assets/index.js" in html.text
    assert int(html.headers["content-length"]) == len(html.content)
    assert client.get("/j").json() == {"u": "https://x"}


# ---------------------------------------------------------------- slow: the real board in a real browser


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """`vslm webui` on a free loopback port, with LlamaBoard's own settings (llamaboard_cache/user_config.yaml)
    set to English for the run and put back afterwards; stopped by PID. LlamaBoard keeps its cache and
    saved arguments in the working directory (the repository root); folders this run creates are removed."""
    from vslm.serve.servers import free_port
    from helpers.board import board_server

    created = [d for d in (USER_CONFIG.parent, ROOT / "llamaboard_config") if not d.exists()]
    saved = USER_CONFIG.read_bytes() if USER_CONFIG.exists() else None
    USER_CONFIG.parent.mkdir(exist_ok=True)
    USER_CONFIG.write_text(yaml.safe_dump({"lang": "en", "hub_name": "huggingface", "last_model": None, "path_dict": {},
                                           "cache_dir": None}), encoding="utf-8")
    server = board_server(free_port(), tmp_path_factory.mktemp("webui") / "llamaboard.log")
    try:
        server.start(timeout=240)
        yield server
    finally:
        server.stop()
        if saved is None:
            USER_CONFIG.unlink(missing_ok=True)
        else:
            USER_CONFIG.write_bytes(saved)
        for folder in created:  # LlamaBoard's cache and the presets, when this run made them: leave no trace
            shutil.rmtree(folder, ignore_errors=True)
    assert server.proc.poll() is not None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "headless Chromium is missing: run `make test-packages` (scripts/install_test_packages.sh; `make test` runs it first)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1800", "--lang=en-US",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # explicit driver: no Selenium Manager
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


class Board:
    """LlamaBoard's page, found by the field labels it shows (LlamaBoard sets no element ids)."""

    def __init__(self, driver, url: str) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.url = driver, url
        self.wait = WebDriverWait(driver, 30)

    def open(self) -> "Board":
        from selenium.webdriver.common.by import By

        self.d.get(self.url)
        # the labels arrive with LlamaBoard's first event (its language), after the page has loaded
        self.wait.until(lambda d: "Data dir" in d.find_element(By.TAG_NAME, "body").text)
        return self

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.TAG_NAME, "body").text

    def block(self, label: str):
        from selenium.webdriver.common.by import By

        xpath = (f"//span[@data-testid='block-info' and normalize-space()='{label}']"
                 "/ancestor::div[contains(concat(' ', @class, ' '), ' block ')][1]")
        return self.wait.until(lambda d: d.find_element(By.XPATH, xpath))

    def field(self, label: str, css: str = "textarea, input"):
        from selenium.webdriver.common.by import By

        return self.block(label).find_element(By.CSS_SELECTOR, css)

    def button(self, text: str):
        from selenium.webdriver.common.by import By

        el = self.wait.until(lambda d: d.find_element(By.XPATH, f"//button[normalize-space()='{text}']"))
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        return el

    def type(self, label: str, value: str, css: str = "textarea, input") -> None:
        from selenium.webdriver.common.keys import Keys

        el = self.field(label, css)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.send_keys(Keys.CONTROL, "a")
        el.send_keys(Keys.DELETE)
        el.send_keys(value)
        el.send_keys(Keys.TAB)  # Gradio commits sliders' number boxes on blur
        self.wait.until(lambda d: el.get_attribute("value") == value)

    def options(self, label: str) -> list[str]:
        from selenium.webdriver.common.by import By

        el = self.field(label, "input")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
        items = self.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "ul.options li[data-testid='dropdown-option']"))
        return [i.get_attribute("aria-label") for i in items]

    def choose(self, label: str, value: str, search: bool = False) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        el = self.field(label, "input")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
        if search:  # long lists: type to filter
            el.send_keys(Keys.CONTROL, "a")
            el.send_keys(value)
        self.wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"ul.options li[aria-label='{value}']")).click()
        el.send_keys(Keys.ESCAPE)

    def expand(self, accordion: str) -> None:
        from selenium.webdriver.common.by import By

        el = self.d.find_element(By.XPATH, f"//button[contains(@class, 'label-wrap')][.//span[normalize-space()='{accordion}']]")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        if "open" not in (el.get_attribute("class") or "").split():
            el.click()

    def preview_command(self) -> str:
        from selenium.webdriver.common.by import By

        xpath = "//code[contains(., 'llamafactory-cli train')]"
        before = {e.text for e in self.d.find_elements(By.XPATH, xpath)}
        self.button("Preview command").click()
        fresh = self.wait.until(lambda d: [e.text for e in d.find_elements(By.XPATH, xpath) if e.text not in before])
        return fresh[0]

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = self.d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))


def command_args(cmd: str) -> dict[str, str]:
    """`llamafactory-cli train \\ --key value \\ ...` as LlamaBoard previews it -> {key: value}."""
    assert cmd.lstrip().startswith("llamafactory-cli train"), cmd[:200]
    return {m[1]: m[2].strip() for m in re.finditer(r"--(\w+) ([^\\\n]*)", cmd)}


def loopback_only(driver, base: str) -> list[str]:
    """URLs the page requested that are not the board itself (http, https, ws, wss)."""
    host = urlsplit(base).netloc
    outside = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            url = message["params"].get("request", {}).get("url") or message["params"].get("url", "")
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != host:
                outside.append(url)
    return outside


@pytest.mark.slow
def test_llamaboard_trains_from_this_repository_registry(board, browser):
    from selenium.webdriver.common.by import By

    t0 = time.monotonic()
    page = Board(browser, board.url).open()
    config, row = recipe_config(RECIPE), first_row("telecom_train")

    # Data dir: LlamaBoard 0.9.5 starts at its hard-coded `data`; `.` is this repository's dataset_info.json
    assert page.field("Data dir").get_attribute("value") == "data"
    page.type("Data dir", DATA_DIR)
    choices = page.options("Dataset")
    assert {"telecom_train", "finance_train", "platform_train", "general_train"} <= set(choices), choices
    page.choose("Dataset", "telecom_train")

    # the dataset preview shows the registry's file: its row count and the first row
    preview = page.button("Preview dataset")
    page.wait.until(lambda d: preview.is_enabled())
    preview.click()
    page.wait.until(lambda d: row["instruction"] in page.text())
    samples = page.d.find_element(By.CSS_SELECTOR, "[data-testid='json']").text  # the "Samples" JSON view
    assert row["instruction"] in samples and row["output"] in samples and '"instruction"' in samples
    assert "root=" not in samples  # rows as JSON, not pydantic's repr (gradio#12341, worked around by vslm webui)
    rows = sum(1 for _ in (ROOT / "datasets" / "telecom" / "telecom_train.jsonl").open(encoding="utf-8"))
    assert page.field("Count", "input").get_attribute("value") == str(rows)
    page.screenshot(SHOTS / "llamaboard_dataset.png")
    page.button("Close").click()

    # telecom_r32 by hand: the model fills its path and chat template
    page.choose("Model name", "Qwen2.5-1.5B-Instruct", search=True)
    page.wait.until(lambda d: page.field("Model path").get_attribute("value") == config["model_name_or_path"])
    assert page.field("Chat template", "input").get_attribute("value") == config["template"]
    assert page.field("Finetuning method", "input").get_attribute("value") == "lora"
    page.type("Learning rate", str(config["learning_rate"]))
    page.type("Epochs", str(config["num_train_epochs"]))
    page.type("Cutoff length", str(config["cutoff_len"]), "input[type=number]")
    page.type("Batch size", str(config["per_device_train_batch_size"]), "input[type=number]")
    page.type("Gradient accumulation", str(config["gradient_accumulation_steps"]), "input[type=number]")
    page.expand("LoRA configurations")
    page.type("LoRA rank", str(config["lora_rank"]), "input[type=number]")
    page.type("LoRA alpha", str(config["lora_alpha"]), "input[type=number]")
    page.type("LoRA dropout", str(config["lora_dropout"]), "input[type=number]")
    page.expand("Extra configurations")
    page.type("Extra arguments", json.dumps({"optim": "adamw_torch", "default_system": config["default_system"]}, ensure_ascii=False))

    args = command_args(page.preview_command())
    expected = {"stage": "sft", "finetuning_type": "lora", "dataset_dir": ".", "dataset": "telecom_train",
                "model_name_or_path": config["model_name_or_path"], "template": "qwen", "lora_rank": "32",
                "lora_alpha": "64", "lora_dropout": "0.05", "lora_target": "all", "learning_rate": "0.0001",
                "num_train_epochs": "5.0", "cutoff_len": "1024", "per_device_train_batch_size": "4",
                "gradient_accumulation_steps": "4", "default_system": config["default_system"]}
    assert {k: args.get(k) for k in expected} == expected
    assert args["output_dir"].startswith("saves/Qwen2.5-1.5B-Instruct/lora/train_")  # git-ignored saves/
    page.screenshot(SHOTS / "llamaboard.png")

    # the same recipe in one step: the preset `vslm webui` wrote, via Config path + Load arguments
    page.open()
    assert page.field("Data dir").get_attribute("value") == "data"
    page.choose("Config path", f"{RECIPE}.yaml")
    page.button("Load arguments").click()
    page.wait.until(lambda d: page.field("Data dir").get_attribute("value") == DATA_DIR)
    preset_args = command_args(page.preview_command())
    assert {k: preset_args.get(k) for k in expected} == expected
    for key in ("flash_attn", "warmup_ratio", "save_total_limit", "preprocessing_num_workers", "seed"):
        assert preset_args[key] == str(config[key]), key
    assert preset_args["enable_liger_kernel"] == "True"

    assert loopback_only(browser, board.url) == []  # fonts, scripts and API calls all came from the board
    assert SHOTS.joinpath("llamaboard.png").stat().st_size > 50_000
    print(f"LlamaBoard browser checks took {time.monotonic() - t0:.0f}s; screenshots in {SHOTS}")
