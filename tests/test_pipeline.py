"""Real llamafactory-cli runs on the tiny model: training (loss falls, run record), merge equivalence,
a real OpenAI-compatible server on loopback, evaluation on its answers, and one-line user errors."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run

pytestmark = pytest.mark.slow
VSLM = [sys.executable, "-m", "vslm"]


@pytest.fixture(scope="session")
def telecom_adapter(tiny_qwen2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("telecom") / "adapter"
    result = run(VSLM + ["train", "telecom_r32", "--profile", "tiny", "max_steps=40", "logging_steps=2", "save_steps=20",
                         f"output_dir={out}"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def telecom_merged(telecom_adapter) -> Path:
    merged = telecom_adapter.parent / "merged"
    result = run(VSLM + ["merge", "telecom_r32", "--profile", "tiny", f"adapter_name_or_path={telecom_adapter}", f"export_dir={merged}"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return merged


def answer_loss(model, tok, rows: list[dict], system: str) -> float:
    """Mean teacher-forced loss of the answers (prompt tokens masked, as LlamaFactory trains): deterministic, unlike
    the per-batch training losses of a few steps."""
    import torch

    total, count = 0.0, 0
    for row in rows:
        prompt = tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": row["instruction"]}],
                                         add_generation_prompt=True, tokenize=False)
        prompt_ids = tok(prompt)["input_ids"]
        ids = prompt_ids + tok(row["output"] + "<|im_end|>")["input_ids"]
        labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
        with torch.no_grad():
            out = model(torch.tensor([ids]), labels=torch.tensor([labels]))
        n = len(ids) - len(prompt_ids)
        total, count = total + out.loss.item() * n, count + n
    return total / count


def test_training_lowers_the_loss_of_its_answers_and_writes_a_run_record(tiny_qwen2, telecom_adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vslm.core.jsonio import read_jsonl

    log = [json.loads(l) for l in (telecom_adapter / "trainer_log.jsonl").read_text().splitlines()]
    assert len([item for item in log if "loss" in item]) == 20
    rows = read_jsonl(ROOT / "datasets" / "telecom" / "telecom_train.jsonl")[:32]
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32).eval()
    before = answer_loss(base, tok, rows, "你是一名中国移动的专业客服。")
    after = answer_loss(PeftModel.from_pretrained(base, telecom_adapter).eval(), tok, rows, "你是一名中国移动的专业客服。")
    assert after < before - 0.05, f"40 LoRA steps did not lower the loss of training answers: {before:.3f} -> {after:.3f}"
    record = json.loads((telecom_adapter / "run_record.json").read_text())
    assert record["recipe"] == "telecom_r32" and record["profile"] == "tiny" and record["seed"] == 42
    assert record["recipe_file"] == "recipes/telecom_r32.yaml"
    assert record["overrides"]["max_steps"] == 40 and record["overrides"]["use_cpu"] is True
    data = record["datasets"]["telecom_train"]
    assert data["rows"] >= 600 and len(data["sha256"]) == 64
    assert record["packages"]["llamafactory"] == "0.9.5" and record["git"]["commit"]
    adapter_cfg = json.loads((telecom_adapter / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 32 and adapter_cfg["lora_alpha"] == 64


def test_merged_model_equals_base_plus_adapter(tiny_qwen2, telecom_adapter, telecom_merged):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(telecom_merged)
    ids = tok.apply_chat_template([{"role": "system", "content": "你是一名中国移动的专业客服。"},
                                   {"role": "user", "content": "光猫亮红灯怎么办？"}], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    with torch.no_grad():
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, telecom_adapter).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(telecom_merged, dtype=torch.float32).eval()(ids).logits
    assert (adapted - plain).abs().max() > 1e-2, "the adapter should change the model"
    assert torch.allclose(merged, adapted, atol=1e-4, rtol=1e-4), f"max diff {(merged - adapted).abs().max()}"


@pytest.fixture(scope="session")
def api_server(telecom_merged):
    from vslm.serve.servers import free_port, llamafactory_api

    server = llamafactory_api(ROOT / "recipes" / "telecom_r32_infer.yaml",
                              [f"model_name_or_path={telecom_merged}", "adapter_name_or_path=null"],
                              free_port(), telecom_merged.parent / "api.log", name="telecom-test")
    server.start(timeout=180)
    yield server
    server.stop()
    assert server.proc.poll() is not None, "server must be gone after stop()"


def test_api_server_answers_a_chat_completion(api_server):
    from openai import OpenAI

    client = OpenAI(base_url=api_server.base_url, api_key="EMPTY")
    resp = client.chat.completions.create(model="telecom-test", temperature=0, max_tokens=16,
                                          messages=[{"role": "user", "content": "光猫亮红灯怎么办？"}])
    # what the tiny merged model says first is luck (it may end at once); the server's side of the contract is not
    choice = resp.choices[0]
    assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length"), resp
    assert resp.usage.completion_tokens <= 16 and resp.model, resp


def test_evaluation_on_a_real_server_computes_metrics_and_resumes(api_server, tmp_path):
    from vslm.eval.evaluate import evaluate, load_eval_rows

    rows = load_eval_rows("telecom_eval", limit=6)
    kw = dict(base_url=api_server.base_url, model="telecom-test", system="你是一名中国移动的专业客服。",
              cache_path=tmp_path / "cache.jsonl", max_tokens=24, strict_model=False)
    first = evaluate(rows, **kw)
    overall = first["summary"]["overall"]
    assert overall["n"] == 6 and 0 <= overall["key_fact_recall"] <= 1 and overall["rouge-l"] is not None
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 6
    second = evaluate(rows, **kw)  # every answer comes from the cache: nothing is asked again
    assert second["answers"] == first["answers"]
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 6


def test_rag_evaluation_on_a_real_server_adds_the_passages_and_counts_their_tokens(api_server, tiny_qwen2, tmp_path):
    """The demo's RAG step against a real `llamafactory-cli api`: the retrieved passages reach the model (its prompt
    grows by the passages' tokens under the served tokenizer), every answer is verified, the rows are scored as
    written. What the tiny model answers is not asserted."""
    from vslm.eval import rag
    from vslm.eval.evaluate import evaluate, load_eval_rows
    from vslm.recipes.matrix import get_recipe
    from vslm.pipeline import token_counter

    rows = load_eval_rows("telecom_eval", limit=6)
    found, _ = rag.retrieve(rag.Index.build(rag.knowledge_passages(get_recipe("telecom_r32"))), rows, 3)
    passages = rag.passage_texts(found)
    count = token_counter(tiny_qwen2)
    kw = dict(base_url=api_server.base_url, model="telecom-test", system="你是一名中国移动的专业客服。", max_tokens=24,
              strict_model=False, passages=passages, count_tokens=count)
    plain = evaluate(rows, cache_path=tmp_path / "plain.jsonl", **kw)
    with_rag = evaluate(rows, cache_path=tmp_path / "rag.jsonl", template=rag.TEMPLATE, **kw)
    added = sum(count(rag.passage_block(passages[r["id"]])) for r in rows) / len(rows)
    assert with_rag["prompt"]["tokens"] - plain["prompt"]["tokens"] >= added
    for result in (plain, with_rag):
        assert result["verification"]["n"] == 6 and result["summary"]["overall"]["n"] == 6
        assert all(0.0 <= s["consistency"] <= 1.0 for s in result["scores"].values())
        assert result["timing"]["asked"] == 6 and result["timing"]["seconds_per_answer"] > 0


def _one_line_error(result) -> str:
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert lines and lines[-1].startswith("error: "), result.stderr[-2000:]
    return lines[-1]


def test_missing_model_path_is_one_line_error():
    line = _one_line_error(run(VSLM + ["train", "telecom_r32", "--profile", "tiny", "model_name_or_path=models/not-built"]))
    assert "model_name_or_path `models/not-built` does not exist" in line and "vslm build-tiny" in line


def test_unregistered_dataset_is_one_line_error(tiny_qwen2):
    line = _one_line_error(run(VSLM + ["train", "telecom_r32", "--profile", "tiny", "dataset=telecom_nope"]))
    assert "dataset `telecom_nope` is not registered in dataset_info.json" in line and "vslm convert" in line


def test_port_in_use_is_one_line_error(tiny_qwen2):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_error(run(VSLM + ["serve", "telecom_r32", "--profile", "tiny", "--backend", "llamafactory", "--port", str(port)]))
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line


@pytest.mark.slow
def test_a_full_fine_tune_is_served_by_its_own_vllm_process_beside_the_base(tiny_qwen2, tmp_path, monkeypatch):
    """tiny_full: train two steps, `merge` is a no-op that names the trained model, and the evaluation serves the base
    and the fine-tuned model from two vLLM processes one after the other (vLLM serves one model per process), asking
    only the held-out rows about the trained rows plus the out-of-scope ones."""
    from vslm.eval.evaluate import about_trained_facts, load_eval_rows, taught_rows
    from vslm.pipeline import serve_and_evaluate
    from vslm.recipes.matrix import get_recipe
    from vslm.recipes.resolve import resolve
    from vslm.serve.servers import vllm_python
    from vslm.train.run import merge

    assert vllm_python(), "vLLM is not installed: `make test` installs it with scripts/install_vllm.sh"
    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    result = run([sys.executable, "-m", "vslm", "train", "telecom_r32", "--profile", "tiny_full", "max_steps=2", "save_steps=2"],
                 env={**os.environ, "VSLM_SAVES": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    recipe = get_recipe("telecom_r32")
    plan = resolve(recipe, "tiny_full")
    assert (plan.trained_dir / "model.safetensors").is_file() and not (plan.trained_dir / "adapter_config.json").exists()
    assert merge(recipe, "tiny_full") == plan.trained_dir
    ev = serve_and_evaluate(recipe, "tiny_full", tmp_path / "eval", backend="vllm", concurrency=4)
    max_samples = plan.stage("train").config["max_samples"]
    asked = about_trained_facts(load_eval_rows("telecom_eval"), ["telecom_train"], max_samples)
    assert ev["max_samples"] == max_samples and ev["fine_tuned"] == plan.merged_dir
    assert ev["rows"] == asked and len(asked) < len(load_eval_rows("telecom_eval"))
    assert ev["taught_rows"] == taught_rows(asked, ["telecom_train"], "telecom_eval")
    logs = {label: (tmp_path / "eval" / "logs" / f"vllm-{label}.log").read_text(encoding="utf-8") for label in ("base", "fine-tuned")}
    for label in ("base", "fine-tuned"):
        assert set(ev["results"][label]["answers"]) == {r["id"] for r in ev["rows"]}
    assert f"model='{plan.merged_dir}'" in logs["fine-tuned"] and str(plan.merged_dir) not in logs["base"]
    assert "tiny-qwen2" in logs["base"]


def test_answers_cached_for_one_trained_model_are_never_reused_for_a_retrained_one(tmp_path, monkeypatch):
    """The demo's answer cache (what a rerun after Ctrl-C resumes from) is kept per trained model: a new run record
    (a new training run) gets a new folder, the same one gets the same folder back."""
    from vslm.pipeline import answer_cache_dir, trained_record
    from vslm.recipes.matrix import get_recipe
    from vslm.recipes.resolve import resolve

    monkeypatch.setenv("VSLM_SAVES", str(tmp_path))
    plan = resolve(get_recipe("telecom_r32"), "tiny_full")
    assert answer_cache_dir(trained_record(plan), tmp_path / "eval").name == "untrained"
    plan.trained_dir.mkdir(parents=True)
    (plan.trained_dir / "run_record.json").write_text('{"finished_at": "2026-12-01T10:00:00+00:00"}', encoding="utf-8")
    first = answer_cache_dir(trained_record(plan), tmp_path / "eval")
    assert first == answer_cache_dir(trained_record(plan), tmp_path / "eval")
    (plan.trained_dir / "run_record.json").write_text('{"finished_at": "2026-12-01T11:00:00+00:00"}', encoding="utf-8")
    assert answer_cache_dir(trained_record(plan), tmp_path / "eval") != first and first.parent == tmp_path / "eval" / "cache"
