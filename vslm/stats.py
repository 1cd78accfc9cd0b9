"""`vslm stats`: rows and token-length distribution per dataset with the real Qwen tokenizer."""

from __future__ import annotations

import statistics
from typing import Any

from .jsonio import read_jsonl
from .matrix import get_recipe, load_recipes
from .paths import ROOT
from .registry import load_registry


def _text(row: dict[str, Any], columns: dict[str, str]) -> str:
    parts = [str(row.get(col) or "") for key, col in columns.items() if key in ("prompt", "query", "response", "system")]
    for turn in row.get(columns.get("history", "history")) or []:
        parts += [str(t) for t in turn]
    return "\n".join(p for p in parts if p)


def dataset_stats(names: list[str] | None = None, recipe_name: str | None = None) -> str:
    from .tokenizer import build_qwen_tokenizer

    tok = build_qwen_tokenizer("qwen2")
    registry = load_registry()
    names = names or list(registry)
    recipes = [get_recipe(recipe_name)] if recipe_name else list(load_recipes().values())
    lines = [f"{'dataset':28} {'rows':>6} {'min':>5} {'p50':>5} {'p95':>5} {'max':>5}  over cutoff"]
    for name in names:
        if name not in registry:
            lines.append(f"{name:28} not registered")
            continue
        entry = registry[name]
        rows = read_jsonl(ROOT / entry["file_name"])
        # ~12 tokens of chat markup per turn plus the system prompt, as the template adds them
        lengths = [len(tok(_text(r, entry.get("columns", {}))).input_ids) + 12 for r in rows]
        qs = statistics.quantiles(lengths, n=20) if len(lengths) > 1 else lengths * 19
        flags = []
        for recipe in recipes:
            if recipe_name or name in recipe["datasets"] or name in ((recipe["pt"] or {}).get("datasets", [])):
                cutoff = recipe["cutoff_len"]
                over = [r["_line"] for r, n in zip(rows, lengths) if n > cutoff]
                flags.append(f"{recipe.name}(cutoff {cutoff}): {len(over)}" + (f" lines {over[:5]}" if over else ""))
        lines.append(f"{name:28} {len(rows):>6} {min(lengths):>5} {int(qs[9]):>5} {int(qs[18]):>5} {max(lengths):>5}  {'; '.join(flags) or '-'}")
    return "\n".join(lines)
