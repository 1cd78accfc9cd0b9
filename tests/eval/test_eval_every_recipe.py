"""Every recipe's whole evaluation set, base vs fine-tuned, through a real vLLM CPU server and into a report.

Each recipe gets a short tiny-profile training run (its own LoRA rank and targets, two stages for finance);
one vLLM server per model family serves the base with all of that family's adapters, as `vslm serve` does
for one recipe. The evaluation uses each recipe's system prompt and template settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run
from vslm.eval.evaluate import evaluate, load_eval_rows
from vslm.recipes.matrix import get_recipe, load_matrix, load_recipes, profile_overrides
from vslm.eval.report import write_report
from vslm.recipes.resolve import ServeSettings
from vslm.serve.servers import free_port, vllm_python, vllm_server

pytestmark = pytest.mark.slow
RECIPES = sorted(load_recipes())
PYTHON = vllm_python()


@pytest.fixture(scope="module")
def adapters(tiny_qwen2, tiny_qwen3, tmp_path_factory) -> dict[str, Path]:
    saves = tmp_path_factory.mktemp("saves")
    env = {**os.environ, "VSLM_SAVES": str(saves)}
    out = {}
    for name in RECIPES:
        result = run([sys.executable, "-m", "vslm", "train", name, "--profile", "tiny", "max_steps=5", "save_steps=5", "eval_steps=5", "max_samples=64",
                      "logging_steps=1"], env=env)
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
        recipe = get_recipe(name)
        out[name] = ROOT / profile_overrides(recipe, recipe.stage("infer"), "tiny", load_matrix(), str(saves))["adapter_name_or_path"]
        assert (out[name] / "adapter_model.safetensors").is_file(), out[name]
    return out


@pytest.fixture(scope="module")
def servers(adapters, tmp_path_factory):
    assert PYTHON, "vLLM is not installed: `make test` installs it with scripts/install_vllm.sh"
    matrix = load_matrix()
    started = {}
    try:
        for family, spec in matrix["families"].items():
            names = [n for n in RECIPES if get_recipe(n)["family"] == family]
            if not names:
                continue
            rank = max(get_recipe(n)["serve_max_lora_rank"] for n in names)
            server = vllm_server(PYTHON, str(ROOT / spec["tiny_model"]), {n: str(adapters[n]) for n in names},
                                 ServeSettings.cpu(max_model_len=2048, max_lora_rank=rank),
                                 free_port(), tmp_path_factory.mktemp(f"vllm-{family}") / "vllm.log")
            server.start(timeout=600)
            started[family] = server
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_eval_set_base_vs_fine_tuned_report(name, servers, tmp_path):
    recipe = get_recipe(name)
    server = servers[recipe["family"]]
    rows = load_eval_rows(recipe["eval_set"])
    results = {
        label: evaluate(rows, base_url=server.base_url, model=model, system=recipe["system"], cache_path=tmp_path / f"{label}.jsonl",
                        max_tokens=16, concurrency=16, structured=True, enable_thinking=recipe["enable_thinking"], label=f"{name}/{label}")
        for label, model in (("base", "base"), ("fine-tuned", name))
    }
    for res in results.values():
        assert set(res["answers"]) == {r["id"] for r in rows}, "every row of the evaluation set has an answer"
        assert res["summary"]["overall"]["n"] == len(rows)
    files = write_report(tmp_path / "report", title=f"{name}: base vs fine-tuned", rows=rows, results=results,
                         context={"recipe": name, "eval_set": recipe["eval_set"], "max_tokens": 16, "system": recipe["system"]})
    md = files["md"].read_text(encoding="utf-8")
    tasks = {r.get("task", "qa") for r in rows}
    expected = {"qa": "| key-fact recall |", "refusal": "| hallucination rate (should refuse) |", "classification": "## Classification:"}
    for task in tasks & set(expected):
        assert expected[task] in md, f"{task} rows but no `{expected[task]}` in the report"
    if "classification" in tasks:
        for report in (res["summary"]["classification"] for res in results.values()):
            assert all(rep["off_label"] == 0 for rep in report.values()), "structured choice keeps every answer a label"
    assert files["png"].stat().st_size > 0 and "## Side by side" in md
    by_category = md.split("## By category")[1].split("\n## ")[0]
    assert "| – | – |" not in by_category, "every category is scored by key-fact recall or accuracy"
