"""`vslm review`: the blind human review sheet on finance_eval answers — seeded, blind, self-contained — filled in and
exported in a real headless Chromium (Debian's, through Selenium and chromium-driver) from a file:// URL with no
server, then imported: human scores, preference rate and inter-rater agreement land in the report."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from vslm.cli import main
from vslm.eval.evaluate import fixed_evaluation, load_eval_rows
from vslm.recipes.matrix import get_recipe
from vslm.eval.report import write_report
from vslm.eval.review import fleiss_kappa, weighted_kappa

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
RECIPE = get_recipe("finance_rules")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A finance report whose base echoes the question and whose fine-tuned model gives the reference answer."""
    rows = load_eval_rows(RECIPE["eval_set"])
    results = {"base": fixed_evaluation("base", rows, {r["id"]: r["instruction"] for r in rows}),
               "fine-tuned": fixed_evaluation("fine-tuned", rows, {r["id"]: r["output"] for r in rows})}
    out = tmp_path_factory.mktemp("report")
    files = write_report(out, title="finance_rules: base vs fine-tuned", rows=rows, results=results, training=[],
                         context={"recipe": RECIPE.name, "eval_set": RECIPE["eval_set"], "max_tokens": 96, "system": None})
    return files["json"]


def sheet_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script id="sheet" type="application/json">(.*?)</script>', text, re.S).group(1).replace("<\\/", "</"))


def make(report: Path, out: Path, *extra: str) -> int:
    return main(["review", "finance_rules", "--report", str(report), "--n", "20", "--seed", "7", "--out", str(out), *extra])


def test_sheet_is_seeded_blind_and_self_contained(report, tmp_path, capsys):
    page = tmp_path / "sheet.html"
    assert make(report, page) == 0
    key = json.loads(page.with_suffix(".key.json").read_text(encoding="utf-8"))
    data = sheet_data(page)
    text = page.read_text(encoding="utf-8")
    assert len(data["items"]) == key["n"] == 20 and key["systems"] == ["base", "fine-tuned"]
    assert not re.search(r"https?://|\bsrc=|<link", text), "no external file or network request"
    assert "fine-tuned" not in json.dumps(data, ensure_ascii=False) and "base" not in data["items"][0], "blind"
    rows = {r["id"]: r for r in load_eval_rows("finance_eval")}
    orders = set()
    for item, pick in zip(data["items"], key["items"]):
        row = rows[pick["row"]]
        by_system = {"base": row["instruction"], "fine-tuned": row["output"]}
        assert item["A"] == by_system[pick["A"]] and item["B"] == by_system[pick["B"]] and item["reference"] == row["output"]
        orders.add(pick["A"])
    assert orders == {"base", "fine-tuned"}, "the A/B order is shuffled"
    assert make(report, tmp_path / "same.html") == 0
    assert sheet_data(tmp_path / "same.html")["items"] == data["items"], "the same seed gives the same sheet"
    assert main(["review", "finance_rules", "--report", str(report), "--n", "20", "--seed", "8", "--out", str(tmp_path / "other.html")]) == 0
    assert sheet_data(tmp_path / "other.html")["items"] != data["items"]
    capsys.readouterr()
    assert make(report, page) == 1, "an existing sheet is not overwritten without --replace"
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--replace" in err and len(err.strip().splitlines()) == 1
    assert main(["review", "finance_rules", "--report", str(report), "--systems", "base", "nope", "--out", str(tmp_path / "x.html")]) == 1
    assert "`nope` is not in" in capsys.readouterr().err


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "headless Chromium is missing: run `make test-packages` (scripts/install_test_packages.sh; `make test` runs it first)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1200,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def fill(driver, key: dict, rater: str, prefers_base: set[str]) -> Path:
    """Score every item as `rater`: fine-tuned 5, base 2 and fine-tuned preferred — except on `prefers_base` items,
    where base gets 4 and is preferred; then export and return the downloaded file."""
    from selenium.webdriver.common.by import By

    def click(element_id: str) -> None:  # as a user would: scrolled into the middle, clear of the sticky bar
        element = driver.find_element(By.ID, element_id)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    for item in key["items"]:
        side = {item["A"]: "a", item["B"]: "b"}
        base_score = 4 if item["id"] in prefers_base else 2
        click(f"{side['base']}-{item['id']}-{base_score}")
        click(f"{side['fine-tuned']}-{item['id']}-5")
        winner = "base" if item["id"] in prefers_base else "fine-tuned"
        click(f"pref-{item['id']}-{side[winner].upper()}")
    name = driver.find_element(By.ID, "rater")
    name.clear()
    name.send_keys(rater)
    assert driver.find_element(By.ID, "status").text == f"{len(key['items'])} of {len(key['items'])} done"
    before = set(driver.downloads.iterdir())
    click("export")
    deadline = time.time() + 30
    while time.time() < deadline:
        new = [p for p in set(driver.downloads.iterdir()) - before if p.suffix == ".json"]
        if new:
            return new[0]
        time.sleep(0.2)
    raise AssertionError(f"no file was downloaded; status: {driver.find_element(By.ID, 'status').text}")


