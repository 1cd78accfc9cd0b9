"""`vslm` — one command per arrow of the loop: build-tiny, render, list, check, validate, train, merge,
serve, eval, probe, demo, review, export-gguf, registry, convert, distill, stats, webui. Each subcommand's --help says what it reads and writes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .core.errors import DataError, RecipeError, VslmError
from .recipes.resolve import DEMO_PROFILE

PROFILES = ("tiny", "tiny_full")  # the profiles of templates/matrix.yaml (tests/recipes/test_matrix.py keeps them equal)


def bounded(low: float, high: float | None = None, *, whole: bool = True, give: str = "a count of 1 or more"):
    """An argparse type for a number in [low, high]; its one-line error says what to give instead."""
    def parse(text: str):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if whole else 'a number'} — give {give}") from None
        if not (low <= value < float("inf")) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not allowed — give {give}")
        return value

    return parse


positive_int = bounded(1)  # --limit, --concurrency, --max-tokens, ...
non_negative_int = bounded(0, give="0 or more")  # --overlap, --paraphrases, --min-len
port_number = bounded(1, 65535, give="a port number, 1-65535")
seconds = bounded(0, whole=False, give="0 or more seconds")  # --timeout, --cooldown


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser that reports a bad command line in one line (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def cmd_build_tiny(args) -> None:
    from .models.tiny import SPECS, build_tiny

    for name in SPECS if args.name == "all" else [args.name]:
        print(build_tiny(name, force=args.force))


def cmd_render(args) -> None:
    from .recipes.render import render_all, write_all

    written = write_all(render_all())
    print("\n".join(f"wrote {p}" for p in written) or "recipes/ already up to date")


def cmd_check(args) -> None:
    from .recipes.render import drift

    problems = drift()
    if problems:
        raise RecipeError(f"{len(problems)} generated file(s) drifted:\n  " + "\n  ".join(problems))
    print("recipes/ matches templates/ and templates/matrix.yaml")


def cmd_list(args) -> None:
    from .recipes.listing import recipe_table

    print(recipe_table(markdown=args.markdown))


def cmd_validate(args) -> None:
    from .recipes.validate import validate_all

    problems = validate_all(args.files or None)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        raise RecipeError(f"{len(problems)} problem(s) found (all listed above)")
    print("all recipes valid")


def cmd_new(args) -> None:
    from .recipes.newrecipe import new_recipe

    print(new_recipe(args.source, args.name, args.domain))


def cmd_train(args) -> None:
    from .recipes.matrix import get_recipe
    from .train.run import parse_overrides, train

    print(train(get_recipe(args.recipe), args.profile, parse_overrides(args.overrides)))


def cmd_merge(args) -> None:
    from .recipes.matrix import get_recipe
    from .train.run import merge, parse_overrides

    print(merge(get_recipe(args.recipe), args.profile, parse_overrides(args.overrides)))


def cmd_serve(args) -> None:
    from .core.paths import ROOT
    from .recipes.matrix import format_overrides, get_recipe
    from .recipes.resolve import resolve
    from .serve.servers import llamafactory_api, recipe_vllm_server, vllm_for

    recipe = get_recipe(args.recipe)
    plan = resolve(recipe, args.profile)
    python = vllm_for(args.backend)
    if python:
        server = recipe_vllm_server(python, plan, args.port, plan.serve_log)
    else:
        infer = plan.stage("infer")
        server = llamafactory_api(ROOT / infer.recipe_file, format_overrides(infer.overrides), args.port,
                                  plan.serve_log, name=recipe.name)
    with server:
        models = recipe.name if plan.full_finetune or not python else f"base, {recipe.name}"
        print(f"serving `{recipe.name}` at {server.base_url}; models: {models} (Ctrl-C stops it)", flush=True)
        try:
            while server.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def judge_of(args):
    """The LLM judge the --judge flags ask for, or None."""
    if not args.judge:
        return None
    from .eval.judge import judge_from_env

    return judge_from_env(args.judge_base_url, args.judge_model, args.judge_rubric, args.judge_structured)


def add_judge_flags(p) -> None:
    g = p.add_argument_group("LLM judge (optional; endpoint and keys from VSLM_JUDGE_* or VSLM_TEACHER_* in the environment or .env)")
    g.add_argument("--judge", action="store_true", help="score QA/refusal answers 1-5 against the reference with an LLM judge")
    g.add_argument("--judge-base-url", help="judge endpoint (default $VSLM_JUDGE_BASE_URL)")
    g.add_argument("--judge-model", help="judge model (default $VSLM_JUDGE_MODEL)")
    g.add_argument("--judge-rubric", type=Path, help="Markdown rubric given to the judge (default eval/judge_rubric.md)")
    g.add_argument("--judge-structured", action="store_true", help="constrain verdicts to JSON with vLLM structured outputs")


def cmd_eval(args) -> None:
    from .core.jsonio import atomic_write_json
    from .eval.evaluate import evaluate, load_eval_rows
    from .recipes.matrix import get_recipe
    from .recipes.resolve import resolve

    recipe = get_recipe(args.recipe)
    rows = load_eval_rows(args.eval_set or recipe["eval_set"], args.limit)
    out = Path(args.out or resolve(recipe).eval_file(args.model, args.rag))
    rag_kw, retrieval = {}, None
    if args.rag or args.verify or args.regenerate_below is not None:  # retrieve from the recipe's knowledge (vslm.eval.rag)
        from .core.jsonio import read_text
        from .eval.rag import TEMPLATE, check_template, retrieval_for

        if args.rag_template and not args.rag_template.is_file():
            raise DataError(f"--rag-template {args.rag_template}: file not found (a text file with {{passages}} and {{question}})")
        template = check_template(read_text(args.rag_template)) if args.rag_template else TEMPLATE
        retrieval, passages = retrieval_for(recipe, None, rows, args.rag_k, template)
        rag_kw = dict(passages=passages, template=template if args.rag else None,
                      regenerate_below=args.regenerate_below, verify_threshold=args.verify_threshold)
    args.cache_path = out.with_suffix(".cache.jsonl")  # named by main() if the run is interrupted
    common = dict(base_url=args.base_url.rstrip("/"), model=args.model, system=recipe["system"],
                  max_tokens=args.max_tokens or recipe["max_new_tokens"], concurrency=args.concurrency,
                  enable_thinking=recipe["enable_thinking"], strict_model=not args.any_model, judge=judge_of(args))
    result = evaluate(rows, cache_path=out.with_suffix(".cache.jsonl"), structured=args.structured, label=args.model, **common, **rag_kw)
    if retrieval:
        result["retrieval"] = retrieval
    if args.taught:
        from .eval.evaluate import taught_rows

        taught = taught_rows(rows, recipe["datasets"], args.eval_set or recipe["eval_set"])
        if not taught:
            raise DataError(f"--taught: no row of `{args.eval_set or recipe['eval_set']}` has `taught_question` (see datasets/FORMAT.md)")
        result["taught"] = evaluate(taught, cache_path=out.with_suffix(".taught.cache.jsonl"), label=f"{args.model} taught", **common)
    atomic_write_json(out, result)
    print(json.dumps(result["summary"]["overall"], ensure_ascii=False))
    if retrieval:
        v = result["verification"]
        print(f"retrieval: top-{args.rag_k} hit rate {retrieval['hit_rate']} ({retrieval['hits']} of {retrieval['rows']} rows), "
              f"{retrieval['ms_per_query']} ms per query; verification: {v['flagged']} of {v['n']} answers flagged below "
              f"{v['threshold']}, caught {v['caught']} of {v['hallucinations']} hallucinations, {v['regenerated']} regenerated")
    if args.taught:
        print("taught questions (injection check): " + json.dumps(result["taught"]["summary"]["overall"], ensure_ascii=False))
    print(f"wrote {out}")


def cmd_probe(args) -> None:
    from .core.paths import rel
    from .eval.probe import probe
    from .recipes.matrix import get_recipe
    from .recipes.resolve import resolve

    recipe = get_recipe(args.recipe)
    args.cache_path = (args.out or resolve(recipe).probe_dir) / "cache.jsonl"  # named by main() if interrupted
    result = probe(recipe, base_url=args.base_url.rstrip("/"), model=args.model, eval_file=args.eval_file,
                   out_dir=args.out, limit=args.limit, max_tokens=args.max_tokens, concurrency=args.concurrency,
                   strict_model=not args.any_model, labels=args.write_labels, replace=args.replace)
    counts = result["counts"]
    print(f"{counts['facts']} taught facts: {counts['known']} Known, {counts['unknown']} Unknown to `{args.model}`")
    print(f"wrote {rel(result['probe_file'])}")
    if args.write_labels:
        print(f"wrote `known` on {counts['facts']} rows of {result['eval_file']} ({result['labels_changed']} changed)")


def cmd_demo(args) -> None:
    from .pipeline import demo
    from .recipes.matrix import get_recipe
    from .recipes.resolve import resolve

    args.cache_path = resolve(get_recipe(args.recipe), args.profile).eval_dir / "cache"  # as pipeline.demo writes it

    demo(args.recipe, args.profile, backend=args.backend, port=args.port, limit=args.limit, skip_train=args.skip_train,
         judge=judge_of(args))


def cmd_review(args) -> None:
    from .core.paths import rel
    from .eval.review import import_scores, make_sheet

    if args.import_files:
        target, summary = import_scores(args.import_files, args.key, args.replace)
        print(f"{len(summary['raters'])} rater(s); mean human score: " + ", ".join(f"{k} {v}" for k, v in summary["mean_score"].items())
              + "; preferred: " + ", ".join(f"{k} {v}" for k, v in summary["preference_rate"].items()))
        if summary.get("agreement"):
            print(f"agreement: Fleiss' kappa on preferences {summary['agreement']['preference_fleiss_kappa']}, "
                  f"weighted kappa on scores {summary['agreement']['score_weighted_kappa_mean']}")
        print(f"wrote {rel(target)} (and its section in the report beside it)")
        return
    if not args.recipe:
        raise DataError("vslm review: name a recipe to write a sheet (vslm review <recipe> --n 50), or --import SCORES.json")
    from .recipes.matrix import get_recipe

    sheet, key = make_sheet(get_recipe(args.recipe), n=args.n, seed=args.seed, systems=args.systems, report=args.report,
                            answers=args.answers, out=args.out, profile=args.profile, replace=args.replace)
    print(f"wrote {rel(sheet)} (open it in a browser, offline; raters export JSON) and its key {rel(key)} (keep it; raters must not see it)")


def cmd_registry(args) -> None:
    from .core import paths
    from .data.datacheck import check_repository
    from .data.registry import unchecked_entries

    problems = check_repository()
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        raise DataError(f"{len(problems)} registry problem(s) (listed above)")
    unchecked = unchecked_entries(paths.DATASET_INFO)
    print("dataset_info.json: every local entry's file exists, parses and matches its formatting, columns and tags "
          "as LlamaFactory 0.9.5 reads them; every recipe's dataset is registered")
    if unchecked:
        print(f"not checked offline ({len(unchecked)}):")
        for line in unchecked:
            print(f"  {line}")


def cmd_corpus(args) -> None:
    from .data.documents import build_corpus

    n = build_corpus(args.source, args.name, args.out, args.size, args.overlap, args.replace, ocr=args.ocr_engine)
    print(f"wrote {n} chunks to {args.out} and registered `{args.name}` (use it in a stage-pt recipe)")


def cmd_convert(args) -> None:
    from .data.convert import convert

    rep = convert(args.source, args.format, args.name, args.out, val_ratio=args.val_ratio, seed=args.seed,
                  repeat=args.repeat, times=args.times, replace=args.replace, skip_invalid=args.skip_invalid,
                  clean=args.clean)
    print(f"read {rep.read} rows: kept {rep.kept}, dropped {rep.duplicates} duplicates, {len(rep.errors)} invalid, "
          f"added {rep.repeated} key-sample repeats" + (f"; --clean changed {rep.cleaned} cell(s)" if args.clean else ""))
    for err in rep.errors[:20]:
        print(f"  skipped {err}", file=sys.stderr)
    for path, n in rep.files.items():
        print(f"wrote {path} ({n} rows)")


def cmd_distill(args) -> None:
    from .data.distill import Interrupted, Options, distill, summary_line
    from .data.distill import teacher_from_env

    opts = Options(size=args.size, overlap=args.overlap, questions=args.questions, paraphrases=args.paraphrases,
                   judge=args.judge, min_len=args.min_len, max_len=args.max_len)
    try:
        summary = distill(args.source, args.name, teacher_from_env(args.base_url, args.model), options=opts,
                          concurrency=args.concurrency, work_dir=args.work, out_dir=args.out, replace=args.replace, ocr=args.ocr_engine,
                          teacher_kw={"timeout": args.timeout, "attempts": args.attempts, "cooldown": args.cooldown,
                                      "strict_model": not args.any_model})
    except Interrupted as exc:
        args.cache_path = exc.cache  # main() says where the finished answers are
        raise
    print(summary_line(summary))
    for err in summary["errors"][:10]:
        print(f"  {err}", file=sys.stderr)
    for item in summary["skipped"]:
        print(f"  skipped {item}", file=sys.stderr)
    if summary["dropped"]["count"]:
        print(f"dropped {summary['dropped']['count']} (each with its reason in {summary['dropped']['file']}), first ones:")
        for line in summary["dropped"]["first"][:5]:
            print(f"  {line}")
    print(f"wrote {summary['distilled']} (with provenance)")
    if not summary["dataset"]:
        raise DataError("no question-answer pair passed the filters; nothing was registered (see the counts above)")
    for path, n in summary["dataset"].items():
        print(f"wrote {path} ({n} rows) and registered `{args.name}_train`")


def cmd_webui(args) -> None:
    from .train.llamaboard import run

    run(host=args.host, port=args.port, open_browser=args.open, presets=not args.no_presets)


def cmd_stats(args) -> None:
    from .data.stats import dataset_stats

    table, problems = dataset_stats(args.datasets, args.recipe)
    print(table)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        raise DataError(f"{len(problems)} dataset(s) could not be read (listed above)")


def cmd_export_gguf(args) -> None:
    from .serve.gguf import evaluate_quants, export_gguf, parse_quants
    from .recipes.matrix import get_recipe

    recipe, quants = get_recipe(args.recipe), parse_quants(args.quant)
    if not args.eval_only:
        export_gguf(recipe, args.profile, quants, replace=args.replace)
    if args.eval or args.eval_only:
        evaluate_quants(recipe, args.profile, quants, limit=args.limit, concurrency=args.concurrency, port=args.port,
                        replace=args.replace)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vslm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build-tiny", help="build (or reuse) the tiny offline Qwen2/Qwen3 models into models/")
    p.add_argument("--name", default="all", help="tiny-qwen2, tiny-qwen3 or all (default)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached build matches")
    p.set_defaults(func=cmd_build_tiny)

    sub.add_parser("render", help="write recipes/ from templates/*.j2 and templates/matrix.yaml").set_defaults(func=cmd_render)
    sub.add_parser("check", help="fail if recipes/ differs from what the templates render").set_defaults(func=cmd_check)
    p = sub.add_parser("list", help="table of recipes: name, base model, method, datasets, rank, stages")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("validate", help="check every recipe (or the given files) through LlamaFactory's own argument parser and our rules; reports all problems")
    p.add_argument("files", nargs="*", type=Path)
    p.set_defaults(func=cmd_validate)
    for name in ("new", "cp"):
        p = sub.add_parser(name, help="start your own recipe from an existing one (adds it to templates/matrix.yaml and renders it)")
        p.add_argument("source"), p.add_argument("name")
        p.add_argument("--domain", help="domain (datasets/<domain>/); default: the new name's first word")
        p.set_defaults(func=cmd_new)

    for name, func, text in (("train", cmd_train, "train a recipe's stages (pt then sft) with llamafactory-cli train; writes run_record.json beside the adapter"),
                             ("merge", cmd_merge, "merge the adapter into the base with llamafactory-cli export")):
        p = sub.add_parser(name, help=text)
        p.add_argument("recipe")
        p.add_argument("--profile", choices=PROFILES, help="tiny = the same recipe + CPU overrides on the tiny model")
        p.add_argument("overrides", nargs="*", help="extra key=value overrides passed to llamafactory-cli")
        p.set_defaults(func=func)

    p = sub.add_parser("serve", help="serve a recipe's base + adapter on 127.0.0.1 (vLLM if installed, else llamafactory-cli api)")
    p.add_argument("recipe")
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("--backend", choices=["auto", "vllm", "llamafactory"], default="auto")
    p.add_argument("--port", type=port_number, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("eval", help="evaluate one served model on a recipe's held-out set; writes answers, scores and summary JSON")
    p.add_argument("recipe")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", default="base", help="served model name (vLLM: base or the recipe name)")
    p.add_argument("--eval-set", help="registered evaluation set (default: the recipe's)")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N rows")
    p.add_argument("--max-tokens", type=positive_int, help="default: the recipe's max_new_tokens")
    p.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight at once (default 8)")
    p.add_argument("--structured", action="store_true", help="constrain classification answers to the label set (vLLM structured outputs)")
    p.add_argument("--any-model", action="store_true", help="do not require --model in /v1/models (llamafactory-cli api ignores it)")
    p.add_argument("--out", help="output JSON (default saves/eval/<recipe>/<model>.json)")
    p.add_argument("--taught", action="store_true", help="also ask the taught questions (the training questions the rows link to "
                   "by taught_question: an injection check, not generalisation); stored under `taught`")
    g = p.add_argument_group("retrieval baseline (BM25 over the recipe's own documents or training answers; index in saves/<recipe>/rag/)")
    g.add_argument("--rag", action="store_true", help="put the top-k retrieved passages into the prompt (default out: <model>-rag.json)")
    g.add_argument("--rag-k", type=positive_int, default=3, help="passages per question (default 3: finance_eval hit rate "
                   "top-1 62.7%%, top-3 85.6%%, top-5 89.0%%)")
    g.add_argument("--rag-template", type=Path, help="text file with the prompt, holding {passages} and {question} (default: vslm/eval/rag.py TEMPLATE)")
    g.add_argument("--verify", action="store_true", help="check every answer's numbers and named facts against the retrieved "
                   "passages (consistency score, flagged below --verify-threshold); on with --rag")
    g.add_argument("--verify-threshold", type=bounded(0, 1, whole=False, give="a number from 0 to 1"), default=0.8,
                   help="consistency below this is flagged (default 0.8)")
    g.add_argument("--regenerate-below", type=bounded(0, 1, whole=False, give="a number from 0 to 1"),
                   help="ask an answer scoring below this again, with the passages in the prompt (e.g. 0.8)")
    add_judge_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("probe", help="ask the served BASE model each taught fact's question and label the fact Known/Unknown "
                       "(Gekhman et al. 2024); writes saves/probe/<recipe>/probe.json, --write-labels sets `known` on the eval rows")
    p.add_argument("recipe")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--model", default="base", help="served name of the base model (vLLM: base)")
    p.add_argument("--eval-file", type=Path, help="held-out JSONL to probe and label (default: the recipe's registered eval set)")
    p.add_argument("--limit", type=positive_int, help="probe only the first N rows")
    p.add_argument("--max-tokens", type=positive_int, help="default: the recipe's max_new_tokens")
    p.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight at once (default 8)")
    p.add_argument("--any-model", action="store_true", help="do not require --model in /v1/models (llamafactory-cli api ignores it)")
    p.add_argument("--out", type=Path, help="output folder for probe.json and the answer cache (default saves/probe/<recipe>/)")
    p.add_argument("--write-labels", action="store_true", help="write `known: true/false` onto the probed rows of the eval file (atomically)")
    p.add_argument("--replace", action="store_true", help="with --write-labels: overwrite labels an earlier probe wrote")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("demo", help="the main job: tiny model -> train -> merge -> serve -> evaluate base vs fine-tuned -> report")
    p.add_argument("--recipe", default="telecom_r32")
    p.add_argument("--profile", default=DEMO_PROFILE, choices=PROFILES,
                   help="tiny_full (default): a full fine-tune of the first rows of each dataset (profiles.tiny_full in templates/matrix.yaml): the facts provably reach the model; tiny: a short LoRA run")
    p.add_argument("--backend", choices=["auto", "vllm", "llamafactory"], default="auto")
    p.add_argument("--port", type=port_number)
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N held-out rows")
    p.add_argument("--skip-train", action="store_true", help="reuse an existing trained adapter or model")
    add_judge_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("convert", help="convert distilled/CSV/Alpaca/ShareGPT/OpenAI data into datasets/<name>/<name>_train.jsonl and register it")
    p.add_argument("source", type=Path)
    p.add_argument("--format", required=True, choices=["distilled", "csv", "alpaca", "sharegpt", "openai"])
    p.add_argument("--name", required=True, help="dataset prefix: registers <name>_train (and <name>_val with --val-ratio)")
    p.add_argument("--out", type=Path, help="output folder (default datasets/<name>/)")
    p.add_argument("--val-ratio", type=float, default=0.0, help="fraction held out as <name>_val for validation loss")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", action="append", help="repeat training rows containing this text (key samples); may be given several times")
    p.add_argument("--times", type=int, default=3, help="total copies of each key sample (default 3)")
    p.add_argument("--replace", action="store_true", help="overwrite existing data files and registry entries of this --name "
                   "(without it nothing existing is replaced)")
    p.add_argument("--skip-invalid", action="store_true", help="drop invalid rows (reported) instead of failing")
    p.add_argument("--clean", action="store_true", help="drop HTML markup (<p>, <br>, &nbsp; ...) from cells that contain "
                   "HTML tags, keeping line breaks; other text is always kept verbatim (only the ends of cells are trimmed)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("distill", help="distil documents (PDF/MD/TXT/DOCX) into question-answer pairs with a teacher model "
                       "(VSLM_TEACHER_BASE_URL/_MODEL/_API_KEYS from the environment or .env) and register <name>_train")
    p.add_argument("source", type=Path, help="a document or a folder of documents")
    p.add_argument("--name", required=True, help="dataset prefix: writes datasets/<name>/<name>_train.jsonl, registers <name>_train")
    p.add_argument("--out", type=Path, help="dataset folder (default datasets/<name>/)")
    p.add_argument("--work", type=Path, help="distilled JSONL and summary (default saves/distill/<name>/), and the resumable "
                   "request cache (default saves/distill/cache.jsonl, shared by every --name)")
    p.add_argument("--size", type=positive_int, default=2000, help="chunk size in characters (default 2000)")
    p.add_argument("--overlap", type=non_negative_int, default=200, help="chunk overlap in characters, less than --size (default 200)")
    p.add_argument("--questions", type=positive_int, default=3, help="questions per full-size chunk (default 3)")
    p.add_argument("--paraphrases", type=non_negative_int, default=0, help="extra phrasings per kept question (default 0)")
    p.add_argument("--judge", type=int, choices=range(1, 6), help="also have the teacher score answers 1-5; keep those >= this")
    p.add_argument("--min-len", type=non_negative_int, default=50, help="shortest answer kept, in characters (default 50)")
    p.add_argument("--max-len", type=positive_int, default=500, help="longest answer kept, in characters (default 500)")
    p.add_argument("--concurrency", type=positive_int, default=8, help="teacher requests in flight at once (default 8)")
    p.add_argument("--timeout", type=seconds, default=120, help="seconds to wait for one teacher answer (default 120)")
    p.add_argument("--attempts", type=positive_int, default=5, help="tries per request before it counts as failed (default 5)")
    p.add_argument("--cooldown", type=seconds, default=30, help="seconds a key rests after HTTP 429/401/403 when the "
                   "server sends no Retry-After (default 30; a Retry-After is honoured, up to 600)")
    p.add_argument("--base-url", help="teacher endpoint (default $VSLM_TEACHER_BASE_URL)")
    p.add_argument("--model", help="teacher model (default $VSLM_TEACHER_MODEL); keys only from the environment")
    p.add_argument("--any-model", action="store_true", help="do not require --model in the endpoint's /models list "
                   "(for gateways that list only some of the models they serve)")
    p.add_argument("--replace", action="store_true", help="overwrite an existing <name>_train file and registry entry "
                   "(checked before any request)")
    p.add_argument("--ocr-engine", choices=["rapidocr", "tesseract", "off"], default="rapidocr",
                   help="read PDF pages that have no text layer (scans) by OCR: rapidocr (default; bundled models, ~5 s/page), "
                   "tesseract (Debian's tesseract-ocr + tesseract-ocr-chi-sim, ~6x faster, a little less exact) or off")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("corpus", help="chunk documents (PDF/MD/TXT/DOCX) into a {text} JSONL for stage pt and register it")
    p.add_argument("source", type=Path, help="a document or a folder of documents")
    p.add_argument("--name", required=True, help="dataset name to register (letters, digits, _ and -)")
    p.add_argument("--out", type=Path, required=True, help="the JSONL file to write, e.g. datasets/<domain>/<name>.jsonl")
    p.add_argument("--size", type=positive_int, default=1000, help="chunk size in characters (default 1000)")
    p.add_argument("--overlap", type=non_negative_int, default=100, help="chunk overlap in characters, less than --size (default 100)")
    p.add_argument("--replace", action="store_true", help="overwrite an existing --out file or registry entry")
    p.add_argument("--ocr-engine", choices=["rapidocr", "tesseract", "off"], default="rapidocr",
                   help="read PDF pages that have no text layer (scans) by OCR: rapidocr (default; bundled models, ~5 s/page), "
                   "tesseract (Debian's tesseract-ocr + tesseract-ocr-chi-sim, ~6x faster, a little less exact) or off")
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("stats", help="rows and token lengths (real Qwen tokenizer) per dataset; flags rows over a recipe's cutoff_len")
    p.add_argument("datasets", nargs="*", help="registered names (default: all)")
    p.add_argument("--recipe", help="flag rows longer than this recipe's cutoff_len (default: each recipe using the dataset)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("webui", help="LlamaBoard (llamafactory-cli webui) from the repository root on 127.0.0.1, offline; "
                       "writes llamaboard_config/<recipe>.yaml presets (Train tab: Config path, Load arguments)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=7860, help="default 7860, as llamafactory-cli webui")
    p.add_argument("--open", action="store_true", help="open a browser tab")
    p.add_argument("--no-presets", action="store_true", help="do not write the recipe presets into llamaboard_config/")
    p.set_defaults(func=cmd_webui)

    p = sub.add_parser("review", help="blind human review: write an offline HTML sheet of sampled questions with two systems' "
                       "answers as A/B (1-5 scores + preference, exported as JSON); --import adds the scores to the report")
    p.add_argument("recipe", nargs="?", help="recipe whose report (or --answers) to sample")
    p.add_argument("--n", type=positive_int, default=50, help="questions to sample (default 50)")
    p.add_argument("--seed", type=int, default=0, help="sampling and A/B order seed (default 0)")
    p.add_argument("--profile", choices=PROFILES, help="review the tiny profile's report (saves/tiny/<recipe>/eval/report.json)")
    p.add_argument("--report", type=Path, help="report.json to take answers from (default: the recipe's demo report)")
    p.add_argument("--answers", type=Path, nargs=2, metavar=("A.json", "B.json"), help="two `vslm eval` outputs instead of a report")
    p.add_argument("--systems", nargs=2, metavar=("FIRST", "SECOND"), help="two systems of the report (default: base fine-tuned; "
                   "also 'base + RAG', 'fine-tuned + RAG')")
    p.add_argument("--out", type=Path, help="the HTML sheet (default <report dir>/review/<sheet>.html; its key file beside it)")
    p.add_argument("--import", dest="import_files", type=Path, nargs="+", metavar="SCORES.json",
                   help="raters' exported scores: add human scores, preference rate and agreement to the report")
    p.add_argument("--key", type=Path, help="with --import: the sheet's key file (default: the one the sheet names)")
    p.add_argument("--replace", action="store_true", help="overwrite an existing sheet, or replace a rater's imported scores")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("export-gguf", help="convert the merged model to GGUF for llama.cpp/Ollama (f16, q8_0, q4_k_m ...) with an "
                       "Ollama Modelfile; --eval serves each file and measures the quantization loss on the held-out set")
    p.add_argument("recipe")
    p.add_argument("--profile", choices=PROFILES, help="the tiny-profile run (saves/tiny/<recipe>/merged)")
    p.add_argument("--quant", default="f16,q8_0,q4_k_m", help="comma-separated: f32, f16, bf16, q8_0 (converted), q4_k_m, "
                   "q5_k_m, q6_k (quantized from f16; need `make gguf`); default f16,q8_0,q4_k_m")
    p.add_argument("--replace", action="store_true", help="overwrite existing GGUF files, Modelfile and quant_eval results")
    p.add_argument("--eval", action="store_true", help="then serve each GGUF (llama-cpp-python, 127.0.0.1) and run the "
                   "held-out evaluation on it; writes gguf/quant_eval.json and quant_eval.md")
    p.add_argument("--eval-only", action="store_true", help="evaluate already exported files (no conversion)")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N held-out rows")
    p.add_argument("--concurrency", type=positive_int, default=2, help="requests in flight at once (default 2; the server "
                   "answers one at a time)")
    p.add_argument("--port", type=port_number, help="server port (default: a free one)")
    p.set_defaults(func=cmd_export_gguf)

    p = sub.add_parser("registry", help="check dataset_info.json against the files and every recipe's datasets")
    p.set_defaults(func=cmd_registry)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may come before or after --options
        if not hasattr(args, "overrides") or not all("=" in e and not e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        args.func(args)
    except VslmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `vslm list | head` closed the pipe: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        cache = getattr(args, "cache_path", None)  # set by commands whose finished work survives (eval, demo)
        if cache is not None and Path(cache).exists():
            from .core.paths import rel

            print(f"interrupted — finished answers are cached in {rel(cache)}; run the same command again to resume", file=sys.stderr)
        else:
            print("interrupted — run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
