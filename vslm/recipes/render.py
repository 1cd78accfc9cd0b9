"""Render templates/*.j2 + templates/matrix.yaml into recipes/ (and check for drift)."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from .matrix import Recipe, expand, format_overrides, load_matrix, profile_overrides
from ..core.jsonio import atomic_write_text
from ..core.paths import ROOT, TEMPLATES

DEEPSPEED = {"recipes/deepspeed/ds_z2.json": "ds_z2.json.j2", "recipes/deepspeed/ds_z3.json": "ds_z3.json.j2"}


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["yaml_str"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def _run_lines(recipe: Recipe, kind: str, path: Path, matrix: dict) -> list[str]:
    stage = next(s for s in recipe.stages if s.path == path)
    tiny = " ".join(format_overrides(profile_overrides(recipe, stage, "tiny", matrix)))
    if kind in ("train", "train_pt"):
        lines = [f"Run (GPU, from the repository root):  llamafactory-cli train {path}"]
        if kind == "train" and recipe["pt"]:
            lines.insert(0, f"Stage 2 of 2: first run llamafactory-cli train {path.with_name(path.stem + '_pt.yaml')}")
        if kind == "train_pt":
            lines.insert(0, f"Stage 1 of 2 (continual pre-training); stage 2 is {path.with_name(recipe.name + '.yaml')}")
        lines += [
            f"Tiny CPU profile:  llamafactory-cli train {path} {tiny}",
            f"Multi-GPU (one node):  FORCE_TORCHRUN=1 NPROC_PER_NODE=<gpus> llamafactory-cli train {path} deepspeed=recipes/deepspeed/ds_z2.json",
            f"Multi-node:  FORCE_TORCHRUN=1 NNODES=<n> NODE_RANK=<i> MASTER_ADDR=<host0> MASTER_PORT=29500 llamafactory-cli train {path} deepspeed=recipes/deepspeed/ds_z3.json",
            f"With a run record:  vslm train {recipe.name} [--profile tiny]",
        ]
    elif kind == "merge":
        lines = [f"Run:  llamafactory-cli export {path}", f"Tiny CPU profile:  llamafactory-cli export {path} {tiny}"]
    elif kind == "infer":
        lines = [
            f"Chat:  llamafactory-cli chat {path}    Web chat:  llamafactory-cli webchat {path}",
            f"OpenAI-compatible API:  API_PORT=8000 llamafactory-cli api {path}",
            f"Tiny CPU profile: append  {tiny}",
        ]
    else:
        lines = [
            f"LlamaFactory API on vLLM:  API_PORT=8000 llamafactory-cli api {path}",
            f"vLLM server, base + adapter in one process:  vslm serve {recipe.name}",
        ]
    return lines


def render_all(matrix_path: Path | None = None) -> dict[str, str]:
    """Every generated file: repository-relative path -> text (matrix: $VSLM_MATRIX or templates/matrix.yaml)."""
    env = _env()
    matrix = load_matrix(matrix_path)
    expanded = [expand(name, entry, matrix) for name, entry in matrix["recipes"].items()]
    out: dict[str, str] = {}
    for recipe in expanded:
        for stage in recipe.stages:
            ctx = dict(recipe.vars)
            ctx.update(
                title=recipe["title"],
                template_name=stage.template,
                run_lines=_run_lines(recipe, stage.kind, stage.path, matrix),
                backend="vllm" if stage.kind == "vllm" else "huggingface",
                output_dir=stage.output_dir,
                init_adapter=None,
            )
            if stage.kind == "train_pt":
                ctx.update({k: v for k, v in recipe["pt"].items()})
            if stage.kind == "train" and recipe["pt"]:
                ctx["init_adapter"] = f"{recipe.saves}/pt_adapter"
            out[str(stage.path)] = env.get_template(stage.template).render(**ctx)
    for path, template in DEEPSPEED.items():
        out[path] = env.get_template(template).render()
    families: dict[str, list] = {}
    for recipe in expanded:
        families.setdefault(recipe["domain"], []).append(recipe)
    for domain, recipes in families.items():
        first = recipes[0]
        out[f"recipes/families/{domain}.md"] = env.get_template("family.md.j2").render(
            domain=domain, recipes=[r.vars for r in recipes], example_question=first["example_question"],
            tiny_model=matrix["families"][first["family"]]["tiny_model"])
    return out


def write_all(files: dict[str, str]) -> list[str]:
    written = []
    for rel, text in files.items():
        path = ROOT / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        atomic_write_text(path, text)
        written.append(rel)
    return written


def generated_files_on_disk() -> set[str]:
    """Every file under recipes/ (recursively) that says it was generated."""
    found = set()
    for path in (ROOT / "recipes").rglob("*"):
        if path.is_file() and "GENERATED from templates/" in path.read_text(encoding="utf-8", errors="replace")[:400]:
            found.add(str(path.relative_to(ROOT)))
    return found


def drift(files: dict[str, str] | None = None) -> list[str]:
    """Problems where recipes/ differs from what the templates render."""
    files = files if files is not None else render_all()
    problems = []
    for rel, text in files.items():
        path = ROOT / rel
        if not path.is_file():
            problems.append(f"{rel}: missing — run `vslm render`")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{rel}: differs from its template — run `vslm render` (do not edit generated files)")
    for rel in sorted(generated_files_on_disk() - set(files)):
        problems.append(f"{rel}: generated file no recipe renders any more — delete it or add its recipe back")
    return problems
