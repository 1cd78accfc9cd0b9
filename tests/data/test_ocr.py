"""OCR of scanned PDF pages: image-only pages made here from the project's own text (rendered with a system CJK font),
read back by rapidocr (and by tesseract when Debian's tesseract-ocr is installed: optional), with provenance."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT
from nltk import edit_distance

from vslm.data.documents import chunk_text, read_document, read_documents
from vslm.core.errors import DataError
from vslm.core.jsonio import read_jsonl

RULES = (ROOT / "datasets" / "finance" / "reimbursement_rules.md").read_text(encoding="utf-8")
PARAGRAPHS = [l for l in RULES.splitlines() if l.strip() and not l.startswith(("#", "|"))]
DPI = 150


def cjk_font() -> tuple[str, int]:
    """A Simplified Chinese system font (fonts-noto-cjk, installed by scripts/install_test_packages.sh) as (file, index)."""
    listed = subprocess.run(["fc-list", ":lang=zh-cn", "file", "index", "family"], capture_output=True, text=True, check=False).stdout.splitlines()
    fonts = sorted(listed, key=lambda l: ("Sans CJK SC" not in l, "Regular" not in l, l))
    if not fonts:
        pytest.fail("no Chinese font (fc-list :lang=zh-cn is empty): install fonts-noto-cjk (scripts/install_test_packages.sh does)")
    path, rest = fonts[0].split(": ", 1)
    index = re.search(r"index=(\d+)", rest)
    return path, int(index[1]) if index else 0


def scanned_page(paragraphs: list[str], width: int = 34, noisy: bool = False):
    """An A4 page at 150 dpi with the paragraphs typeset as a Chinese word processor does (first line indented by two
    characters, broken every `width` characters); `noisy`: slightly rotated, blurred and saved as a JPEG of quality 55."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    size = 28  # px at 150 dpi: about 13.5 pt
    file, index = cjk_font()
    font = ImageFont.truetype(file, size, index=index)
    image = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(image)
    y = 120
    for paragraph in paragraphs:
        text = "\u3000\u3000" + paragraph
        for i in range(0, len(text), width):
            draw.text((100, y), text[i:i + width], font=font, fill=20)
            y += int(size * 1.7)
    if noisy:
        image = image.rotate(0.8, fillcolor=255, resample=Image.BICUBIC).filter(ImageFilter.GaussianBlur(0.8))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=55)
        image = Image.open(buffer)
    return image


def image_pdf(path: Path, images) -> Path:
    """An image-only PDF, as a scanner writes it: no text layer."""
    images[0].save(path, "PDF", resolution=DPI, save_all=True, append_images=images[1:])
    return path


def accuracy(expected: str, got: str) -> float:
    """Character accuracy: 1 - edit distance / length, whitespace left out, compatibility forms folded (NFKC: a
    full-width （ read as ( counts as right, a wrong character as wrong)."""
    a, b = (re.sub(r"\s+", "", unicodedata.normalize("NFKC", t)) for t in (expected, got))
    return 1 - edit_distance(a, b) / len(a)


def blank_page():
    """A scanned blank sheet: an image, but no text on it."""
    from PIL import Image

    return Image.new("L", (1240, 1754), 250)


def test_a_scanned_pdf_is_read_by_ocr_with_its_paragraphs(tmp_path):
    """Two image-only pages (one clean, one skewed, blurred and JPEG-compressed) of the finance rules."""
    pdf = image_pdf(tmp_path / "scan.pdf", [scanned_page(PARAGRAPHS[1:4]), scanned_page(PARAGRAPHS[4:6], noisy=True)])
    doc = read_document(pdf)
    assert doc.ocr_engine == "rapidocr" and doc.ocr_pages == [1, 2] and doc.notes == []
    assert accuracy("".join(PARAGRAPHS[1:6]), doc.text) >= 0.98, doc.text
    assert len(doc.text.split("\n\n")) == 5, "each typeset paragraph comes back as one paragraph"
    assert doc.ocr_note == f"{pdf} pages 1, 2: read by OCR (rapidocr)"
    assert all(c.ocr_pages for c in doc.chunks(200, 20)), "every chunk of a scanned file says it was OCR'd"


