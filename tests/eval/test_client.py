"""The batch client against a real scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, requests

from vslm.core.errors import EndpointError
from vslm.eval.client import ask_all
from vslm.core.errors import RecipeError
from vslm.serve.servers import free_port

ROWS = [{"id": f"r{i}", "instruction": f"问题{i}", "input": ""} for i in range(12)]


@pytest.fixture
def scripted(scripted_server):
    return scripted_server


def test_answers_come_back_by_id_and_in_the_cache(scripted, tmp_path):
    server = scripted(default="echo")
    answers = ask_all(server.base_url, "base", ROWS, system="sys", cache_path=tmp_path / "c.jsonl", concurrency=4)
    assert answers == {r["id"]: r["instruction"] for r in ROWS}
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 12


def test_retries_429_and_500_then_succeeds(scripted, tmp_path):
    server = scripted(statuses=[429, 500, 500])
    answers = ask_all(server.base_url, "base", ROWS[:3], system=None, cache_path=tmp_path / "c.jsonl", concurrency=1)
    assert len(answers) == 3
    assert len(requests(server)) == 6  # three failures retried


def test_persistent_500_keeps_finished_answers_and_resume_asks_nothing_twice(scripted, tmp_path):
    bad = scripted(fail_keys=["问题7"])
    cache = tmp_path / "c.jsonl"
    with pytest.raises(EndpointError, match=r"1 of 12 requests .* failed \(HTTP 500\); 11 finished answers are kept"):
        ask_all(bad.base_url, "base", ROWS, system=None, cache_path=cache, concurrency=4)
    assert len(cache.read_text().splitlines()) == 11
    good = scripted()
    answers = ask_all(good.base_url, "base", ROWS, system=None, cache_path=cache, concurrency=4)
    assert len(answers) == 12
    assert [r["user"] for r in requests(good)] == ["问题7"], "only the unfinished question is asked again"


def test_killed_run_resumes_without_re_asking(scripted, tmp_path):
    server = scripted(latency_ms=150)
    cache = tmp_path / "c.jsonl"
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(ROWS, ensure_ascii=False))
    code = (f"import json; from vslm.eval.client import ask_all; from pathlib import Path; "
            f"ask_all({server.base_url!r}, 'base', json.load(open({str(rows_file)!r})), system=None, "
            f"cache_path=Path({str(cache)!r}), concurrency=1)")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 4):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {json.loads(l)["id"] for l in cache.read_text().splitlines() if l.strip()}
    assert 4 <= len(done) < 12
    before = len(requests(server))
    answers = ask_all(server.base_url, "base", ROWS, system=None, cache_path=cache, concurrency=4)
    assert len(answers) == 12
    asked_again = [r["user"] for r in requests(server)[before:]]
    assert not set(asked_again) & {f"问题{i[1:]}" for i in done}, "finished answers must not be requested again"


def test_unreachable_server_is_a_clear_error(tmp_path):
    port = free_port()
    with pytest.raises(EndpointError, match=rf"cannot reach http://127.0.0.1:{port}/v1 .*vslm serve"):
        ask_all(f"http://127.0.0.1:{port}/v1", "base", ROWS, system=None, cache_path=tmp_path / "c.jsonl")


def test_wrong_model_name_is_a_clear_error(scripted, tmp_path):
    server = scripted(models=["base", "telecom_r32"])
    with pytest.raises(EndpointError, match=r"model `telecom_r23` is not served .* it serves: base, telecom_r32"):
        ask_all(server.base_url, "telecom_r23", ROWS, system=None, cache_path=tmp_path / "c.jsonl")


def test_malformed_json_answer_fails_cleanly_and_keeps_the_rest(scripted, tmp_path):
    server = scripted(malformed_keys=["问题3"])
    with pytest.raises(EndpointError, match=r"1 of 12 requests"):
        ask_all(server.base_url, "base", ROWS, system=None, cache_path=tmp_path / "c.jsonl", concurrency=4)
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 11


def test_torn_last_cache_line_is_cut_before_appending(scripted, tmp_path):
    cache = tmp_path / "c.jsonl"
    server = scripted()
    ask_all(server.base_url, "base", ROWS[:2], system=None, cache_path=cache)
    with cache.open("a", encoding="utf-8") as handle:
        handle.write('{"key": "torn", "id": "r9", "ans')  # a run killed mid-write
    answers = ask_all(server.base_url, "base", ROWS[:4], system=None, cache_path=cache)
    assert len(answers) == 4
    lines = cache.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(l)["answer"] for l in lines)




def vslm(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vslm", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.parametrize("body, seen", [("html", "an HTML page"), ("list", "a JSON list")])
def test_models_answer_that_is_not_openai_compatible_is_one_line(scripted, tmp_path, body, seen):
    server = scripted(models_body=body)
    out = tmp_path / "eval" / "base.json"
    result = vslm("eval", "telecom_r32", "--base-url", server.base_url, "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {server.base_url}/models answered HTTP 200 but not an OpenAI-compatible /models answer ({seen}) — "
        "check --base-url: it must be the server's OpenAI API root, usually ending in /v1"]
    assert not out.parent.exists(), "nothing is written"


@pytest.mark.parametrize("command, flag, value", [
    ("eval", "--concurrency", "0"), ("eval", "--concurrency", "-2"), ("eval", "--limit", "0"), ("eval", "--limit", "-3"),
    ("eval", "--max-tokens", "0"), ("eval", "--limit", "ten"), ("demo", "--limit", "0"), ("demo", "--limit", "-3"),
])
def test_counts_below_one_are_rejected_in_one_line_naming_the_flag(command, flag, value):
    args = [command, "telecom_r32"] if command == "eval" else [command]
    result = vslm(*args, flag, value)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vslm {command}: error: argument {flag}: "), lines
    assert "give a count of 1 or more" in lines[0] and lines[0].endswith(f"(see `vslm {command} --help`)")


def test_concurrency_below_one_never_waits_forever(tmp_path):
    with pytest.raises(RecipeError, match=r"concurrency and max_tokens must be 1 or more \(got 0 and 256\)"):
        ask_all("http://127.0.0.1:9/v1", "base", ROWS, system=None, cache_path=tmp_path / "c.jsonl", concurrency=0)


def test_ctrl_c_during_eval_keeps_answers_and_says_how_to_resume(scripted, tmp_path):
    server = scripted(latency_ms=300)
    out = tmp_path / "base.json"
    cache = out.with_suffix(".cache.jsonl")
    cmd = [sys.executable, "-m", "vslm", "eval", "telecom_r32", "--base-url", server.base_url, "--limit", "20",
           "--concurrency", "1", "--out", str(out)]
    # SIGINT as a terminal's Ctrl-C delivers it (a background test runner may have it ignored: restore the default)
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == f"interrupted — finished answers are cached in {cache}; run the same command again to resume"
    done = len(cache.read_text().splitlines())
    assert 3 <= done < 20 and not out.exists()
    before = len(requests(server))
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert len(requests(server)) - before == 20 - done, "the resumed run asks only the unfinished rows"


def test_eval_taught_asks_the_held_out_rows_and_their_taught_questions(scripted, tmp_path):
    from vslm.eval.evaluate import load_eval_rows, taught_rows

    rows = load_eval_rows("telecom_eval", limit=12)
    taught = taught_rows(rows, ["telecom_train"])
    server = scripted()
    out = tmp_path / "base.json"
    result = vslm("eval", "telecom_r32", "--base-url", server.base_url, "--limit", "12", "--taught", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert set(saved["answers"]) == {r["id"] for r in rows}
    assert set(saved["taught"]["answers"]) == {r["id"] for r in taught} and taught
    assert saved["taught"]["sampling"] == saved["sampling"]
