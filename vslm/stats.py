"""`vslm stats`: rows and token-length distribution per dataset with the real Qwen tokenizer.

Rows are read like `vslm registry` reads them (JSONL, JSON list, CSV, TXT; any detected encoding). A row's length
is what the Qwen chat template feeds the model: every message's tokens plus 5 tokens of markup per message
(<|im_start|>role\\n ... <|im_end|>\\n); a pre-training text row is its tokens plus the end-of-text token. The
cutoff check adds the recipe's system prompt to SFT rows that carry none, as the template does.
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from .jsonio import DataError
from .matrix import get_recipe, load_recipes
from .paths import DATASET_INFO
from .registry import load_registry, load_rows

MARKUP = 5  # <|im_start|> role \n ... <|im_end|> \n


def nearest_rank(sorted_values: list[int], percent: float) -> int:
    """The exact percentile (nearest-rank method): always one of the values, never above the max."""
    return sorted_values[max(1, math.ceil(percent / 100 * len(sorted_values))) - 1]


def _s(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def pieces(row: dict[str, Any], entry: dict[str, Any]) -> tuple[list[str], int, bool]:
    """The texts a row becomes, the template's tokens around them, and whether the recipe's system prompt is added."""
    cols = entry.get("columns") or {}
    system = [_s(row.get(cols["system"]))] if cols.get("system") and row.get(cols["system"]) else []
    if entry.get("formatting") in ("sharegpt", "openai"):
        tags = entry.get("tags") or {}
        msgs = row.get(cols.get("messages", "conversations"))
        msgs = [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []
        texts = system + [_s(m.get(tags.get("content_tag", "value"))) for m in msgs]
        own_system = bool(system) or any(m.get(tags.get("role_tag", "from")) == tags.get("system_tag", "system") for m in msgs)
        return texts, MARKUP * len(texts), not own_system
    if entry.get("columns") is not None and "response" not in cols:  # {"prompt": "text"}: stage pt reads the text as is
        return [_s(row.get(cols.get("prompt", "text")))], 1, False
    prompt, query = _s(row.get(cols.get("prompt", "instruction"))), _s(row.get(cols.get("query", "input")))
    texts = list(system)
    history = row.get(cols.get("history", "history"))
    for turn in history if isinstance(history, list) else []:
        texts += [_s(t) for t in turn] if isinstance(turn, list) else [_s(turn)]
    texts += [prompt + ("\n" + query if query else ""), _s(row.get(cols.get("response", "output")))]
    return texts, MARKUP * len(texts), not system


@lru_cache(maxsize=1)
def _tokenizer():
    from .tokenizer import build_qwen_tokenizer

    return build_qwen_tokenizer("qwen2")


def token_counts(texts: list[str]) -> list[int]:
    return [len(ids) for ids in _tokenizer()(texts, add_special_tokens=False)["input_ids"]] if texts else []


def row_lengths(rows: list[dict[str, Any]], entry: dict[str, Any]) -> tuple[list[int], list[bool]]:
    """Each row's tokens as the model sees it, and whether the recipe's system prompt still comes on top."""
    parts = [pieces(r, entry) for r in rows]
    counts = token_counts([t for texts, _, _ in parts for t in texts])
    lengths, pos = [], 0
    for texts, markup, _ in parts:
        lengths.append(sum(counts[pos:pos + len(texts)]) + markup)
        pos += len(texts)
    return lengths, [add for _, _, add in parts]


def _check_names(names: list[str], registry: dict[str, Any], registry_path: Path) -> None:
    unknown = [n for n in names if n not in registry]
    if unknown:
        hints = [f"`{n}`" + (f" (did you mean `{close[0]}`?)" if (close := difflib.get_close_matches(n, registry, n=1)) else "")
                 for n in unknown]
        raise DataError(f"{registry_path.name} does not register {', '.join(hints)}; "
                        f"run `vslm stats` without names to see every dataset")


def dataset_stats(names: list[str] | None = None, recipe_name: str | None = None,
                  registry_path: Path = DATASET_INFO) -> tuple[str, list[str]]:
    """The table, and the problems (datasets that could not be read), each one line."""
    registry = load_registry(registry_path)
    if names:
        _check_names(names, registry, registry_path)
    names = names or list(registry)
    recipes = [get_recipe(recipe_name)] if recipe_name else list(load_recipes().values())
    lines = [f"{'dataset':28} {'rows':>6} {'min':>5} {'p50':>5} {'p95':>5} {'max':>5}  over cutoff"]
    problems: list[str] = []
    for name in names:
        entry = registry[name]
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            lines.append(f"{name:28} {'-':>6}  (hub or script dataset: not read offline)")
            continue
        try:
            rows = load_rows(registry_path.parent / entry["file_name"])
        except DataError as exc:
            problems.append(str(exc))
            lines.append(f"{name:28} {'-':>6}  unreadable (see below)")
            continue
        if not rows:
            lines.append(f"{name:28} {0:>6} {'-':>5} {'-':>5} {'-':>5} {'-':>5}  no rows")
            continue
        lengths, gets_system = row_lengths(rows, entry)
        flags = []
        for recipe in recipes:
            sft, pt = name in recipe["datasets"], name in ((recipe["pt"] or {}).get("datasets", []))
            if recipe_name or sft or pt:
                cutoff = recipe["cutoff_len"]
                system = token_counts([recipe["system"]])[0] + MARKUP if recipe["system"] else 0
                over = [r["_line"] for r, n, add in zip(rows, lengths, gets_system) if n + (system if add else 0) > cutoff]
                flags.append(f"{recipe.name}(cutoff {cutoff}): {len(over)}" + (f" lines {over[:5]}" if over else ""))
        ranked = sorted(lengths)
        lines.append(f"{name:28} {len(rows):>6} {ranked[0]:>5} {nearest_rank(ranked, 50):>5} {nearest_rank(ranked, 95):>5} "
                     f"{ranked[-1]:>5}  {'; '.join(flags) or '-'}")
    return "\n".join(lines), problems
