"""The registry's writers on a copy of this repository's registry and datasets: nothing existing is replaced without
--replace (convert, corpus, distill — the latter before any teacher request), parallel writers keep every entry,
written files get normal modes, names stay plain, and every file is read in the encoding it came in."""

from __future__ import annotations

import json
import re
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, requests

from vslm import cli
from vslm.data import convert as conv
from vslm.core import paths
from vslm.data.documents import build_corpus
from vslm.core.errors import DataError
from vslm.core.jsonio import decode_text, read_jsonl, read_text
from vslm.data.registry import check_entry, check_name, check_registry, lf_attr, unchecked_entries

FAST = {"timeout": 5, "backoff": (0.05, 0.2), "cooldown": 0.3}


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A copy of the repository's registry and datasets/; convert and corpus default to it."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "datasets", copy / "datasets")
    shutil.copy2(ROOT / "dataset_info.json", copy / "dataset_info.json")
    monkeypatch.setattr(conv, "ROOT", copy)
    monkeypatch.setattr(conv, "DATASET_INFO", copy / "dataset_info.json")
    monkeypatch.setattr(paths, "DATASET_INFO", copy / "dataset_info.json")
    return copy


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def vslm(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def small_csv(tmp_path: Path, rows: int = 4) -> Path:
    src = tmp_path / "x.csv"
    src.write_text("instruction,input,output\n" + "".join(f"问题{i},,回答{i}\n" for i in range(rows)), encoding="utf-8")
    return src


# --- names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["finance", "finance_v2", "a-b", "2024q1", "X"])
def test_plain_names_are_accepted(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "../../x", "a/b", ".hidden", "_train", "-x", "a b", "名字", "x" * 65])
def test_names_that_are_paths_or_empty_are_refused(name):
    with pytest.raises(DataError, match=r"--name .* is not a valid dataset name"):
        check_name(name)


