"""GGUF export for llama.cpp / Ollama, and what quantization costs on the recipe's own held-out set.

The merged model (`vslm merge`) is converted by llama.cpp's own `convert_hf_to_gguf.py` (f32/f16/bf16/q8_0) from the
llama.cpp tree vendored in the pinned llama-cpp-python sdist, run with this environment's torch/transformers; K-quants
(q4_k_m, q5_k_m, q6_k) are made from the f16 file by the compiled library (`llama_cpp.llama_model_quantize`).
Everything compiled lives in its own virtualenv, .venv-gguf (`make gguf`: built once with -DGGML_NATIVE=OFF, ~15 min
on 2 cores), so this module's llama.cpp work runs there as `<.venv-gguf python> vslm/serve/gguf.py <command>`: the code
below the `# --- worker` line imports only the standard library, numpy and llama_cpp.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

LLAMA_CPP_PYTHON = "0.3.36"
ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("VSLM_CACHE", Path.home() / ".cache" / "vslm"))
# what the converter writes itself, and what llama.cpp quantizes from the f16 file (llama_ftype values)
CONVERTED = ("f32", "f16", "bf16", "q8_0")
K_QUANTS = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
QUANTS = (*CONVERTED, *K_QUANTS)
PRECISION_ORDER = ("f32", "bf16", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m")  # the first one exported is the reference
DEFAULT_QUANTS = "f16,q8_0,q4_k_m"
INSTALL_HINT = "run `make gguf` (scripts/install_gguf.sh: first time ~15 min, it compiles llama.cpp)"
OVERALL_KEYS = ("key_fact_recall", "rouge-l", "bleu-4", "accuracy", "refusal_accuracy", "hallucination_rate")


def gguf_venv() -> Path:
    return Path(os.environ.get("VSLM_GGUF_VENV", ROOT / ".venv-gguf"))


def converter_tree() -> Path:
    """llama.cpp's source tree from the pinned sdist (convert_hf_to_gguf.py and its own gguf-py)."""
    return CACHE / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def gguf_python() -> str:
    """The Python of .venv-gguf (llama-cpp-python[server], compiled); a half-done install (no stamp) is not used."""
    from ..core.errors import RecipeError

    venv = gguf_venv()
    if not ((venv / "bin" / "python").is_file() and (venv / ".vslm-install").is_file()):
        raise RecipeError(f"llama-cpp-python is not installed in {venv}: {INSTALL_HINT}")
    return str(venv / "bin" / "python")


def require_converter() -> Path:
    from ..core.errors import RecipeError

    tree = converter_tree()
    if not (tree / "convert_hf_to_gguf.py").is_file():
        raise RecipeError(f"llama.cpp converter not found at {tree}: {INSTALL_HINT}")
    return tree


def gguf_py():
    """gguf-py from the converter tree (the PyPI `gguf` of the same version does not match it)."""
    tree = str(require_converter() / "gguf-py")
    if tree not in sys.path:
        sys.path.insert(0, tree)
    import gguf

    return gguf


def gguf_reader(path: Path):
    return gguf_py().GGUFReader(str(path))


def parse_quants(text: str) -> list[str]:
    from ..core.errors import RecipeError

    quants = [q.strip().lower() for q in text.split(",") if q.strip()]
    unknown = [q for q in quants if q not in QUANTS]
    if unknown or not quants:
        raise RecipeError(f"--quant {text!r}: {', '.join(unknown) or 'nothing given'} is not one of {', '.join(QUANTS)}")
    return list(dict.fromkeys(quants))


def merged_dir(recipe, profile: str | None) -> Path:
    """Where `vslm merge <recipe> [--profile]` wrote the merged model (as pipeline.serve_and_evaluate finds it)."""
    from ..recipes.resolve import resolve

    return ROOT / resolve(recipe, profile).merged_dir


def gguf_dir(recipe, profile: str | None) -> Path:
    """saves/<profile>/<recipe>/gguf (saves/<recipe>/gguf for the shipped recipe): beside the merged model."""
    return merged_dir(recipe, profile).parent / "gguf"


def gguf_file(out_dir: Path, recipe_name: str, quant: str) -> Path:
    return out_dir / f"{recipe_name}-{quant}.gguf"