def test_sheet_round_trips_in_headless_chromium_and_the_scores_reach_the_report(report, browser, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    page = tmp_path / "review.html"
    assert make(report, page) == 0
    key = json.loads(page.with_suffix(".key.json").read_text(encoding="utf-8"))
    browser.get(page.as_uri())
    assert browser.find_element(By.ID, "status").text == "0 of 20 done"
    browser.find_element(By.ID, "export").click()
    assert browser.find_element(By.ID, "status").text == "enter your name first"
    first = fill(browser, key, "rater one", set())
    browser.refresh()  # work in progress survives a reload (kept in the browser's storage)
    assert browser.find_element(By.ID, "status").text == "20 of 20 done"
    assert browser.find_element(By.ID, "rater").get_attribute("value") == "rater one"
    disagree = {item["id"] for item in key["items"][:3]}
    second = fill(browser, key, "rater two", disagree)
    exported = json.loads(first.read_text(encoding="utf-8"))
    assert exported["sheet"] == key["sheet"] and exported["rater"] == "rater one" and len(exported["items"]) == 20
    assert all(i["preference"] in ("A", "B") and {i["a"], i["b"]} == {2, 5} for i in exported["items"])

    capsys.readouterr()
    assert main(["review", "--import", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert "2 rater(s); mean human score: base 2.15, fine-tuned 5.0" in out
    human = json.loads((report.parent / "human_review.json").read_text(encoding="utf-8"))["summary"]
    assert human["preference_rate"] == {"base": 0.075, "fine-tuned": 0.925, "tie": 0.0}
    agreement = human["agreement"]
    # by hand: 17 items both prefer fine-tuned, 3 split; Fleiss p = (3/40, 37/40), P̄ = 0.85, Pe = 0.86125
    assert agreement["preference_fleiss_kappa"] == round((0.85 - 0.86125) / (1 - 0.86125), 4)
    assert agreement["pairs"][0]["preference_agreement"] == 0.85
    assert agreement["score_weighted_kappa_mean"] == round(1 - 0.3 / 4.35, 4)
    md = (report.parent / "report.md").read_text(encoding="utf-8")
    section = md.split("## Human review (blind)")[1].split("\n## ")[0]
    assert "| fine-tuned | 5.00 | 40 | 37 (92.5%) |" in section and "| base | 2.15 | 40 | 3 (7.5%) |" in section
    assert md.index("## Human review (blind)") < md.index("## By category")
    assert json.loads(report.read_text(encoding="utf-8"))["human_review"]["summary"] == human

    assert main(["review", "--import", str(first)]) == 1, "a rater imported twice needs --replace"
    assert "--replace" in capsys.readouterr().err
    assert main(["review", "--import", str(first), "--replace"]) == 0
    assert (report.parent / "report.md").read_text(encoding="utf-8").count("## Human review (blind)") == 1


def test_bad_score_files_are_one_line_errors(report, tmp_path, capsys):
    page = tmp_path / "s.html"
    assert make(report, page) == 0
    key = json.loads(page.with_suffix(".key.json").read_text(encoding="utf-8"))
    good = {"sheet": key["sheet"], "key": str(page.with_suffix(".key.json")), "rater": "r",
            "items": [{"id": i["id"], "a": 3, "b": 4, "preference": "B"} for i in key["items"]]}
    cases = [({**good, "items": [{**good["items"][0], "a": 7}]}, "items[0] (q001) `a` is 7"),
             ({**good, "rater": ""}, "`rater` missing or empty"),
             ({**good, "items": [{**good["items"][0], "preference": "C"}]}, "`preference` is 'C'"),
             ({**good, "items": [{"id": "q999", "a": 1}]}, "item q999 is not on sheet"),
             ({**good, "key": str(tmp_path / "gone.key.json")}, "gone.key.json: review key file")]
    for data, message in cases:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        capsys.readouterr()
        assert main(["review", "--import", str(path)]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "torn.json").write_text('{"sheet": ', encoding="utf-8")
    assert main(["review", "--import", str(tmp_path / "torn.json")]) == 1


def test_agreement_statistics_by_hand():
    assert fleiss_kappa([[2, 0], [0, 2], [2, 0]]) == 1.0
    assert fleiss_kappa([[1, 1], [1, 1]]) == -1.0
    assert weighted_kappa([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == 1.0
    assert weighted_kappa([1, 5], [5, 1]) < 0