def test_a_mixed_pdf_keeps_its_text_layer_and_ocrs_only_the_scanned_pages(tmp_path):
    from test_documents import join_pdfs, make_pdf, typeset_rules

    pages, _ = typeset_rules()
    text_layer = make_pdf(tmp_path / "text.pdf", pages[:1])
    scan = image_pdf(tmp_path / "scan.pdf", [scanned_page(PARAGRAPHS[-3:-1]), blank_page()])
    mixed = join_pdfs(tmp_path / "mixed.pdf", [text_layer, scan])
    doc = read_document(mixed)
    page_one = read_document(text_layer, "off").text
    *body, last_heading = page_one.split("\n\n")  # page 1 ends on a heading: it heads page 2's first paragraph
    blocks = doc.text.split("\n\n")
    assert blocks[:len(body)] == body and blocks[len(body)] == "## " + last_heading, "page 1 comes from its text layer, verbatim"
    assert doc.ocr_pages == [2]
    assert doc.notes == [f"{mixed} page 3 of 3: no text even after OCR (rapidocr) — blank or unreadable; the other pages were used"]
    scanned = "\n\n".join(blocks[len(body) + 1:])
    assert accuracy("".join(PARAGRAPHS[-3:-1]), scanned) >= 0.98, scanned
    assert [doc.text[a:b] for a, b, _ in doc.ocr_spans] == blocks[len(body) + 1:], "the OCR'd span is page 2's text"
    chunks = doc.chunks(150, 20)
    first_ocr = next(i for i, c in enumerate(chunks) if c.ocr_pages)
    assert all(not c.ocr_pages for c in chunks[:first_ocr]) and first_ocr > 3, "text-layer chunks carry no OCR mark"
    assert all(c.ocr_pages == [2] for c in chunks[first_ocr:])
    assert [c.text for c in chunks] == [c.text for c in chunk_text(doc.text, 150, 20)]


