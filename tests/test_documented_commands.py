"""Every command the recipes document runs: each `vslm ...` and `llamafactory-cli ...` in a recipe header
(recipes/*.yaml) and in a family guide (recipes/families/*.md) goes through its preflight — argument parsing,
the files and models it needs, and LlamaFactory's own parser on the exact configuration it would run —
without training anything. A preflight may only fail because an adapter a later step needs is not trained yet."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT

from vslm.core.errors import RecipeError
from vslm.recipes.matrix import Stage, get_recipe, load_matrix
from vslm.recipes.resolve import resolve
from vslm.train.run import check_stage_arguments, llamafactory_cli, parse_overrides, preflight
from vslm.recipes.validate import _kind_of, argument_problems, gpu_package_problems, load_like_llamafactory

DOCS = sorted(ROOT.glob("recipes/*.yaml")) + sorted(ROOT.glob("recipes/families/*.md"))
COMMAND = re.compile(r"(?:^|\s)((?:[A-Z_]+=\S+\s+)*(?:vslm|llamafactory-cli)(?:\s.*)?)$")
NEEDS_CONFIG = ("train", "export", "chat", "webchat", "api")
NOT_TRAINED_YET = "run the training stage first"  # the one reason a preflight may give before training


def _commands_in(text: str) -> list[str]:
    """Commands in a piece of prose: its `code spans` if it has any, else its runs separated by 2+ spaces."""
    pieces = re.findall(r"`([^`\n]+)`", text) or re.split(r"\s{2,}", text)
    found = []
    for piece in pieces:
        for part in piece.split("&&"):
            match = COMMAND.search(part.strip())
            if not match:
                continue
            words = shlex.split(match.group(1))
            while "=" in words[0]:
                words.pop(0)
            if words[0] == "llamafactory-cli" and words[1:2] and words[1] in NEEDS_CONFIG and len(words) < 3:
                continue  # a mention of the verb in prose (e.g. "shows the `llamafactory-cli train` call")
            optional = re.search(r"\s\[([^\]]+)\]", match.group(1))  # `vslm train x [--profile tiny]`: both forms
            if optional:
                found += [match.group(1).replace(optional.group(0), ""), match.group(1).replace(optional.group(0), " " + optional.group(1))]
            else:
                found.append(match.group(1).strip())
    return found


def documented_commands() -> dict[str, list[str]]:
    """command -> the files that document it."""
    out: dict[str, list[str]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        if doc.suffix == ".yaml":
            lines = [l[1:].strip() for l in text.split("\n\n")[0].splitlines() if l.startswith("#")]
        else:
            shell = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S)
            lines = [l for block in shell for l in block.splitlines()] + re.sub(r"```.*?```", "", text, flags=re.S).splitlines()
        commands = [c for line in lines for c in _commands_in(line)]
        for line in lines:  # "Tiny CPU profile: append  k=v ...": the file's own commands with those overrides
            appended = re.search(r"append\s{2,}(\S+=.*)$", line)
            if appended:
                commands += [f"{c} {appended.group(1)}" for c in list(commands)
                             if re.search(rf"llamafactory-cli ({'|'.join(NEEDS_CONFIG)}) ", c)]
        for command in commands:
            out.setdefault(" ".join(shlex.split(command)), []).append(str(doc.relative_to(ROOT)))
    return dict(sorted(out.items()))


COMMANDS = documented_commands()


def test_the_documents_name_the_commands_of_every_stage():
    """The extraction is not vacuous: every recipe's train, merge and serve commands are found, tiny profile included."""
    programs = {c.split()[0] if "=" not in c.split()[0] else next(w for w in c.split() if "=" not in w) for c in COMMANDS}
    assert programs == {"vslm", "llamafactory-cli"}
    for name in load_matrix()["recipes"]:
        for command in (f"vslm train {name}", f"vslm train {name} --profile tiny", f"llamafactory-cli train recipes/{name}.yaml",
                        f"llamafactory-cli export recipes/{name}_merge.yaml", f"vslm serve {name}"):
            assert command in COMMANDS, command
    assert "recipes/families/finance.md" in COMMANDS["vslm train finance_rules --profile tiny"]


def _ensure_model(request, model: str) -> None:
    """Build (once per session, cached) the tiny model a command runs on, so its model check is real."""
    name = Path(str(model)).name
    if name in ("tiny-qwen2", "tiny-qwen3"):
        request.getfixturevalue(name.replace("-", "_"))


