#!/usr/bin/env python
"""The import graph of the `vslm` package at a git revision (or the working tree), drawn with networkx + matplotlib.
Not a test. Every `import`/`from ... import` of a vslm module counts, module-level or inside a function.

    .venv/bin/python benchmarks/import_graph.py --rev 25ec88f --out docs/import_graph_before.png
    .venv/bin/python benchmarks/import_graph.py --out docs/import_graph_after.png
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

from vslm.core.paths import ROOT

# bottom to top: the order the loop's folders sit in (a flat package has only the top level)
LAYERS = ["core", "models", "data", "recipes", "train", "serve", "eval", ""]
COLORS = {"core": "#9e9e9e", "models": "#8d6e63", "data": "#66bb6a", "recipes": "#42a5f5", "train": "#ffa726",
          "serve": "#ab47bc", "eval": "#ef5350", "": "#fdd835"}


def sources(rev: str | None) -> dict[str, str]:
    """{module name without `vslm.`: source} at `rev`, or in the working tree."""
    if rev is None:
        files = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in (ROOT / "vslm").rglob("*.py")}
    else:
        names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "vslm/"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.split()
        files = {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
                 for n in names if n.endswith(".py")}
    out = {}
    for name, text in files.items():
        module = name.removeprefix("vslm/").removesuffix(".py").replace("/", ".")
        if module.endswith("__init__") or module == "__main__":
            continue
        out[module] = text
    return out


def edges(modules: dict[str, str]) -> set[tuple[str, str]]:
    found = set()
    for module, text in modules.items():
        package = module.split(".")[:-1]
        for node in ast.walk(ast.parse(text)):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - node.level + 1]
                    stem = ".".join([*base, *([node.module] if node.module else [])])
                elif (node.module or "").startswith("vslm"):
                    stem = node.module.removeprefix("vslm").lstrip(".")
                else:
                    continue
                targets = [stem] + [f"{stem}.{a.name}" if stem else a.name for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.removeprefix("vslm.") for a in node.names if a.name.startswith("vslm.")]
            for target in targets:
                if target in modules and target != module:
                    found.add((module, target))
    return found


def layer(module: str) -> str:
    head = module.split(".")[0]
    return head if "." in module and head in LAYERS else ""


def draw(modules: dict[str, str], links: set[tuple[str, str]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    graph.add_edges_from(links)
    if all(layer(m) == "" for m in modules):  # flat package: rows by import depth (modules that import nothing at the bottom)
        dag = nx.condensation(graph)  # an import cycle is one node of it
        depth: dict[int, int] = {}
        for comp in reversed(list(nx.topological_sort(dag))):
            depth[comp] = 1 + max((depth[t] for t in dag.successors(comp)), default=-1)
        rows: dict[int, list[str]] = {}
        for comp, d in depth.items():
            rows.setdefault(d, []).extend(dag.nodes[comp]["members"])
    else:
        rows = {}
        for node in modules:
            rows.setdefault(LAYERS.index(layer(node)), []).append(node)
    pos = {}
    for y, names in rows.items():
        names.sort()
        for x, name in enumerate(names):
            pos[name] = ((x - (len(names) - 1) / 2) * 2.2, y * 2.0)
    fig, ax = plt.subplots(figsize=(16, 11))
    nx.draw_networkx_edges(graph, pos, ax=ax, alpha=0.25, arrowsize=8, edge_color="#555555", node_size=1800,
                           connectionstyle="arc3,rad=0.08")
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=1800, node_color=[COLORS[layer(n)] for n in graph], alpha=0.9)
    nx.draw_networkx_labels(graph, pos, ax=ax, labels={n: n.replace(".", ".\n") for n in graph}, font_size=7)
    cycles = list(nx.simple_cycles(graph))
    ax.set_title(f"{title}: {len(modules)} modules, {len(links)} imports, {len(cycles)} import cycle(s)"
                 " — arrows point from importer to imported", fontsize=11)
    ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def upward(links: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Imports that point up the layers (a lower folder importing a higher one)."""
    return sorted((a, b) for a, b in links if layer(a) and layer(b) and LAYERS.index(layer(a)) < LAYERS.index(layer(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="git revision (default: the working tree)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    modules = sources(args.rev)
    links = edges(modules)
    draw(modules, links, args.out, f"vslm at {args.rev or 'the working tree'}")
    print(f"{len(modules)} modules, {len(links)} imports; upward imports: {upward(links) or 'none'}; wrote {args.out}")


if __name__ == "__main__":
    main()
