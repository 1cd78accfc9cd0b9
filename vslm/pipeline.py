"""The main job: tiny model -> fine-tuning -> merge -> served model -> base vs fine-tuned evaluation -> report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .eval.evaluate import about_trained_facts, evaluate, load_eval_rows, taught_rows
from .eval.judge import JudgeSpec
from .recipes.matrix import Recipe, format_overrides, get_recipe
from .recipes.resolve import DEMO_PROFILE, resolve
from .core.paths import ROOT, rel
from .eval.report import headline, write_report
from .serve.servers import free_port, llamafactory_api, recipe_vllm_server, vllm_for
from .models.tiny import build_tiny
from .train.run import merge, run_llamafactory, train


def _step(n: int, total: int, text: str) -> None:
    print(f"\n==> [{n}/{total}] {text}", flush=True)


def serve_and_evaluate(recipe: Recipe, profile: str | None, out_dir: Path, *, backend: str = "auto", port: int | None = None,
                       limit: int | None = None, concurrency: int = 8, general_set: str | None = None,
                       judge: JudgeSpec | None = None, rag: bool = False, rag_k: int | None = None,
                       rag_template: str | None = None, regenerate_below: float | None = None) -> dict[str, Any]:
    """Evaluate base and fine-tuned on the recipe's held-out set, its taught set (the training questions behind it, an
    injection check) and the general set; returns {"results", "taught", "general", "backend", "rows", "taught_rows",
    "general_rows", "base_model", "merged_dir", "fine_tuned", "rag"}. With `rag`, on the held-out set only (to keep the
    run short): top-k passages are retrieved from the recipe's knowledge (vslm.eval.rag), every answer is verified against
    them (vslm.eval.verify), and both models answer again with the passages in the prompt ("base + RAG", "fine-tuned + RAG")."""
    plan = resolve(recipe, profile)
    base_model, adapter_dir, merged_dir = plan.base_model, plan.adapter_dir, plan.merged_dir
    record = trained_record(plan)
    max_samples = trained_max_samples(plan, record)
    sets = {"eval": about_trained_facts(load_eval_rows(recipe["eval_set"], limit), recipe["datasets"], max_samples)}
    taught = taught_rows(sets["eval"], recipe["datasets"], recipe["eval_set"])
    if taught:
        sets["taught"] = taught
    if general_set:
        sets["general"] = load_eval_rows(general_set, limit, default_measure="general")
    common = dict(system=recipe["system"], max_tokens=recipe["max_new_tokens"] if not profile else 96,
                  concurrency=concurrency, enable_thinking=recipe["enable_thinking"], judge=judge)
    retrieval, extra = None, {name: {} for name in sets}
    if rag:
        from .eval.rag import DEFAULT_K, TEMPLATE, check_template, retrieval_for

        rag_k, rag_template = rag_k or DEFAULT_K, check_template(rag_template or TEMPLATE)
        retrieval, passages = retrieval_for(recipe, profile, sets["eval"], rag_k, rag_template)
        # every held-out answer is verified against the passages; the "+ RAG" runs also see them
        extra["eval"] = dict(passages=passages, regenerate_below=regenerate_below,
                             count_tokens=token_counter(ROOT / base_model))
    rag_runs = {"eval": rag_template} if rag else {}
    results_rag: dict[str, dict] = {}
    python = vllm_for(backend)
    port = port or free_port()
    logs = out_dir / "logs"
    results: dict[str, dict[str, dict]] = {name: {} for name in sets}
    cache = answer_cache_dir(record, out_dir)

    def ask(server, set_name: str, label: str, model: str, **how) -> None:
        """One set through one served model; a set in rag_runs once more with the passages in the prompt."""
        rows = sets[set_name]
        results[set_name][label] = evaluate(rows, base_url=server.base_url, model=model, cache_path=cache / f"{set_name}-{label}.jsonl",
                                            label=f"{set_name}/{label}", **how, **common, **extra[set_name])
        if set_name in rag_runs:
            results_rag[f"{label} + RAG"] = evaluate(
                rows, base_url=server.base_url, model=model, cache_path=cache / f"{set_name}-{label}-rag.jsonl",
                label=f"{set_name}/{label} + RAG", template=rag_runs[set_name], **how, **common, **extra[set_name])

    # the servers to start one after the other, each with the labels it serves
    models = {"base": "base", "fine-tuned": recipe.name}
    if python and not plan.full_finetune:  # one vLLM process: the base and the recipe's adapter
        servings = [(recipe_vllm_server(python, plan, port, logs / "vllm.log"), list(models))]
    elif python:  # a full fine-tune is a model of its own, and vLLM serves one model per process
        servings = [(recipe_vllm_server(python, plan, port, logs / f"vllm-{label}.log", model=label), [label]) for label in models]
    else:  # llamafactory-cli api: one model per process, under the name it is given
        servings = [(llamafactory_api(ROOT / plan.stage("infer").recipe_file, [f"model_name_or_path={path}", "adapter_name_or_path=null"],
                                      port, logs / f"api-{label}.log", name=f"{recipe.name}-{label}"), [label])
                    for label, path in (("base", base_model), ("fine-tuned", merged_dir))]
    how = {"structured": True} if python else {"strict_model": False}
    for server, labels in servings:
        with server:
            for set_name in sets:
                for label in labels:
                    ask(server, set_name, label, models[label] if python else server.name, **how)
    used = "vllm" if python else "llamafactory-api"
    return {"results": results["eval"], "taught": results.get("taught"), "general": results.get("general"), "backend": used,
            "rows": sets["eval"], "taught_rows": sets.get("taught"), "general_rows": sets.get("general"),
            "base_model": base_model, "merged_dir": merged_dir,
            "fine_tuned": f"{base_model} + {adapter_dir}" if used == "vllm" and adapter_dir else merged_dir,
            "rag": {"results": results_rag, "retrieval": retrieval} if rag else None, "max_samples": max_samples}


def trained_record(plan) -> bytes | None:
    """The run record of the run that wrote the trained adapter or model, as written; None before it trained."""
    record = plan.trained_dir / "run_record.json"
    return record.read_bytes() if record.is_file() else None


def answer_cache_dir(record: bytes | None, out_dir: Path) -> Path:
    """Where an interrupted evaluation's answers wait for the rerun: one folder per trained model (a digest of its run
    record), so answers of an earlier training run are never reused for a retrained model."""
    import hashlib

    return out_dir / "cache" / (hashlib.sha256(record).hexdigest()[:12] if record is not None else "untrained")


def trained_max_samples(plan, record: bytes | None) -> int | None:
    """LlamaFactory's `max_samples` of the run that wrote the trained adapter or model (its run record; the plan's
    training config before it exists); None when it trained every row."""
    if record is not None:
        return json.loads(record)["effective_config"].get("max_samples")
    return plan.stage("train").config.get("max_samples")


def token_counter(model_dir: Path):
    """len(tokens) of a text under the served model's tokenizer, or None when the model is not a local folder."""
    if not (model_dir / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def heldout_loss(recipe: Recipe, profile: str | None, model_path: str, out_dir: Path) -> float:
    """Teacher-forced loss of the held-out reference answers (LlamaFactory's own eval loop, the recipe's
    template and system prompt): a before/after signal that does not depend on decoding. The references may be
    close to training answers, so it shows the training answers' wording was absorbed, not generalisation."""
    stage = recipe.stage("train")
    overrides = {**resolve(recipe, profile).stage("train").overrides,
                 "model_name_or_path": model_path, "do_train": False, "do_eval": True, "eval_dataset": recipe["eval_set"],
                 "per_device_eval_batch_size": 8, "output_dir": str(out_dir)}
    overrides.pop("adapter_name_or_path", None)
    overrides.pop("max_samples", None)  # every held-out reference, not the first rows (max_samples applies to eval sets too)
    # one reference per sequence, in fp32: the same measure in every profile and on every CPU
    overrides.update(packing=False, neat_packing=False, bf16=False)
    run_llamafactory("train", [str(stage.path), *format_overrides(overrides)], log=out_dir / "eval.log")
    return round(json.loads((out_dir / "all_results.json").read_text())["eval_loss"], 4)


def demo(recipe_name: str = "telecom_r32", profile: str = DEMO_PROFILE, *, backend: str = "auto", port: int | None = None,
         limit: int | None = None, skip_train: bool = False, judge: JudgeSpec | None = None) -> Path:
    started = time.monotonic()
    timings: dict[str, float] = {}
    recipe = get_recipe(recipe_name)
    plan = resolve(recipe, profile)
    tiny_name = Path(plan.tiny_model).name
    out_dir = plan.eval_dir

    def lap(name: str, t0: float) -> None:
        timings[name] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    _step(1, 5, f"tiny model {tiny_name} (built once, then cached)")
    build_tiny(tiny_name)
    lap("tiny_model", t0)
    t0 = time.monotonic()
    train_overrides = plan.stage("train").overrides
    config = plan.stage("train").config
    how = (f"full fine-tune of the first {config['max_samples']} rows, {config['num_train_epochs']} epochs" if plan.full_finetune
           else f"LoRA r{recipe['lora']['rank']}/α{recipe['lora']['alpha']}")
    _step(2, 5, f"train {recipe.name} in the {profile} profile ({how})")
    trained_dir = plan.trained_dir
    weights = "model.safetensors" if plan.full_finetune else "adapter_model.safetensors"
    if not (skip_train and (trained_dir / weights).is_file()):
        train(recipe, profile)
    lap("train", t0)
    t0 = time.monotonic()
    _step(3, 5, "nothing to merge after a full fine-tune" if plan.full_finetune else "merge the adapter into the base (llamafactory-cli export)")
    merge(recipe, profile)
    lap("merge", t0)
    t0 = time.monotonic()
    _step(4, 5, "serve base and fine-tuned on 127.0.0.1 and evaluate greedily on the held-out, taught and general sets; "
          "held-out again with retrieved passages (RAG), every held-out answer verified against them")
    ev = serve_and_evaluate(recipe, profile, out_dir, backend=backend, port=port, limit=limit, general_set="general_eval", judge=judge,
                            rag=True)
    lap("serve_and_eval", t0)
    _step(5, 5, "loss on the held-out reference answers (LlamaFactory eval loop) and the before/after report with floors")
    t0 = time.monotonic()
    losses = {"base": heldout_loss(recipe, profile, ev["base_model"], out_dir / "loss-base"),
              "fine-tuned": heldout_loss(recipe, profile, str(ROOT / ev["merged_dir"]), out_dir / "loss-fine-tuned")}
    for label, value in losses.items():
        ev["results"][label]["summary"]["overall"]["heldout_loss"] = value
    lap("heldout_loss", t0)
    timings["total_before_report"] = round(time.monotonic() - started, 1)
    context = {"recipe": recipe.name, "profile": profile, "eval_set": recipe["eval_set"], "system": recipe["system"],
               "max_tokens": 96, "backend": ev["backend"], "base": ev["base_model"], "fine-tuned": ev["fine_tuned"],
               "train_command": "llamafactory-cli train " + str(recipe.stage("train").path) + " "
               + " ".join(format_overrides(train_overrides)),
               "timings_s": timings, "max_samples": ev["max_samples"]}
    files = write_report(out_dir, title=f"{recipe.name} ({profile} profile): base vs fine-tuned", rows=ev["rows"],
                         results=ev["results"], general=ev["general"], general_rows=ev["general_rows"], taught=ev["taught"],
                         taught_rows=ev["taught_rows"], context=context, trainer_log=trained_dir / "trainer_log.jsonl", rag=ev["rag"])
    timings["total"] = round(time.monotonic() - started, 1)
    overall = {k: v["summary"]["overall"] for k, v in ev["results"].items()}
    print(f"\nloss on the held-out reference answers: base {losses['base']} -> fine-tuned {losses['fine-tuned']}; "
          f"key-fact recall: base {overall['base']['key_fact_recall']} -> fine-tuned {overall['fine-tuned']['key_fact_recall']}")
    four = {**ev["results"], **ev["rag"]["results"]}
    print("key-fact recall, held-out: " + ", ".join(f"{name} {res['summary']['overall']['key_fact_recall']}" for name, res in four.items())
          + f"; retrieval hit rate {ev['rag']['retrieval']['hit_rate']} (top-{ev['rag']['retrieval']['k']})")
    report = json.loads(files["json"].read_text(encoding="utf-8"))
    floors = {name: headline(f["summary"]["overall"]) for name, f in report["floors"]["held-out"].items()}
    print("floors, held-out (no model): " + ", ".join(f"{name} {metric} {value}" for name, (metric, value) in floors.items()))
    shortfalls = report["callouts"]
    print(f"floors check: fine-tuned is at or below a floor on {len(shortfalls)} number(s)" + (" (listed first in the report)" if shortfalls else ""))
    print(f"report: {rel(files['md'])}  (also report.json, report.png, loss.png)  total {timings['total']}s")
    return files["md"]