def _check_stage(request, stage: Stage, overrides: dict, config: dict, adapter_may_be_missing: bool) -> None:
    _ensure_model(request, config.get("model_name_or_path", ""))
    try:
        preflight(stage, overrides)
    except RecipeError as exc:
        if not (adapter_may_be_missing and NOT_TRAINED_YET in str(exc)):
            raise
    config = dict(config)
    if config.get("deepspeed"):
        ds = ROOT / str(config["deepspeed"])
        assert ds.is_file(), f"{ds} is missing"
        assert json.loads(ds.read_text(encoding="utf-8"))["zero_optimization"]["stage"] in (2, 3)
        if importlib.util.find_spec("deepspeed") is None:  # a GPU package: parse the rest of the arguments without it
            config.pop("deepspeed")
    assert argument_problems(_kind_of(config), config) == []


def _vslm(request, words: list[str]) -> None:
    from vslm.cli import build_parser

    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(words)
    except SystemExit:
        pytest.fail(f"`vslm {' '.join(words)}` is rejected by vslm's argument parser")
    if extra:
        assert hasattr(args, "overrides") and all("=" in e for e in extra), f"unrecognized arguments: {extra}"
        args.overrides = [*args.overrides, *extra]
    if args.command in ("train", "merge", "demo"):
        recipe = get_recipe(args.recipe)
        extra_overrides = parse_overrides(getattr(args, "overrides", []))
        plan = resolve(recipe, args.profile, extra_overrides)
        if args.command in ("train", "demo"):
            first, *later = plan.train_stages
            _check_stage(request, first.stage, first.overrides, first.config, adapter_may_be_missing=False)
            for run in later:  # as `vslm train` does: LlamaFactory's parser before the first stage trains
                config = run.config
                _ensure_model(request, config["model_name_or_path"])
                try:
                    check_stage_arguments(run)
                except RecipeError as exc:  # a GPU command on this CPU machine: only its absent GPU packages may fail
                    missing = gpu_package_problems(config)
                    if not missing or set(str(exc).split(": ", 1)[1].split("; ")) != set(missing):
                        raise
        if args.command in ("merge", "demo") and not plan.full_finetune:  # a full fine-tune has nothing to merge
            run = plan.stage("merge")
            _check_stage(request, run.stage, run.overrides, run.config, adapter_may_be_missing=True)
    elif args.command == "serve":
        recipe = get_recipe(args.recipe)
        run = resolve(recipe, args.profile).stage("infer")
        _check_stage(request, run.stage, run.overrides, run.config, adapter_may_be_missing=True)
    elif args.command == "eval":
        from vslm.eval.evaluate import load_eval_rows

        recipe = get_recipe(args.recipe)
        assert load_eval_rows(args.eval_set or recipe["eval_set"], args.limit)
    elif args.command == "validate":
        from vslm.recipes.validate import validate_all

        assert validate_all([ROOT / f for f in args.files] or None) == []
    elif args.command == "registry":
        from vslm.data.datacheck import check_repository

        assert check_repository() == []
    elif args.command in ("render", "check"):
        from vslm.recipes.render import drift

        assert drift() == []
    elif args.command == "build-tiny":
        from vslm.models.tiny import SPECS

        assert args.name == "all" or args.name in SPECS
    elif args.command == "webui":
        assert llamafactory_cli()
    else:
        pytest.fail(f"no preflight is defined for `vslm {args.command}`: add one to this test")


def _llamafactory_cli(request, words: list[str]) -> None:
    llamafactory_cli()
    verb, *rest = words
    if verb == "webui":
        return
    assert verb in NEEDS_CONFIG, f"no preflight is defined for `llamafactory-cli {verb}`: add one to this test"
    path, overrides = Path(rest[0]), rest[1:]
    assert (ROOT / path).is_file(), f"{path} does not exist"
    # exactly what llamafactory-cli reads: the YAML and the key=value arguments merged by OmegaConf
    config = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(load_like_llamafactory(ROOT / path)),
                                                    OmegaConf.from_cli(overrides)))
    kind = "train" if verb == "train" else "merge" if verb == "export" else "infer"
    assert _kind_of(config) == kind, f"{path} is not a {kind} configuration but `llamafactory-cli {verb}` is given it"
    _check_stage(request, Stage(kind, "", path), parse_overrides(overrides), config, adapter_may_be_missing=True)


@pytest.mark.parametrize("command", list(COMMANDS), ids=[c[:90] for c in COMMANDS])
def test_documented_command_passes_its_preflight(request, command):
    words = shlex.split(command)
    while "=" in words[0]:  # FORCE_TORCHRUN=1 NPROC_PER_NODE=<gpus> ...: the launcher's environment, not arguments
        words.pop(0)
    program, *args = words
    (_vslm if program == "vslm" else _llamafactory_cli)(request, args)
