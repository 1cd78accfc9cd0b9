"""`vslm list`: the recipes of the matrix as a table."""

from __future__ import annotations

from .matrix import load_recipes


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