@pytest.mark.parametrize("name", ["../../x", ""])
def test_convert_with_a_path_or_empty_name_writes_nothing(repo, tmp_path, capsys, name):
    src = small_csv(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = vslm(capsys, "convert", src, "--format", "csv", "--name", name)
    assert code == 1 and err.count("\n") == 1 and "--name" in err and "not a valid dataset name" in err
    assert snapshot(tmp_path) == before and not list(tmp_path.parent.glob("*_train.jsonl")), "nothing written anywhere"


# --- no replacement without --replace ----------------------------------------------------------------

def test_convert_refuses_to_replace_a_shipped_data_file(repo, tmp_path, capsys):
    finance = repo / "datasets" / "finance" / "finance_train.jsonl"
    before = snapshot(repo)
    code, _, err = vslm(capsys, "convert", small_csv(tmp_path), "--format", "csv", "--name", "finance")
    assert code == 1 and err.count("\n") == 1
    assert "datasets/finance/finance_train.jsonl already exists" in err and "--replace" in err and "--name" in err
    assert snapshot(repo) == before and len(read_jsonl(finance)) == 506
    code, out, _ = vslm(capsys, "convert", small_csv(tmp_path), "--format", "csv", "--name", "finance", "--replace")
    assert code == 0 and "(4 rows)" in out and len(read_jsonl(finance)) == 4


def test_an_unregistered_file_or_an_entry_pointing_elsewhere_is_not_replaced(repo, tmp_path):
    registry = repo / "dataset_info.json"
    info = json.loads(registry.read_text(encoding="utf-8"))
    del info["finance_train"]
    registry.write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(DataError, match="finance_train.jsonl already exists with other content"):
        conv.convert(small_csv(tmp_path), "csv", "finance", registry_path=registry)
    info["fresh_train"] = {"file_name": "elsewhere/fresh.jsonl", "formatting": "alpaca"}
    registry.write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(DataError, match=r"`fresh_train` is already registered \(elsewhere/fresh.jsonl\)"):
        conv.convert(small_csv(tmp_path), "csv", "fresh", registry_path=registry)
    assert not (repo / "datasets" / "fresh").exists()


def test_converting_the_same_data_again_is_allowed(repo, tmp_path):
    conv.convert(small_csv(tmp_path), "csv", "again")
    first = snapshot(repo)
    conv.convert(small_csv(tmp_path), "csv", "again")  # same content, same entry: nothing is replaced
    assert snapshot(repo) == first


def test_corpus_refuses_an_existing_file_and_never_writes_over_another_dataset(repo, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "datasets" / "persona" / "persona_profile.md", docs)
    before = snapshot(repo)
    corpus = repo / "datasets" / "persona" / "persona_corpus.jsonl"
    code, _, err = vslm(capsys, "corpus", docs, "--name", "persona_corpus", "--out", corpus)
    assert code == 1 and err.count("\n") == 1 and "persona_corpus.jsonl already exists" in err and "--replace" in err
    telecom = repo / "datasets" / "telecom" / "telecom_train.jsonl"
    for extra in ([], ["--replace"]):
        code, _, err = vslm(capsys, "corpus", docs, "--name", "telecom_notes", "--out", telecom, *extra)
        assert code == 1 and "is the file of dataset `telecom_train`" in err
    assert snapshot(repo) == before
    code, _, _ = vslm(capsys, "corpus", docs, "--name", "persona_corpus", "--out", corpus, "--replace")
    assert code == 0 and all(set(r) >= {"text", "source"} for r in read_jsonl(corpus))
    assert not check_registry(repo / "dataset_info.json", repo)


@pytest.fixture
def teacher(scripted_server):
    from vslm.core.endpoint import EndpointConfig

    server = scripted_server(teacher=True, models=["teacher"])
    return server, EndpointConfig(server.base_url, "teacher", ["sk-test"])


def rules_docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    text = (ROOT / "datasets" / "finance" / "reimbursement_rules.md").read_text(encoding="utf-8")
    (folder / "rules.md").write_text("\n".join(l for l in text.splitlines() if l.strip() and not l.startswith("#"))[:1500],
                                     encoding="utf-8")
    return folder


@pytest.mark.parametrize("name", ["finance", "telecom"])
def test_distill_refuses_a_taken_name_before_any_teacher_request(repo, tmp_path, teacher, name):
    from vslm.data.distill import Options, distill

    server, config = teacher
    before = snapshot(repo)
    with pytest.raises(DataError, match=rf"datasets/{name}/{name}_train.jsonl.*--replace"):
        distill(rules_docs(tmp_path), name, config, options=Options(size=600, overlap=100), work_dir=tmp_path / "work",
                out_dir=repo / "datasets" / name, registry_path=repo / "dataset_info.json", teacher_kw=FAST)
    assert requests(server) == [], "refused before paying for a single request"
    assert snapshot(repo) == before


def test_distill_request_cache_is_shared_by_every_name(tmp_path, teacher, monkeypatch):
    from vslm.data import distill as dist

    server, config = teacher
    monkeypatch.setattr(dist, "ROOT", tmp_path)  # default work folders and cache under tmp_path/saves/distill
    run = lambda name, **kw: dist.distill(rules_docs(tmp_path), name, config, options=dist.Options(size=600, overlap=100),  # noqa: E731
                                          out_dir=tmp_path / "ds" / name, registry_path=tmp_path / "reg.json", teacher_kw=FAST, **kw)
    first = run("first")
    assert first["requests"]["sent"] > 0 and (tmp_path / "saves" / "distill" / "cache.jsonl").is_file()
    asked = len(requests(server))
    retry = run("retry")  # the same documents under another name ask the teacher nothing again
    assert retry["requests"]["sent"] == 0 and retry["requests"]["from_cache"] == first["requests"]["sent"]
    assert len(requests(server)) == asked
    assert retry["rows"] == first["rows"] and (tmp_path / "saves" / "distill" / "retry" / "summary.json").is_file()
    own = run("own", work_dir=tmp_path / "work")  # --work keeps its own cache
    assert own["requests"]["sent"] == first["requests"]["sent"] and (tmp_path / "work" / "cache.jsonl").is_file()


# --- parallel writers --------------------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from vslm.core import jsonio
real = jsonio.atomic_write_text
def slow_disk(path, text):  # every write of the registry takes 0.5 s: without a lock all writers read the same old file
    time.sleep(0.5)
    real(path, text)
jsonio.atomic_write_text = slow_disk
go, kind, name, src, out, registry = sys.argv[1:]
while not Path(go).exists():
    time.sleep(0.01)
if kind == "convert":
    from vslm.data.convert import convert
    convert(Path(src), "alpaca", name, Path(out), registry_path=Path(registry))
else:
    from vslm.data.documents import build_corpus
    build_corpus(Path(src), name, Path(out), registry_path=Path(registry))
"""


def test_parallel_writers_keep_every_registry_entry(tmp_path):
    registry = tmp_path / "dataset_info.json"
    shutil.copy(ROOT / "dataset_info.json", registry)
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in
                           read_jsonl(ROOT / "datasets" / "telecom" / "telecom_eval.jsonl")[:5]), encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "datasets" / "persona" / "persona_profile.md", docs)
    go = tmp_path / "go"
    jobs = [("convert", f"par{i}", src, tmp_path / f"par{i}") for i in range(4)]
    jobs += [("corpus", f"notes{i}", docs, tmp_path / f"notes{i}.jsonl") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, go, kind, name, s, out, registry], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for kind, name, s, out in jobs]
    go.touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(jobs), results
    info = json.loads(registry.read_text(encoding="utf-8"))
    want = {f"par{i}_train" for i in range(4)} | {"notes0", "notes1"}
    assert want <= set(info), f"lost: {sorted(want - set(info))}"
    assert set(json.loads((ROOT / "dataset_info.json").read_text(encoding="utf-8"))) <= set(info), "shipped entries kept"


# --- file modes --------------------------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask, new_mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_keep_their_mode_and_new_ones_follow_the_umask(repo, tmp_path, umask, new_mode):
    registry = repo / "dataset_info.json"
    registry.chmod(0o664)
    old = os.umask(umask)
    try:
        conv.convert(small_csv(tmp_path), "csv", "modes", val_ratio=0.5)
        assert mode(repo / "datasets" / "modes" / "modes_train.jsonl") == new_mode
        assert mode(repo / "datasets" / "modes" / "modes_val.jsonl") == new_mode
        assert mode(registry) == 0o664, "the registry keeps its mode"
        finance = repo / "datasets" / "finance" / "finance_train.jsonl"
        finance.chmod(0o660)
        conv.convert(small_csv(tmp_path), "csv", "finance", replace=True)
        assert mode(finance) == 0o660, "a replaced file keeps its mode"
        docs = tmp_path / "docs"
        docs.mkdir()
        shutil.copy(ROOT / "datasets" / "persona" / "persona_profile.md", docs)
        build_corpus(docs, "modes_corpus", repo / "datasets" / "modes" / "corpus.jsonl")
        assert mode(repo / "datasets" / "modes" / "corpus.jsonl") == new_mode
    finally:
        os.umask(old)


# --- validation split --------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio, side", [("0.9", "training"), ("0.1", "validation")])
def test_a_split_that_leaves_one_side_empty_is_refused(repo, tmp_path, capsys, ratio, side):
    before = snapshot(repo)
    code, _, err = vslm(capsys, "convert", small_csv(tmp_path), "--format", "csv", "--name", "tiny", "--val-ratio", ratio)
    assert code == 1 and err.count("\n") == 1
    assert f"--val-ratio {ratio} on 4 rows leaves 0 {side} rows; use a ratio from 0.25 to 0.75" in err
    assert snapshot(repo) == before
    code, out, _ = vslm(capsys, "convert", small_csv(tmp_path), "--format", "csv", "--name", "tiny", "--val-ratio", "0.25")
    assert code == 0 and "tiny_train.jsonl (3 rows)" in out and "tiny_val.jsonl (1 rows)" in out


# --- encodings ---------------------------------------------------------------------------------------

def gbk_rows(n: int = 12) -> list[dict]:
    """Real finance rows that GBK can encode (what a Chinese Excel export holds)."""
    rows = []
    for row in read_jsonl(ROOT / "datasets" / "finance" / "finance_train.jsonl"):
        try:
            json.dumps(row, ensure_ascii=False).encode("gbk")
        except UnicodeEncodeError:
            continue
        rows.append({k: row[k] for k in ("instruction", "input", "output", "category")})
        if len(rows) == n:
            return rows
    raise AssertionError("not enough GBK-encodable rows")


def test_decode_text_reads_utf8_boms_and_clear_legacy_encodings():
    text = "instruction,input,output\n" + "".join(f"{r['instruction']},,{r['output']}\n" for r in gbk_rows())
    assert decode_text(text.encode("utf-8"), "f") == (text, "utf-8")
    assert decode_text(b"\xef\xbb\xbf" + text.encode("utf-8"), "f") == (text, "utf-8")
    assert decode_text(text.encode("utf-16"), "f") == (text, "utf-16")
    assert decode_text(text.encode("utf-32"), "f") == (text, "utf-32")
    assert decode_text(text.encode("gbk"), "f") == (text, "gb18030")
    assert decode_text("café, naïve, “quoted” – résumé\n".encode("cp1252"), "f")[1] == "cp1252"


@pytest.mark.parametrize("data, message", [
    (bytes(range(256)) * 4, r"f: not a text file \(NUL bytes at byte 0"),
    ("报销".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
    ("报销".encode("gbk"), r"f: not UTF-8, and its encoding cannot be told for sure \(.*\); save it as UTF-8"),
    ("第一行正常\n第二行".encode("utf-8") + b"\xff\xfe\n", r"f:2: invalid UTF-8 \(byte \d+\) in an otherwise UTF-8 file"),
])
def test_undecidable_or_binary_bytes_are_one_clear_error(data, message):
    with pytest.raises(DataError, match=message) as exc:
        decode_text(data, "f")
    assert "\n" not in str(exc.value)


def test_gbk_and_utf16_sources_convert_faithfully_with_a_notice(tmp_path, capsys):
    import csv

    rows = gbk_rows()
    registry = tmp_path / "dataset_info.json"
    src = tmp_path / "excel_export.csv"
    with src.open("w", encoding="gbk", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output", "category"])
        writer.writeheader()
        writer.writerows(rows)
    conv.convert(src, "csv", "gbk", tmp_path / "o", registry_path=registry)
    assert read_jsonl(tmp_path / "o" / "gbk_train.jsonl") == [dict(r, _line=i + 1) for i, r in enumerate(rows)]
    assert capsys.readouterr().err == f"note: {src} is not UTF-8; read it as gb18030\n"
    jsonl = tmp_path / "windows.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-16")
    conv.convert(jsonl, "alpaca", "utf16", tmp_path / "o", registry_path=registry)
    assert [r["output"] for r in read_jsonl(tmp_path / "o" / "utf16_train.jsonl")] == [r["output"] for r in rows]
    assert "read it as utf-16" in capsys.readouterr().err


def test_registry_check_lists_every_unreadable_file(tmp_path):
    rows = gbk_rows(3)
    (tmp_path / "gbk.jsonl").write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("gbk"))
    (tmp_path / "blob.jsonl").write_bytes(bytes(range(256)))
    (tmp_path / "short.csv").write_bytes("instruction,input,output\n报销,,是\n".encode("gbk"))
    (tmp_path / "list.json").write_text(json.dumps(rows + ["not an object"], ensure_ascii=False), encoding="utf-8")
    entry = lambda f: {"file_name": f, "formatting": "alpaca", "columns": {"prompt": "instruction", "query": "input", "response": "output"}}  # noqa: E731
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({n: entry(f) for n, f in (("gbk", "gbk.jsonl"), ("blob", "blob.jsonl"), ("short", "short.csv"),
                                                        ("list", "list.json"))}), encoding="utf-8")
    problems = check_registry(info, tmp_path)
    assert len(problems) == 3, problems
    assert any("blob.jsonl: not a text file" in p for p in problems)
    assert any("short.csv: not UTF-8, and its encoding cannot be told for sure" in p for p in problems)
    assert any("list.json:4: expected a JSON object, got str" in p for p in problems)
    assert read_text(tmp_path / "gbk.jsonl").count("\n") == 3, "the GBK file is read, not reported"


def test_corpus_reads_a_gbk_document_and_names_an_unreadable_one(tmp_path, capsys):
    rules = (ROOT / "datasets" / "finance" / "reimbursement_rules.md").read_text(encoding="utf-8")
    text = rules.encode("gbk", errors="ignore").decode("gbk")[:3000]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rules_gbk.txt").write_bytes(text.encode("gbk"))
    (docs / "scan.txt").write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "corpus.jsonl"
    n = build_corpus(docs, "rules_gbk", out, size=500, overlap=50, registry_path=tmp_path / "dataset_info.json")
    rows = read_jsonl(out)
    assert n == len(rows) > 1 and all(r["source"] == "rules_gbk.txt" for r in rows)
    assert "差旅费" in "".join(r["text"] for r in rows) and "报销" in rows[0]["text"]
    err = capsys.readouterr().err
    assert f"note: {docs / 'rules_gbk.txt'} is not UTF-8; read it as gb18030" in err
    assert f"skipped {docs / 'scan.txt'}: not a text file" in err


# --- parity with LlamaFactory 0.9.5's own loader --------------------------------------------------------

LF_FIXTURES = ROOT / "tests" / "fixtures" / "lf_formats"
UNCHECKED = {"hub_hf", "hub_ms", "hub_om", "cloud_s3"}


def lf_fixture_registry() -> dict:
    return json.loads((LF_FIXTURES / "dataset_info.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def llamafactory(tmp_path_factory):
    """LlamaFactory's loader, processors and Qwen template, offline, with a throw-away datasets cache."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from types import SimpleNamespace

    from llamafactory.data import processor as lf_processor
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.mm_plugin import get_mm_plugin
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from vslm.models.tokenizer import build_qwen_tokenizer

    data_args = DataArguments(template="qwen", dataset_dir=str(LF_FIXTURES), cutoff_len=4096, overwrite_cache=True)
    tokenizer = build_qwen_tokenizer("qwen2")
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    model_args = SimpleNamespace(cache_dir=str(tmp_path_factory.mktemp("hf_cache")), hf_hub_token=None, ms_hub_token=None,
                                 om_hub_token=None)
    training_args = SimpleNamespace(local_process_index=0, dataloader_num_workers=0, seed=42)
    processors = {"ranking": lf_processor.PairwiseDatasetProcessor, "kto": lf_processor.FeedbackDatasetProcessor,
                  "pt": lf_processor.PretrainDatasetProcessor, "sft": lf_processor.SupervisedDatasetProcessor}
    mm = get_mm_plugin("qwen2_vl", image_token="<|image_pad|>", video_token="<|video_pad|>")

    def verdict(name: str, entry: dict) -> str | None:
        """None when LlamaFactory loads the entry and its stage keeps every row with an answer to train on, else why."""
        try:
            attr = get_dataset_list([name], {name: entry})[0]
            dataset = _load_single_dataset(attr, model_args, data_args, training_args)
        except Exception as exc:  # noqa: BLE001 - any failure of LlamaFactory's loader is its verdict
            return f"loader: {type(exc).__name__}: {exc}"
        rows = dataset.to_list()
        stage = "ranking" if attr.ranking else "kto" if attr.kto_tag else "pt" if attr.formatting == "alpaca" and not attr.response else "sft"
        for row in rows:
            media = {k: row[f"_{k}"] or [] for k in ("images", "videos", "audios")}
            if any(media.values()):  # the multimodal plugins' own placeholder count (a text template has no plugin)
                try:
                    mm._validate_messages(row["_prompt"] + row["_response"][:1], media["images"], media["videos"], media["audios"])
                except ValueError as exc:
                    return f"mm_plugin: {exc}"
            trained = row["_response"] if stage != "kto" else [m for m in row["_response"] if m["content"]]
            if stage != "pt" and any(not m["content"].strip() for m in trained + [m for m in row["_prompt"] if m["role"] == "assistant"]):
                return "empty answer"  # LlamaFactory trains on it; vslm refuses it on purpose (the "empty answers")
        batch = {k: [r[k] if k not in ("_images", "_videos", "_audios") else None for r in rows] for k in rows[0]}
        try:
            out = processors[stage](template=template, tokenizer=tokenizer, processor=None, data_args=data_args).preprocess_dataset(batch)
        except Exception as exc:  # noqa: BLE001 - e.g. the template's tool/function formatters
            return f"processor: {type(exc).__name__}: {exc}"
        kept = len(out["input_ids"] if "input_ids" in out else out["chosen_input_ids"])
        return None if stage == "pt" or kept == len(rows) else f"processor dropped {len(rows) - kept} of {len(rows)} rows"

    return verdict


@pytest.mark.parametrize("name", sorted(set(lf_fixture_registry()) - UNCHECKED))
def test_registry_verdict_equals_llamafactorys_own_loader(llamafactory, name):
    entry = lf_fixture_registry()[name]
    ours = check_entry(name, entry, LF_FIXTURES)
    theirs = llamafactory(name, entry)
    assert bool(ours) == bool(theirs), f"vslm: {ours or 'ok'} / LlamaFactory: {theirs or 'ok'}"
    assert name.startswith("bad_") == bool(ours), "the fixture's name says what it is"
    if ours:
        assert len(ours) == 1 and "\n" not in ours[0] and ("LlamaFactory" in ours[0] or "does not exist" in ours[0])


def test_every_storage_form_and_formatting_has_a_fixture():
    info = lf_fixture_registry()
    kinds = {Path(e["file_name"]).suffix or "folder" for e in info.values() if "file_name" in e}
    assert {".json", ".jsonl", ".csv", ".txt", ".parquet", ".arrow", "folder"} <= kinds
    assert {"hf_hub_url", "ms_hub_url", "om_hub_url", "cloud_file_name", "script_url"} <= {k for e in info.values() for k in e}
    assert {e.get("formatting", "alpaca") for e in info.values()} >= {"alpaca", "sharegpt", "openai"}
    columns = {c for e in info.values() for c in e.get("columns", {})}
    assert {"kto_tag", "chosen", "rejected", "tools", "images", "system", "history"} <= columns


def test_our_column_and_tag_names_are_llamafactorys(llamafactory):
    from llamafactory.data.parser import get_dataset_list

    for name, entry in lf_fixture_registry().items():
        attr, ours = get_dataset_list([name], {name: entry})[0], lf_attr(entry)
        assert {k: getattr(attr, k) for k in ours} == ours, name


def test_hub_and_cloud_entries_are_reported_not_checked_offline(capsys, monkeypatch):
    from vslm.data import datacheck

    registry = LF_FIXTURES / "dataset_info.json"
    assert check_registry(registry, LF_FIXTURES) and not any(n in p for p in check_registry(registry, LF_FIXTURES) for n in UNCHECKED)
    lines = unchecked_entries(registry)
    assert [line.split("`")[1] for line in lines] == ["hub_hf", "hub_ms", "hub_om", "cloud_s3"]
    assert "Hugging Face Hub" in lines[0] and "ModelScope" in lines[1] and "S3/GCS" in lines[3]
    monkeypatch.setattr(datacheck, "check_repository", lambda: [])
    monkeypatch.setattr(paths, "DATASET_INFO", registry)
    code, out, err = vslm(capsys, "registry")
    assert code == 0 and "not checked offline (4)" in out and "`hub_hf`" in out and "every entry's file exists" not in out


def test_readme_format_table_rows_are_the_tested_fixtures():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- FORMATS:START -->")[1].split("<!-- FORMATS:END -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| format") and "---" not in line]
    named = {n for line in rows for n in re.findall(r"\(`([a-z_]+)`", line.split(" | ")[0])}
    named |= {n for line in rows for n in re.findall(r"`([a-z_0-9]+)`", line.split(" | ")[0]) if n in lf_fixture_registry()}
    info = lf_fixture_registry()
    assert named <= set(info), f"rows name fixtures that do not exist: {named - set(info)}"
    assert named == {n for n in info if not n.startswith("bad_")}, "every good fixture has a row and every row a fixture"
    assert all(len(line.split(" | ")) == 3 for line in rows)
