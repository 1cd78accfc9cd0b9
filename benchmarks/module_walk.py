#!/usr/bin/env python
"""Follow one recipe through a real `vslm demo` and count what a reader has to follow: the vslm modules the run
enters and the calls that cross from one vslm module into another. Not a test; the demo runs for real (tiny model,
training, serving, evaluation, report), this only watches the Python calls of the `vslm demo` process.

    .venv/bin/python benchmarks/module_walk.py --out benchmarks/results/module_walk_after.json -- demo --backend llamafactory
    # the same for an older tree, e.g. `git archive 25ec88f | tar -x -C /tmp/before`:
    .venv/bin/python benchmarks/module_walk.py --tree /tmp/before --out .../module_walk_before.json -- demo ...

Counted (every number is of distinct things, so a loop over 100 rows counts once):
  modules   vslm modules with at least one function run (package __init__ files aside)
  hops      distinct (calling function -> called function) pairs where the two are in different vslm modules
  returns   hops into a module the walk had already entered before (the flow going back to a module it left)
  matrix_reads  times the recipe matrix YAML was read and validated (matrix._read_matrix where load_matrix keeps
                what it read, else every load_matrix call), the issue's "re-reads"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="repository whose vslm package runs (default: this one)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the vslm command, e.g. -- demo")
    args = parser.parse_args()
    command = [c for c in args.command if c != "--"]
    tree = args.tree.resolve()
    sys.path.insert(0, str(tree))
    os.chdir(tree)
    package = str(tree / "vslm") + os.sep
    sources = [tree / "vslm" / "recipes" / "matrix.py", tree / "vslm" / "matrix.py"]
    reads_matrix = "_read_matrix" if any(p.is_file() and "def _read_matrix(" in p.read_text(encoding="utf-8") for p in sources) \
        else "load_matrix"

    def module_of(filename: str) -> str | None:
        if not filename.startswith(package) or filename.endswith("__init__.py"):
            return None
        return filename[len(package):-3].replace(os.sep, ".")

    entered: list[str] = []
    seen_modules: set[str] = set()
    hops: dict[tuple[str, str], bool] = {}  # (caller, callee) -> was the callee's module entered before this hop
    matrix_reads = 0
    lock = threading.Lock()

    def hook(frame, event, arg):
        nonlocal matrix_reads
        if event != "call":
            return
        callee = module_of(frame.f_code.co_filename)
        if callee is None:
            return
        caller_frame = frame.f_back
        caller = None
        while caller_frame is not None:
            caller = module_of(caller_frame.f_code.co_filename)
            if caller is not None:
                break
            caller_frame = caller_frame.f_back
        with lock:
            if frame.f_code.co_name == reads_matrix:
                matrix_reads += 1
            if callee not in seen_modules:
                seen_modules.add(callee)
                entered.append(callee)
                first_entry = True
            else:
                first_entry = False
            if caller is not None and caller != callee:
                key = (f"{caller}.{caller_frame.f_code.co_name}", f"{callee}.{frame.f_code.co_name}")
                if key not in hops:
                    hops[key] = not first_entry

    threading.setprofile(hook)
    sys.setprofile(hook)
    try:
        from vslm.cli import main as vslm_main

        code = vslm_main(command)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    result = {"tree": str(tree), "command": ["vslm", *command], "exit_code": code, "modules": len(entered),
              "hops": len(hops), "returns": sum(hops.values()), "matrix_reads": matrix_reads, "modules_in_order": entered,
              "hop_list": [f"{a} -> {b}" + (" (return)" if back else "") for (a, b), back in hops.items()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"exit {code}: {result['modules']} modules, {result['hops']} hops ({result['returns']} returns), "
          f"matrix read {matrix_reads} times; wrote {args.out}")


if __name__ == "__main__":
    main()
