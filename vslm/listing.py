"""`vslm list` and `vslm new/cp`."""

from __future__ import annotations

import re

import yaml

from .matrix import RecipeError, load_matrix, load_recipes, matrix_path
from .render import render_all, write_all


def recipe_rows() -> list[dict[str, str]]:
    rows = []
    for recipe in load_recipes().values():
        stages = [("pt+sft" if s.kind == "train" and recipe["pt"] else s.kind) for s in recipe.stages if s.kind != "train_pt"]
        rows.append({
            "recipe": recipe.name,
            "base model": recipe["model"],
            "template": recipe["template"],
            "method": f"lora r{recipe['lora']['rank']}/a{recipe['lora']['alpha']}",
            "datasets": ",".join(recipe["datasets"]),
            "eval set": recipe["eval_set"],
            "stages": " → ".join(stages),
        })
    return rows


def recipe_table(markdown: bool = False) -> str:
    rows = recipe_rows()
    cols = list(rows[0])
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(f"`{r[c]}`" if c == "recipe" else r[c] for c in cols) + " |" for r in rows]
        return "\n".join(lines)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def new_recipe(source: str, name: str, domain: str | None = None) -> str:
    """Copy a matrix entry under a new name (datasets renamed to the new domain) and render it."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise RecipeError(f"recipe name `{name}` must be lowercase letters, digits and underscores, starting with a letter")
    path = matrix_path()
    matrix = load_matrix(path)
    if source not in matrix["recipes"]:
        raise RecipeError(f"unknown recipe `{source}`: choose one of {', '.join(matrix['recipes'])}")
    if name in matrix["recipes"]:
        raise RecipeError(f"recipe `{name}` already exists in {path.name}")
    domain = domain or name.split("_")[0]
    entry = yaml.safe_load(yaml.safe_dump(matrix["recipes"][source]))
    old = entry["domain"]
    entry.update(domain=domain, title=f"{name}: copied from {source} — describe your domain here",
                 datasets=[d.replace(old, domain, 1) for d in entry["datasets"]], eval_set=entry["eval_set"].replace(old, domain, 1))
    text = path.read_text(encoding="utf-8").rstrip("\n")
    block = yaml.safe_dump({name: entry}, allow_unicode=True, sort_keys=False, width=200)
    path.write_text(text + "\n\n" + "\n".join("  " + line for line in block.splitlines()) + "\n", encoding="utf-8")
    try:
        written = write_all(render_all())
    except Exception:
        path.write_text(text + "\n", encoding="utf-8")
        raise
    return (f"added `{name}` to templates/matrix.yaml (from `{source}`) and rendered {len(written)} file(s).\n"
            f"Next: put your data in datasets/{domain}/, register {', '.join(entry['datasets'])} and {entry['eval_set']} "
            f"(`vslm convert`), edit the entry's system prompt and title, then `vslm validate`.")
