"""GGUF export for llama.cpp/Ollama: the files read back, their weights and tokenizer match the HF model, llama.cpp
generates what HF generates, K-quants are real K-quants, and the held-out evaluation runs through the GGUF server.

The slow tests use the tiny Qwen2 model as the "merged model" of telecom_r32's tiny profile (a symlink under a
temporary $VSLM_SAVES), so they exercise `vslm export-gguf` end to end without a training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run
from vslm.serve.gguf import gguf_py, gguf_python, gguf_reader, pre_tokenizer_override

VSLM = [sys.executable, "-m", "vslm"]
QUANTS = "f16,q8_0,q4_k_m"


def vslm_env(saves: Path) -> dict[str, str]:
    return {**os.environ, "VSLM_SAVES": str(saves)}


def fake_merged(saves: Path, source: Path | None = None) -> Path:
    merged = saves / "tiny" / "telecom_r32" / "merged"
    merged.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        merged.symlink_to(source.resolve())
    else:
        merged.mkdir()
        (merged / "config.json").write_text("{}")
        (merged / "model.safetensors").write_bytes(b"not read")
    return merged


# --- fast: arguments, refusals, the Modelfile

def test_unknown_quant_is_one_clear_line():
    result = run(VSLM + ["export-gguf", "telecom_r32", "--profile", "tiny", "--quant", "f16,q3_k"])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: --quant 'f16,q3_k': q3_k is not one of f32, f16, bf16, q8_0, q4_k_m, q5_k_m, q6_k"]


def test_missing_merged_model_says_what_to_run(tmp_path):
    result = run(VSLM + ["export-gguf", "telecom_r32", "--profile", "tiny"], env=vslm_env(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "merged" in lines[0]
    assert "vslm merge telecom_r32 --profile tiny" in lines[0]


def test_existing_files_are_not_replaced_without_flag(tmp_path):
    fake_merged(tmp_path)
    out = tmp_path / "tiny" / "telecom_r32" / "gguf"
    out.mkdir()
    existing = out / "telecom_r32-q8_0.gguf"
    existing.write_bytes(b"earlier export")
    result = run(VSLM + ["export-gguf", "telecom_r32", "--profile", "tiny", "--quant", "q8_0"], env=vslm_env(tmp_path))
    assert result.returncode == 1
    assert "telecom_r32-q8_0.gguf exists" in result.stderr and "--replace" in result.stderr
    assert existing.read_bytes() == b"earlier export"
    assert sorted(p.name for p in out.iterdir()) == ["telecom_r32-q8_0.gguf"]


def test_eval_only_needs_the_exported_files(tmp_path):
    fake_merged(tmp_path)
    result = run(VSLM + ["export-gguf", "telecom_r32", "--profile", "tiny", "--eval-only", "--quant", "f16"], env=vslm_env(tmp_path))
    assert result.returncode == 1
    assert "telecom_r32-f16.gguf not found" in result.stderr and "vslm export-gguf telecom_r32 --profile tiny" in result.stderr


@pytest.mark.parametrize("recipe_name, thinking_block", [("telecom_r32", False), ("platform_classifier", True)])
def test_modelfile_carries_the_recipe_template_and_system(recipe_name, thinking_block):
    from vslm.serve.gguf import modelfile_text
    from vslm.recipes.matrix import get_recipe

    recipe = get_recipe(recipe_name)
    text = modelfile_text(recipe, f"{recipe_name}-q4_k_m.gguf")
    lines = text.splitlines()
    assert f"FROM ./{recipe_name}-q4_k_m.gguf" in lines
    assert f'SYSTEM """{recipe["system"]}"""' in lines
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert template.startswith("{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}")
    assert "{{- range .Messages }}" in template and "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n" in template
    assert template.endswith("<|im_start|>assistant\n" + ("<think>\n\n</think>\n\n" if thinking_block else ""))
    assert template.count("{{") == template.count("}}")
    assert 'PARAMETER stop "<|im_end|>"' in lines


# --- slow: real conversion, quantization, llama.cpp inference and serving

@pytest.fixture(scope="module")
def exported(tiny_qwen2, tmp_path_factory):
    """`vslm export-gguf telecom_r32 --profile tiny --quant f16,q8_0,q4_k_m` with the tiny model as the merged model."""
    saves = tmp_path_factory.mktemp("saves")
    merged = fake_merged(saves, tiny_qwen2)
    result = run(VSLM + ["export-gguf", "telecom_r32", "--profile", "tiny", "--quant", QUANTS], env=vslm_env(saves))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = saves / "tiny" / "telecom_r32" / "gguf"
    return {"saves": saves, "merged": merged, "dir": out, "stdout": result.stdout,
            **{q: out / f"telecom_r32-{q}.gguf" for q in QUANTS.split(",")}}


def worker(command: str, *args: str) -> None:
    result = subprocess.run([gguf_python(), str(ROOT / "vslm" / "serve" / "gguf.py"), command, *args], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def field_value(reader, name):
    return reader.fields[name].contents()


@pytest.mark.slow
def test_tiny_tokenizer_is_recognised_as_qwen_splitting(tiny_qwen2, tmp_path):
    assert pre_tokenizer_override(tiny_qwen2) == "qwen2"
    data = json.loads((tiny_qwen2 / "tokenizer.json").read_text(encoding="utf-8"))
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{N}{1,3}|\s+"
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    assert pre_tokenizer_override(tmp_path) is None


@pytest.mark.slow
def test_export_writes_files_modelfile_and_record(exported):
    out = exported["dir"]
    record = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert list(record["files"]) == QUANTS.split(",")
    for quant, item in record["files"].items():
        assert (out / item["file"]).stat().st_size == item["bytes"] > 1_000_000
    sizes = {q: record["files"][q]["bytes"] for q in record["files"]}
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_k_m"]
    assert "FROM ./telecom_r32-q4_k_m.gguf" in (out / "Modelfile").read_text(encoding="utf-8").splitlines()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    for n, quant in enumerate(["f16", "q8_0", "q4_k_m"], 1):
        assert f"[gguf] {n}/3 {quant}:" in exported["stdout"]
    again = run(VSLM + ["export-gguf", "telecom_r32", "--profile", "tiny", "--quant", "q8_0"], env=vslm_env(exported["saves"]))
    assert again.returncode == 1 and "--replace" in again.stderr


@pytest.mark.slow
def test_f16_file_reads_back_with_arch_tokenizer_and_tensors(exported, tiny_qwen2):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    reader = gguf_reader(exported["f16"])
    config = AutoConfig.from_pretrained(tiny_qwen2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2)
    assert field_value(reader, "general.architecture") == "qwen2"
    assert field_value(reader, "qwen2.block_count") == config.num_hidden_layers
    assert field_value(reader, "qwen2.embedding_length") == config.hidden_size
    assert field_value(reader, "qwen2.feed_forward_length") == config.intermediate_size
    assert field_value(reader, "qwen2.attention.head_count_kv") == config.num_key_value_heads
    assert field_value(reader, "tokenizer.ggml.model") == "gpt2"
    assert field_value(reader, "tokenizer.ggml.pre") == "qwen2"
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == config.vocab_size
    vocab = tokenizer.get_vocab()
    assert all(tokens[i] == t for t, i in vocab.items())
    assert field_value(reader, "tokenizer.ggml.eos_token_id") == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert field_value(reader, "tokenizer.chat_template") == tokenizer.chat_template
    with safe_open(tiny_qwen2 / "model.safetensors", "np") as st:
        hf_shapes = {name: st.get_slice(name).get_shape() for name in st.keys()}  # noqa: SIM118 (safe_open is not a dict)
    tensors = {t.name: t for t in reader.tensors}
    # 12 weights per layer (q/k/v with biases, o, gate/up/down, two norms) + embedding + final norm; embeddings tied
    assert len(tensors) == len(hf_shapes) == 12 * config.num_hidden_layers + 2
    assert "output.weight" not in tensors
    assert list(reversed(tensors["token_embd.weight"].shape)) == hf_shapes["model.embed_tokens.weight"]
    assert list(reversed(tensors["blk.3.ffn_down.weight"].shape)) == hf_shapes["model.layers.3.mlp.down_proj.weight"]


GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
LAYER_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_name(hf: str) -> str:
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    _, _, layer, rest = hf.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{LAYER_NAMES[module]}.{kind}"


@pytest.mark.slow
def test_q8_0_weights_dequantise_close_to_safetensors(exported, tiny_qwen2):
    """Q8_0 stores blocks of 32 as int8 times an fp16 scale d = max|x|/127: every weight is within ~d/2 of the
    original (0.6 d allows the scale's fp16 rounding); 1-D tensors stay f32 and exact."""
    from safetensors.numpy import load_file

    GGMLQuantizationType, dequantize = gguf_py().GGMLQuantizationType, gguf_py().quants.dequantize

    weights = load_file(tiny_qwen2 / "model.safetensors")
    tensors = {t.name: t for t in gguf_reader(exported["q8_0"]).tensors}
    quantized = 0
    for name, original in weights.items():
        tensor = tensors[gguf_name(name)]
        values = dequantize(tensor.data, tensor.tensor_type).reshape(original.shape).astype(np.float32)
        if original.ndim == 1:
            assert tensor.tensor_type == GGMLQuantizationType.F32
            np.testing.assert_array_equal(values, original)
            continue
        assert tensor.tensor_type == GGMLQuantizationType.Q8_0, name
        quantized += 1
        blocks = original.reshape(-1, 32).astype(np.float32)
        scale = np.abs(blocks).max(axis=1, keepdims=True) / 127
        error = np.abs(values.reshape(-1, 32) - blocks)
        assert (error <= 0.6 * scale + 1e-8).all(), name
        assert error.max() > 0  # really quantized, not copied
    assert quantized == 7 * 4 + 1


@pytest.mark.slow
def test_q4_k_m_is_a_real_k_quant_that_loads_and_generates(exported, tiny_qwen2, tmp_path):
    from transformers import AutoTokenizer

    Q = gguf_py().GGMLQuantizationType

    types = {t.name: t.tensor_type for t in gguf_reader(exported["q4_k_m"]).tensors}
    assert types["blk.0.attn_q.weight"] == Q.Q4_K and types["blk.0.ffn_up.weight"] == Q.Q4_K  # no q5_0 fallback
    assert Q.Q6_K in types.values()  # Q4_K_M keeps some tensors at 6 bits
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True, tokenize=False)
    prompt = tokenizer.encode(chat, add_special_tokens=False)
    (tmp_path / "prompts.json").write_text(json.dumps([prompt]))
    worker("greedy", str(exported["q4_k_m"]), str(tmp_path / "prompts.json"), "16", str(tmp_path / "out.json"))
    [generated] = json.loads((tmp_path / "out.json").read_text())
    assert generated and all(0 <= t < len(tokenizer) for t in generated)