def pre_tokenizer_override(model_dir: Path) -> str | None:
    """"qwen2" when the model's tokenizer splits text exactly as Qwen's does (same normalizer and pre-tokenizer as
    vslm.models.tokenizer's rebuilt Qwen tokenizer, whose ids hash to llama.cpp's `qwen2` entry). The converter recognises
    a pre-tokenizer by hashing the ids of a test string, so the tiny models' trimmed vocabulary is not recognised
    although the splitting is Qwen's; the override is used only when the hash is not recognised."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    from ..models.tokenizer import QWEN_PATTERN

    data = json.loads(path.read_text(encoding="utf-8"))
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") or []
    splits = [s for s in steps if s.get("type") == "Split"]
    qwen = (data.get("normalizer") or {}).get("type") == "NFC" and len(steps) == 2 and len(splits) == 1 \
        and splits[0].get("pattern", {}).get("Regex") == QWEN_PATTERN and splits[0].get("behavior") == "Isolated" \
        and steps[1].get("type") == "ByteLevel" and data.get("model", {}).get("type") == "BPE"
    return "qwen2" if qwen else None


# Runs convert_hf_to_gguf.py from its own tree; when VSLM_GGUF_PRE is set, an unrecognised pre-tokenizer hash
# resolves to it instead of stopping (see pre_tokenizer_override).
CONVERT_BOOT = """
import os, runpy, sys
tree = sys.argv[1]
script = os.path.join(tree, "convert_hf_to_gguf.py")
sys.argv = [script, *sys.argv[2:]]
sys.path[:0] = [tree, os.path.join(tree, "gguf-py")]
pre = os.environ.get("VSLM_GGUF_PRE")
if pre:
    from conversion.base import TextModel
    original = TextModel.get_vocab_base_pre
    def get_vocab_base_pre(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            print(f"[gguf] pre-tokenizer hash not in llama.cpp's list; the tokenizer splits as Qwen's: using {pre!r}", flush=True)
            return pre
    TextModel.get_vocab_base_pre = get_vocab_base_pre
runpy.run_path(script, run_name="__main__")
"""


def _run(cmd: list[str], log: Path, what: str, env: dict[str, str] | None = None) -> None:
    import subprocess

    from ..core.errors import RecipeError
    from ..core.paths import rel

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        result = subprocess.run(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        lines = [l for l in log.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
        raise RecipeError(f"{what} failed (exit {result.returncode}): {lines[-1][:300] if lines else 'no output'} — see {rel(log)}")


def convert(model_dir: Path, out: Path, outtype: str, log: Path) -> None:
    """convert_hf_to_gguf.py with this Python (torch, transformers) into `out`, via a temporary file beside it."""
    tree = require_converter()
    pre = pre_tokenizer_override(model_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        _run([sys.executable, "-c", CONVERT_BOOT, str(tree), str(model_dir), "--outtype", outtype, "--outfile", str(tmp)],
             log, f"convert_hf_to_gguf.py --outtype {outtype}", env={"VSLM_GGUF_PRE": pre} if pre else None)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def quantize(src: Path, out: Path, quant: str, log: Path) -> None:
    """llama.cpp's quantizer (compiled, in .venv-gguf) from an f16/f32 GGUF into `out`, via a temporary file."""
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        _run([gguf_python(), str(Path(__file__)), "quantize", str(src), str(tmp), str(K_QUANTS[quant])], log,
             f"llama_model_quantize {quant}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def ollama_template(template: str, enable_thinking: bool | None) -> str:
    """The recipe's chat template (Qwen ChatML) in Ollama's Go template syntax: the system prompt, then each turn,
    then the assistant's turn open; qwen3 with thinking off gets the empty think block its HF template writes."""
    opening = "<|im_start|>assistant\n" + ("<think>\n\n</think>\n\n" if template == "qwen3" and enable_thinking is False else "")
    return ("{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
            "{{- range .Messages }}{{- if ne .Role \"system\" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}{{- end }}"
            + opening)


def modelfile_text(recipe, gguf_name: str) -> str:
    from ..core.errors import RecipeError

    if recipe["template"] not in ("qwen", "qwen3", "qwen3_nothink"):
        raise RecipeError(f"recipe `{recipe.name}`: template `{recipe['template']}` has no Ollama template here (Qwen ChatML only)")
    for text, key in ((recipe["system"], "system"),):
        if '"""' in text:
            raise RecipeError(f"recipe `{recipe.name}`: `{key}` contains \"\"\", which an Ollama Modelfile cannot quote")
    return (f"# Ollama: ollama create {recipe.name} -f Modelfile   (from this folder)\n"
            f"FROM ./{gguf_name}\n"
            f'TEMPLATE """{ollama_template(recipe["template"], recipe["enable_thinking"])}"""\n'
            f'SYSTEM """{recipe["system"]}"""\n'
            'PARAMETER stop "<|im_end|>"\n'
            'PARAMETER stop "<|endoftext|>"\n'
            "PARAMETER temperature 0\n")


def modelfile_quant(quants: list[str]) -> str:
    """Ollama's usual default, q4_k_m, when exported; else the last one asked for."""
    return "q4_k_m" if "q4_k_m" in quants else quants[-1]


def export_gguf(recipe, profile: str | None, quants: list[str], *, replace: bool = False) -> dict[str, Any]:
    """Write <recipe>-<quant>.gguf for each quant, a Modelfile and export.json into gguf_dir(); nothing existing is
    replaced without `replace`. Returns what export.json holds."""
    from ..core.jsonio import atomic_write_json, atomic_write_text
    from ..core.errors import RecipeError
    from ..core.paths import rel

    source = merged_dir(recipe, profile)
    if not ((source / "config.json").is_file() and any(source.glob("*.safetensors"))):
        flag = f" --profile {profile}" if profile else ""
        raise RecipeError(f"merged model {rel(source)} not found — run `vslm train {recipe.name}{flag}` and "
                          f"`vslm merge {recipe.name}{flag}` first")
    out_dir = gguf_dir(recipe, profile)
    targets = [gguf_file(out_dir, recipe.name, q) for q in quants] + [out_dir / "Modelfile", out_dir / "export.json"]
    existing = [t for t in targets if t.exists()]
    if existing and not replace:
        raise RecipeError(f"{rel(existing[0])} exists ({len(existing)} of the output files do) — pass --replace to overwrite")
    require_converter()
    if any(q in K_QUANTS for q in quants):
        gguf_python()
    modelfile = modelfile_text(recipe, gguf_file(out_dir, recipe.name, modelfile_quant(quants)).name)
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
    files: dict[str, dict[str, Any]] = {}
    f16 = gguf_file(out_dir, recipe.name, "f16")
    scratch_f16 = None
    order = sorted(quants, key=lambda q: q in K_QUANTS)  # converted files first: K-quants start from the f16 one
    for n, quant in enumerate(order, 1):
        out = gguf_file(out_dir, recipe.name, quant)
        t0 = time.monotonic()
        if quant in CONVERTED:
            print(f"[gguf] {n}/{len(order)} {quant}: convert_hf_to_gguf.py {rel(source)} -> {rel(out)}", flush=True)
            convert(source, out, quant, logs / f"convert-{quant}.log")
        else:
            if "f16" not in quants and scratch_f16 is None:
                scratch_f16 = out_dir / f".{recipe.name}-f16.scratch.gguf"
                print(f"[gguf] {n}/{len(order)} {quant}: f16 first (kept only while quantizing)", flush=True)
                convert(source, scratch_f16, "f16", logs / "convert-f16.log")
            src = f16 if "f16" in quants else scratch_f16
            print(f"[gguf] {n}/{len(order)} {quant}: llama_model_quantize {src.name} -> {rel(out)}", flush=True)
            quantize(src, out, quant, logs / f"quantize-{quant}.log")
        seconds = round(time.monotonic() - t0, 1)
        files[quant] = {"file": out.name, "bytes": out.stat().st_size, "seconds": seconds}
        print(f"[gguf]   {out.stat().st_size / 2**20:.1f} MiB in {seconds}s", flush=True)
    if scratch_f16 is not None:
        scratch_f16.unlink(missing_ok=True)
    atomic_write_text(out_dir / "Modelfile", modelfile)
    record = {"recipe": recipe.name, "profile": profile, "source": rel(source), "llama_cpp_python": LLAMA_CPP_PYTHON,
              "files": {q: files[q] for q in quants}, "modelfile": {"file": "Modelfile", "from": modelfile_quant(quants)}}
    atomic_write_json(out_dir / "export.json", record)
    print(f"[gguf] wrote {rel(out_dir / 'Modelfile')} (FROM {modelfile_quant(quants)}) and {rel(out_dir / 'export.json')}")
    return record


def first_token_stats(models: dict[str, Path], prompts: list[list[dict[str, str]]], work: Path) -> dict[str, dict[str, float]]:
    """Next-token distributions after each chat prompt, per model, compared with the first (reference) model:
    top-1 agreement, mean KL(reference || model) and the mean log-probability the model gives the reference's
    top token. Computed in .venv-gguf by the worker below."""
    import subprocess

    from ..core.errors import RecipeError

    spec = work / "first_tokens.json"
    out = work / "first_tokens.out.json"
    work.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"models": {k: str(v) for k, v in models.items()}, "prompts": prompts}, ensure_ascii=False))
    result = subprocess.run([gguf_python(), str(Path(__file__)), "first-tokens", str(spec), str(out)], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()
        raise RecipeError(f"first-token comparison failed (exit {result.returncode}): {tail[-1][:300] if tail else 'no output'}")
    return json.loads(out.read_text(encoding="utf-8"))


def evaluate_quants(recipe, profile: str | None, quants: list[str], *, limit: int | None = None, concurrency: int = 2,
                    port: int | None = None, replace: bool = False) -> dict[str, Any]:
    """Serve each exported GGUF with llama-cpp-python's OpenAI server on 127.0.0.1 and run the same evaluation as
    `vslm eval`/the demo on the recipe's held-out set; writes quant_eval.json and quant_eval.md into gguf_dir()."""
    from ..eval.client import messages_of
    from ..eval.evaluate import evaluate, load_eval_rows
    from ..core.jsonio import atomic_write_json, atomic_write_text
    from ..core.errors import RecipeError
    from ..core.paths import rel
    from .servers import free_port, llama_cpp_server

    out_dir = gguf_dir(recipe, profile)
    paths = {q: gguf_file(out_dir, recipe.name, q) for q in sorted(quants, key=PRECISION_ORDER.index)}
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise RecipeError(f"{rel(missing[0])} not found — run `vslm export-gguf {recipe.name}"
                          f"{' --profile ' + profile if profile else ''} --quant {','.join(quants)}` first")
    json_path, md_path = out_dir / "quant_eval.json", out_dir / "quant_eval.md"
    if (json_path.exists() or md_path.exists()) and not replace:
        raise RecipeError(f"{rel(json_path)} exists — pass --replace to overwrite it")
    rows = load_eval_rows(recipe["eval_set"], limit)
    max_tokens = recipe["max_new_tokens"] if not profile else 96  # as the demo evaluates the tiny profile
    python = gguf_python()
    if recipe["enable_thinking"] is False and recipe["template"] == "qwen3":
        print("[gguf] note: llama_cpp.server ignores chat_template_kwargs, so these prompts lack the empty think block "
              "the HF/vLLM evaluation adds (enable_thinking: false)", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for n, (quant, path) in enumerate(paths.items(), 1):
        alias = f"{recipe.name}-{quant}"
        print(f"[gguf] {n}/{len(paths)} serve {path.name} and evaluate on {recipe['eval_set']} ({len(rows)} rows)", flush=True)
        server = llama_cpp_server(python, path, port or free_port(), out_dir / "logs" / f"server-{quant}.log", alias)
        with server:
            results[quant] = evaluate(rows, base_url=server.base_url, model=alias, system=recipe["system"],
                                      cache_path=out_dir / "cache" / f"{quant}.jsonl", max_tokens=max_tokens,
                                      concurrency=concurrency, enable_thinking=recipe["enable_thinking"], label=quant)
    reference = next(iter(paths))
    print(f"[gguf] first-token distributions of every file against {reference} ({len(rows)} prompts)", flush=True)
    first = first_token_stats(paths, [messages_of(r, recipe["system"]) for r in rows], out_dir / "cache")
    ref_answers = results[reference]["answers"]
    table = {}
    for quant, res in results.items():
        overall = res["summary"]["overall"]
        same = sum(res["answers"][r["id"]] == ref_answers[r["id"]] for r in rows) / len(rows)
        table[quant] = {"file": paths[quant].name, "mib": round(paths[quant].stat().st_size / 2**20, 1),
                        **{k: overall.get(k) for k in OVERALL_KEYS}, "same_answer_as_reference": round(same, 4),
                        **first[quant]}
    record = {"recipe": recipe.name, "profile": profile, "eval_set": recipe["eval_set"], "rows": len(rows),
              "reference": reference, "served_by": f"llama-cpp-python {LLAMA_CPP_PYTHON} (llama_cpp.server)",
              "sampling": results[reference]["sampling"], "table": table, "results": results}
    atomic_write_json(json_path, record)
    atomic_write_text(md_path, quant_table_markdown(record))
    print(quant_table_markdown(record))
    print(f"[gguf] wrote {rel(json_path)} and {rel(md_path)}")
    return record


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def quant_table_markdown(record: dict[str, Any]) -> str:
    """The quantization-loss table: each GGUF on the held-out set, and how far its answers and first-token
    distributions are from the reference (the most precise file exported)."""
    ref = record["reference"]
    lines = [(f"### Quantization loss: {record['recipe']} ({record['profile'] or 'shipped'}), {record['eval_set']}, "
              f"{record['rows']} rows, greedy, served by {record['served_by']}"), "",
             (f"| GGUF | MiB | key-fact recall | ROUGE-L | accuracy | hallucination rate | same answer as {ref} "
              f"| first token = {ref}'s | KL({ref} ‖ quant) | log p({ref}'s first token) |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for quant, row in record["table"].items():
        lines.append(f"| {quant} | {row['mib']} | {_fmt(row['key_fact_recall'])} | {_fmt(row['rouge-l'])} | "
                     f"{_fmt(row['accuracy'])} | {_fmt(row['hallucination_rate'])} | {_fmt(row['same_answer_as_reference'])} | "
                     f"{_fmt(row['top1_agreement'])} | {_fmt(row['mean_kl'], 5)} | {_fmt(row['mean_ref_token_logprob'], 4)} |")
    return "\n".join(lines) + "\n"


# --- worker: runs in .venv-gguf (`python vslm/serve/gguf.py <command> ...`); standard library, numpy and llama_cpp only.

def _load(path: str, **kw):
    from llama_cpp import Llama

    return Llama(model_path=path, n_ctx=kw.pop("n_ctx", 2048), n_threads=os.cpu_count(), verbose=False, seed=0, **kw)


def _chat_tokens(llm, messages: list[dict[str, str]]) -> list[int]:
    """The prompt tokens llama_cpp.server gives a chat request: the GGUF's chat template (as Llama sets it up when no
    chat_format is given), tokenized with special tokens."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    meta = llm.metadata
    eos, bos = llm.token_eos(), llm.token_bos()
    formatter = Jinja2ChatFormatter(template=meta["tokenizer.chat_template"],
                                    eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                                    bos_token=llm._model.token_get_text(bos) if bos != -1 else "")
    result = formatter(messages=messages)
    return llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


def _next_logprobs(llm, tokens: list[int]):
    import numpy as np

    llm.reset()
    llm.eval(tokens)
    logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)).astype(np.float64)
    logits -= logits.max()
    return logits - np.log(np.exp(logits).sum())


def worker_first_tokens(spec_path: str, out_path: str) -> None:
    import numpy as np

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    reference = None
    out = {}
    for name, path in spec["models"].items():
        llm = _load(path)
        dists = [_next_logprobs(llm, _chat_tokens(llm, msgs)) for msgs in spec["prompts"]]
        del llm
        if reference is None:
            reference = dists
        ref_top = [int(np.argmax(r)) for r in reference]
        kl = [float(np.sum(np.exp(r) * (r - d))) for r, d in zip(reference, dists)]
        out[name] = {"top1_agreement": round(float(np.mean([int(np.argmax(d)) == t for d, t in zip(dists, ref_top)])), 4),
                     "mean_kl": round(float(np.mean(kl)), 6),
                     "mean_ref_token_logprob": round(float(np.mean([d[t] for d, t in zip(dists, ref_top)])), 4)}
    Path(out_path).write_text(json.dumps(out), encoding="utf-8")


def worker_greedy(model: str, prompts_path: str, max_tokens: str, out_path: str) -> None:
    """Greedy continuations (token ids) of raw token-id prompts: [[ids...], ...] -> [[new ids...], ...]."""
    import llama_cpp

    llm = _load(model)
    results = []
    for ids in json.loads(Path(prompts_path).read_text(encoding="utf-8")):
        new: list[int] = []
        for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(new) >= int(max_tokens):
                break
            new.append(int(token))
        results.append(new)
    Path(out_path).write_text(json.dumps(results), encoding="utf-8")


def worker_tokenize(model: str, texts_path: str, out_path: str) -> None:
    llm = _load(model, vocab_only=True)
    texts = json.loads(Path(texts_path).read_text(encoding="utf-8"))
    Path(out_path).write_text(json.dumps([llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]),
                              encoding="utf-8")


def worker_quantize(src: str, dst: str, ftype: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if code != 0:
        raise SystemExit(f"llama_model_quantize returned {code}")


WORKERS = {"first-tokens": worker_first_tokens, "greedy": worker_greedy, "tokenize": worker_tokenize,
           "quantize": worker_quantize}

if __name__ == "__main__":
    WORKERS[sys.argv[1]](*sys.argv[2:])