def test_corpus_ocrs_a_folder_names_the_blank_scan_and_goes_on(tmp_path, monkeypatch, capsys):
    from vslm.cli import main

    folder = tmp_path / "docs"
    folder.mkdir()
    image_pdf(folder / "scanned.pdf", [scanned_page(PARAGRAPHS[12:14])])
    image_pdf(folder / "blank.pdf", [blank_page()])
    (folder / "notes.md").write_text(PARAGRAPHS[0], encoding="utf-8")
    monkeypatch.setattr("vslm.core.paths.DATASET_INFO", tmp_path / "dataset_info.json")
    out = tmp_path / "corpus.jsonl"
    assert main(["corpus", str(folder), "--name", "scans", "--out", str(out), "--size", "120", "--overlap", "10"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {folder / 'blank.pdf'}: no text even after OCR (rapidocr) of its 1 scanned page(s) of 1 — blank" in err
    assert f"{folder / 'scanned.pdf'} page 1: read by OCR (rapidocr)" in err
    rows = [{k: v for k, v in r.items() if k != "_line"} for r in read_jsonl(out)]
    scanned = [r for r in rows if r["source"] == "scanned.pdf"]
    assert scanned and all(r["ocr_engine"] == "rapidocr" and r["ocr_pages"] == [1] for r in scanned)
    assert [r for r in rows if r["source"] == "notes.md"] == [{"text": PARAGRAPHS[0], "source": "notes.md", "chunk_id": 0}]
    assert accuracy("".join(PARAGRAPHS[12:14]), "".join(r["text"] for r in chunk_free(scanned))) >= 0.98
    assert json.loads((tmp_path / "dataset_info.json").read_text())["scans"]["file_name"].endswith("corpus.jsonl")
    # one blank scan alone: one line, exit 1, nothing written
    assert main(["corpus", str(folder / "blank.pdf"), "--name", "blank", "--out", str(tmp_path / "b.jsonl")]) == 1
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip() and not l.startswith("OCR (rapidocr) blank.pdf:")]  # no progress bar
    assert len(err) == 1 and err[0].startswith(f"error: {folder / 'blank.pdf'}: no text even after OCR"), err
    assert not (tmp_path / "b.jsonl").exists()
    # --ocr-engine off: the scan is skipped with the reason, the rest goes on
    assert main(["corpus", str(folder), "--name", "scans_off", "--out", str(tmp_path / "off.jsonl"), "--ocr-engine", "off"]) == 0
    assert f"skipped {folder / 'scanned.pdf'}: the PDF has no text layer (scanned?)" in capsys.readouterr().err
    assert {r["source"] for r in read_jsonl(tmp_path / "off.jsonl")} == {"notes.md"}


def chunk_free(rows: list[dict]) -> list[dict]:
    """The rows without their overlap: each row's text minus the start it shares with the previous one."""
    out, prev = [], ""
    for row in rows:
        text = row["text"]
        shared = next(k for k in range(min(len(prev), len(text)), -1, -1) if prev.endswith(text[:k]))
        out.append({**row, "text": text[shared:]})
        prev = text
    return out


def test_a_missing_tesseract_is_one_line_naming_the_apt_packages(tmp_path, monkeypatch):
    from vslm.data import documents as docs

    (tmp_path / "a.md").write_text("内容。", encoding="utf-8")
    monkeypatch.setattr(docs.shutil, "which", lambda name: None)
    docs._ocr.cache_clear()
    with pytest.raises(DataError) as err:
        read_documents(tmp_path, "tesseract")  # checked before any file is read, even with no scan among them
    docs._ocr.cache_clear()
    assert str(err.value) == ("--ocr-engine tesseract: the `tesseract` program is not installed — `apt-get install tesseract-ocr "
                              "tesseract-ocr-chi-sim`, or use --ocr-engine rapidocr")


def test_tesseract_reads_a_scan(tmp_path):
    assert shutil.which("tesseract"), "tesseract is missing: run `make test-packages` (`make test` runs it first)"
    pdf = image_pdf(tmp_path / "scan.pdf", [scanned_page(PARAGRAPHS[1:4])])
    doc = read_document(pdf, "tesseract")
    assert doc.ocr_engine == "tesseract" and doc.ocr_pages == [1]
    assert accuracy("".join(PARAGRAPHS[1:4]), doc.text) >= 0.98, doc.text
    assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", doc.text), "no spaces between Chinese characters"


def test_distilled_rows_from_a_scanned_page_say_so(scripted_server, tmp_path):
    from test_documents import join_pdfs, make_pdf, typeset_rules

    from vslm.data.distill import Options, distill, summary_line
    from vslm.core.endpoint import EndpointConfig

    pages, _ = typeset_rules()
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = join_pdfs(folder / "rules.pdf", [make_pdf(tmp_path / "text.pdf", pages[:1]),
                                          image_pdf(tmp_path / "scan.pdf", [scanned_page(PARAGRAPHS[-3:-1])])])
    server = scripted_server(teacher=True, models=["teacher"])
    s = distill(folder, "scans", EndpointConfig(server.base_url, "teacher", ["sk-test"]), options=Options(size=300, overlap=50),
                work_dir=tmp_path / "work", out_dir=tmp_path / "ds", registry_path=tmp_path / "dataset_info.json",
                teacher_kw={"timeout": 5, "backoff": (0.05, 0.2), "cooldown": 0.3})
    assert s["ocr"] == [f"{pdf} page 2: read by OCR (rapidocr)"] and s["skipped"] == []
    assert f"(1 with pages read by OCR: {pdf} page 2: read by OCR (rapidocr))" in summary_line(s)
    rows = read_jsonl(tmp_path / "ds" / "scans_train.jsonl")
    ocr_rows = [r for r in rows if "ocr_pages" in r]
    assert ocr_rows and all(r["ocr_pages"] == [2] and r["ocr_engine"] == "rapidocr" for r in ocr_rows)
    assert len(ocr_rows) < len(rows), "rows from the text layer carry no OCR mark"
    first_ocr = min(r["chunk_id"] for r in ocr_rows)
    assert all(("ocr_pages" in r) == (r["chunk_id"] >= first_ocr) for r in rows), "the scanned page is the document's end"
    # the OCR'd rows hold the scanned text's facts (the scripted teacher quotes its chunk)
    assert any("第六十九条" in r["output"] or "追回相关资金" in r["output"] for r in ocr_rows), [r["output"] for r in ocr_rows]