def eval_texts(tokenizer, n: int = 6) -> list[str]:
    from vslm.eval.evaluate import load_eval_rows
    from vslm.recipes.matrix import get_recipe

    recipe = get_recipe("telecom_r32")
    rows = load_eval_rows("telecom_eval", n)
    chats = [tokenizer.apply_chat_template([{"role": "system", "content": recipe["system"]},
                                            {"role": "user", "content": r["instruction"]}],
                                           add_generation_prompt=True, tokenize=False) for r in rows]
    return chats + [r["output"] for r in rows] + ["ONT光猫 LOS灯红色, ping 192.168.1.1 超时 (5G套餐 ¥128/月)"]


@pytest.mark.slow
def test_llama_cpp_tokenizer_gives_hf_ids(exported, tiny_qwen2, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2)
    texts = eval_texts(tokenizer)
    (tmp_path / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    worker("tokenize", str(exported["f16"]), str(tmp_path / "texts.json"), str(tmp_path / "ids.json"))
    ids = json.loads((tmp_path / "ids.json").read_text())
    assert ids == [tokenizer.encode(t, add_special_tokens=False) for t in texts]


@pytest.mark.slow
def test_llama_cpp_greedy_ids_equal_hf_greedy_on_f16(exported, tiny_qwen2, tmp_path):
    """HF (f32) and llama.cpp (f16 file) decode the same chat prompts greedily. They must pick the same token at
    every step up to the first one where HF's top-2 logits are within 0.05 of each other (a near-tie that f16
    rounding may legitimately flip); most steps must be compared, so the test cannot pass by stopping early."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32).eval()
    prompts = [tokenizer.encode(t, add_special_tokens=False) for t in eval_texts(tokenizer, 4)[:4]]
    steps = 24
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    worker("greedy", str(exported["f16"]), str(tmp_path / "prompts.json"), str(steps), str(tmp_path / "out.json"))
    llama = json.loads((tmp_path / "out.json").read_text())
    compared = total = 0
    for prompt, theirs in zip(prompts, llama):
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=steps, do_sample=False,
                                 return_dict_in_generate=True, output_logits=True)
        ours = out.sequences[0, len(prompt):].tolist()
        eos = set(model.generation_config.eos_token_id)
        ours = ours[:next((i for i, t in enumerate(ours) if t in eos), len(ours))]
        total += len(ours)
        for i, token in enumerate(ours):
            top2 = torch.topk(out.logits[i][0], 2).values
            if float(top2[0] - top2[1]) < 0.05:
                break
            assert i < len(theirs) and theirs[i] == token, (i, ours, theirs)
            compared += 1
        else:
            assert len(theirs) == len(ours), (ours, theirs)  # both stopped at the same end-of-turn / length
    assert total and compared >= total / 2, (compared, total)


@pytest.mark.slow
def test_held_out_eval_through_the_gguf_server(exported):
    saves = exported["saves"]
    result = run(VSLM + ["export-gguf", "telecom_r32", "--profile", "tiny", "--eval-only", "--quant", QUANTS, "--limit", "6",
                         "--concurrency", "2"], env=vslm_env(saves))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = exported["dir"]
    record = json.loads((out / "quant_eval.json").read_text(encoding="utf-8"))
    assert record["reference"] == "f16" and record["rows"] == 6
    from vslm.eval.evaluate import load_eval_rows

    ids = [r["id"] for r in load_eval_rows("telecom_eval", 6)]
    for quant in QUANTS.split(","):
        res = record["results"][quant]
        assert res["model"] == f"telecom_r32-{quant}"
        assert list(res["answers"]) == ids and all(isinstance(a, str) for a in res["answers"].values())
        assert any(a.strip() for a in res["answers"].values())
        assert list(res["scores"]) == ids
        assert res["summary"]["overall"]["n"] == 6
    table = record["table"]
    assert table["f16"]["top1_agreement"] == 1.0 and table["f16"]["mean_kl"] == 0.0
    assert table["f16"]["same_answer_as_reference"] == 1.0
    assert 0 < table["q8_0"]["mean_kl"] < table["q4_k_m"]["mean_kl"]  # fewer bits, further from f16
    md = (out / "quant_eval.md").read_text(encoding="utf-8")
    assert md.count("\n| ") == 1 + 3 and "| q4_k_m |" in md
    again = run(VSLM + ["export-gguf", "telecom_r32", "--profile", "tiny", "--eval-only", "--quant", QUANTS], env=vslm_env(saves))
    assert again.returncode == 1 and "quant_eval.json exists" in again.stderr
