"""`vslm new/cp`: add a recipe to the matrix (templates/matrix.yaml) as a copy of another, and render it."""

from __future__ import annotations

import re

import yaml

from ..core.errors import RecipeError
from ..core.jsonio import atomic_write_text
from .matrix import load_matrix, matrix_path
from .render import render_all, write_all


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
    atomic_write_text(path, text + "\n\n" + "\n".join("  " + line for line in block.splitlines()) + "\n")
    try:
        written = write_all(render_all())
    except Exception:
        atomic_write_text(path, text + "\n")
        raise
    return (f"added `{name}` to templates/matrix.yaml (from `{source}`) and rendered {len(written)} file(s).\n"
            f"Next: put your data in datasets/{domain}/, register {', '.join(entry['datasets'])} and {entry['eval_set']} "
            f"(`vslm convert`), edit the entry's system prompt and title, then `vslm validate`.")
