
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, run
from vslm.data.documents import _sections, _sentences, chunk_text, find_documents, load_document, read_document, read_documents
from vslm.core.errors import DataError


def test_chunks_respect_size_and_apply_overlap():
    text = "".join(f"第{i}条规定的内容是报销金额不超过{i}00元。" for i in range(200))
    chunks = chunk_text(text, size=300, overlap=60)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    for prev, nxt in zip(chunks, chunks[1:]):
        shared = next(k for k in range(min(len(prev.text), len(nxt.text)), -1, -1) if prev.text.endswith(nxt.text[:k]))
        assert 0 < shared <= 60, "each chunk starts with the tail of the previous one"


def test_chinese_chunks_end_on_sentence_boundaries():
    text = "。".join(f"句子{i}讲的是住宿标准每晚{i}元" for i in range(300)) + "。"
    for chunk in chunk_text(text, size=200, overlap=40):
        assert chunk.text.endswith("。")


def test_headings_start_new_chunks_and_travel_with_them():
    text = "# 第一章 总则\n本细则适用于全校。\n\n## 第二章 差旅费\n住宿费按城市分类报销。\n"
    chunks = chunk_text(text, size=100, overlap=10)
    assert [c.heading for c in chunks] == ["第一章 总则", "第二章 差旅费"]


def test_loaders_for_md_txt_docx_and_pdf(tmp_path):
    import docx

    (tmp_path / "a.md").write_text("# 标题\n内容。", encoding="utf-8")
    (tmp_path / "b.txt").write_text("纯文本。", encoding="utf-8")
    document = docx.Document()
    document.add_heading("差旅费", level=1)
    document.add_paragraph("住宿费每晚不超过500元。")
    document.save(tmp_path / "c.docx")
    assert "# 差旅费" in load_document(tmp_path / "c.docx")
    assert len(find_documents(tmp_path)) == 3
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with open(tmp_path / "scan.pdf", "wb") as handle:
        writer.write(handle)
    with pytest.raises(DataError, match=r"scan.pdf: the PDF has no text layer and nothing drawn on its 1 page\(s\)"):
        load_document(tmp_path / "scan.pdf")


# --- real PDFs and DOCX files, built here with pypdf / matplotlib / Pillow / python-docx ----------------------

RULES_MD = ROOT / "datasets" / "finance" / "reimbursement_rules.md"
RULES = RULES_MD.read_text(encoding="utf-8")


def make_pdf(path: Path, pages: list[list[str]], font_size: int = 12, leading: int = 18) -> Path:
    """A PDF with the given lines per page, one text object per line as word processors write them. The machine has no
    CJK font, so the font is not embedded: a Type0 font with Identity-H codes (UTF-16) and a ToUnicode map, which is
    what text extraction reads (viewers substitute a system font)."""
    from pypdf import PdfWriter
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        NameObject,
        NumberObject,
        TextStringObject,
    )

    writer = PdfWriter()
    cmap = DecodedStreamObject()
    cmap.set_data(("/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /UCS def /CMapType 2 def "
                   "1 begincodespacerange <0000> <FFFF> endcodespacerange 256 beginbfrange\n"
                   + "".join(f"<{h:02X}00> <{h:02X}FF> <{h:02X}00>\n" for h in range(256))
                   + "endbfrange endcmap CMapName currentdict /CMap defineresource pop end end").encode())
    name = lambda n: NameObject(f"/{n}")
    cid_font = DictionaryObject({name("Type"): name("Font"), name("Subtype"): name("CIDFontType2"), name("BaseFont"): name("SimSun"),
                                 name("DW"): NumberObject(1000), name("CIDSystemInfo"): DictionaryObject({
                                     name("Registry"): TextStringObject("Adobe"), name("Ordering"): TextStringObject("Identity"),
                                     name("Supplement"): NumberObject(0)})})
    font = writer._add_object(DictionaryObject({
        name("Type"): name("Font"), name("Subtype"): name("Type0"), name("BaseFont"): name("SimSun"),
        name("Encoding"): name("Identity-H"), name("DescendantFonts"): ArrayObject([writer._add_object(cid_font)]),
        name("ToUnicode"): writer._add_object(cmap)}))
    for lines in pages:
        page = writer.add_blank_page(width=595, height=842)
        content = DecodedStreamObject()
        content.set_data("\n".join(f"BT /F1 {font_size} Tf 50 {800 - i * leading} Td <{line.encode('utf-16-be').hex()}> Tj ET"
                                   for i, line in enumerate(lines)).encode())
        page[name("Contents")] = writer._add_object(content)
        page[name("Resources")] = DictionaryObject({name("Font"): DictionaryObject({name("F1"): font})})
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def scan_pdf(path: Path) -> Path:
    """An image-only page, as a scanner writes it (Pillow)."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (620, 877), 255)
    draw = ImageDraw.Draw(image)
    for y in range(60, 800, 24):
        draw.rectangle((50, y, 560, y + 10), fill=40)  # lines of "text" as pixels
    image.save(path, "PDF", resolution=75)
    return path


def join_pdfs(path: Path, parts: list[Path]) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for part in parts:
        writer.append(str(part))
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def typeset_rules(width: int = 36, per_page: int = 38) -> tuple[list[list[str]], str]:
    """reimbursement_rules.md laid out as a Chinese word processor prints it: each paragraph indented by two full-width
    spaces and broken every `width` characters wherever that falls (inside numbers too), headings on their own
    lines, a running header and a page number on every page; tables left out. Returns (pages, expected text)."""
    lines, blocks, headings = [], [], []
    for line in RULES.splitlines():
        if not line.strip() or line.startswith("|"):
            continue
        if line.startswith("#"):
            lines.append(line.lstrip("#").strip())
            if line.startswith("# "):  # the title has no heading number: an ordinary short line
                blocks.append(line.lstrip("#").strip())
            else:
                headings.append(line.lstrip("#").strip())
            continue
        if headings:
            blocks.append("## " + " / ".join(headings))
            headings = []
        blocks.append(line)
        text = "\u3000\u3000" + line
        lines += [text[i:i + width] for i in range(0, len(text), width)]
    pages = [["东岚大学财务处 · 经费报销细则"] + lines[i:i + per_page] + [f"- {n} -"]
             for n, i in enumerate(range(0, len(lines), per_page), 1)]
    return pages, "\n\n".join(blocks)


def test_pdf_lines_are_reflowed_into_paragraphs(tmp_path):
    pages, expected = typeset_rules()
    flat = [l for p in pages for l in p]
    assert any(a[-1].isdigit() and b[0].isdigit() for a, b in zip(flat, flat[1:])), "some number is broken over two lines"
    text = load_document(make_pdf(tmp_path / "rules.pdf", pages))
    assert text == expected, "paragraphs joined without spaces, numbers whole, headings on their own, header/page numbers gone"
    assert "4×100=400元" in text and "1000元及以上" in text
    chunks = chunk_text(text, 300, 50)
    assert len(chunks) > 20
    starts = [text.index(c.text) for c in chunks]  # chunks are verbatim pieces of the text
    assert not [c.text[:12] for c, at in zip(chunks, starts) if at and text[at - 1] not in "。！？；\n"], "no chunk starts mid-sentence"
    assert {c.heading for c in chunks} >= {"第二条 适用范围", "第一章 总则 / 第一条 目的与依据"}


def test_latin_pdf_words_are_joined_with_spaces(tmp_path):
    import matplotlib

    matplotlib.use("pdf")
    import matplotlib.pyplot as plt

    lines = ["Chapter 1 Scope", "Travel costs are refunded within 30 days of the trip when the claim",
             "holds every receipt; a claim of more than 1,000 euros also needs the", "signature of the project lead.",
             "  Meals are paid as a flat daily allowance of 35 euros; no receipts", "are needed."]
    figure = plt.figure(figsize=(8.27, 11.69))
    for i, line in enumerate(lines):
        figure.text(0.08, 0.95 - i * 0.02, line, fontsize=11)
    figure.savefig(tmp_path / "latin.pdf")
    plt.close(figure)
    assert load_document(tmp_path / "latin.pdf") == (
        "## Chapter 1 Scope\n\nTravel costs are refunded within 30 days of the trip when the claim holds every receipt; a claim "
        "of more than 1,000 euros also needs the signature of the project lead.\n\nMeals are paid as a flat daily allowance "
        "of 35 euros; no receipts are needed.")


def md_table(lines: list[str]) -> list[list[str]]:
    return [[c.strip() for c in l.strip().strip("|").split("|")] for l in lines if not re.fullmatch(r"[|\s:-]+", l)]


def test_docx_tables_are_read_in_document_order(tmp_path):
    import docx

    document = docx.Document()
    expected, table = [], []
    for line in RULES.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            rows = md_table(table)
            grid = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    grid.cell(r, c).text = cell
            expected += ["| " + " | ".join(row) + " |" for row in rows]
            table = []
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            document.add_heading(line.lstrip("#").strip(), level=level - 1)  # 0 = the Title style
            expected.append(line.lstrip("#").strip())
        elif line.strip():
            document.add_paragraph(line)
            expected.append(line)
    document.save(tmp_path / "rules.docx")
    text = load_document(tmp_path / "rules.docx")
    got = [re.sub(r"^#+ ", "", l) for l in text.splitlines() if l.strip() and not re.fullmatch(r"[|\s-]+", l)]
    assert got == expected, "every paragraph, heading and table row, in document order"
    assert "| 一类城市 | 北京、上海、广州、深圳 | 800 | 550 |" in text
    chunks = chunk_text(text, 600, 60)
    assert any("| 三类会议 | 其他会议（省内会议、校内会议等） | 500 |" in c.text for c in chunks)


def test_docx_merged_cells_count_once_and_a_title_alone_is_no_chunk(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("东岚电信家庭套餐说明", level=0)
    document.add_heading("一、套餐资费", level=1)
    document.add_paragraph("下表为2025年在售的家庭融合套餐。")
    grid = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["套餐", "价格", "台数"], ["畅享199", "199元/月", "2"], ["畅享299", "299元/月", "3"]]):
        for c, cell in enumerate(row):
            grid.cell(r, c).text = cell
    merged = document.add_table(rows=2, cols=3)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "说明"
    merged.cell(0, 2).text = "备注"
    merged.cell(1, 0).text, merged.cell(1, 1).text, merged.cell(1, 2).text = "FTTR", "含1台从网关", "可加购"
    document.save(tmp_path / "plans.docx")
    text = load_document(tmp_path / "plans.docx")
    assert "| 畅享199 | 199元/月 | 2 |" in text and "| 说明 | 备注 |" in text and "| FTTR | 含1台从网关 | 可加购 |" in text
    chunks = chunk_text(text, 2000, 200)
    assert [c.heading for c in chunks] == ["一、套餐资费"], "the title has no body of its own: no chunk"
    assert "畅享299" in chunks[0].text


def test_scanned_and_broken_files_are_reported_and_skipped_in_a_folder(tmp_path):
    """With --ocr-engine off; OCR itself is in test_ocr.py."""
    pages, _ = typeset_rules()
    text_pdf = make_pdf(tmp_path / "text.pdf", pages[:2])
    folder = tmp_path / "docs"
    folder.mkdir()
    join_pdfs(folder / "mixed.pdf", [text_pdf, scan_pdf(tmp_path / "scan1.pdf")])
    scan_pdf(folder / "scanned.pdf")
    (folder / "broken.pdf").write_bytes(text_pdf.read_bytes()[: len(text_pdf.read_bytes()) // 3])
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    (folder / "notes.md").write_text(RULES[:300], encoding="utf-8")

    mixed = read_document(folder / "mixed.pdf", "off")
    assert "第二条 适用范围" in mixed.text and mixed.ocr_pages == [] and mixed.ocr_engine is None
    assert mixed.notes == [f"{folder / 'mixed.pdf'} page 3 of 3: no text layer (scanned?) — OCR it first (leave out --ocr-engine off); "
                           f"the other pages were used"]
    docs, skipped = read_documents(folder, "off")
    assert [d.path.name for d in docs] == ["mixed.pdf", "notes.md"]
    assert len(skipped) == 4 and all("\n" not in s for s in skipped)
    assert any(s.startswith(f"{folder / 'broken.pdf'}: cannot read this PDF") for s in skipped), skipped
    assert any(s.startswith(f"{folder / 'broken.docx'}: cannot read this DOCX") for s in skipped), skipped
    assert any(s.startswith(f"{folder / 'scanned.pdf'}: the PDF has no text layer (scanned?)") for s in skipped), skipped
    for bad in ("broken.pdf", "broken.docx", "scanned.pdf"):
        with pytest.raises(DataError, match=re.escape(str(folder / bad))) as err:
            read_documents(folder / bad, "off")  # a single file: an error, not a skip
        assert "\n" not in str(err.value)
    empty = tmp_path / "only_bad"
    empty.mkdir()
    (empty / "broken.docx").write_bytes(b"")
    with pytest.raises(DataError, match="no document could be read"):
        read_documents(empty, "off")


@pytest.mark.parametrize(("size", "overlap", "message"), [(0, 0, "--size must be at least 1"), (100, -1, "--overlap must be 0 or more"),
                                                          (100, 100, r"--overlap \(100\) must be smaller than --size \(100\)")])
def test_chunk_settings_are_checked(size, overlap, message):
    with pytest.raises(DataError, match=message):
        chunk_text("住宿费每晚不超过500元。", size, overlap)


@pytest.mark.parametrize("flags", [["--size", "0"], ["--overlap", "-5"], ["--size", "abc"]])
def test_corpus_rejects_bad_chunk_flags_in_one_line(flags):
    proc = run([sys.executable, "-m", "vslm.cli", "corpus", "datasets/finance/reimbursement_rules.md", "--name", "x",
                "--out", "/nonexistent/x.jsonl", *flags], timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and flags[0] in proc.stderr, proc.stderr


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["住宿费每晚500元", "。", "；", "\n", "\n\n", "Travel costs", ". ", " ", "1", "# 第一章\n"]), max_size=120),
       st.integers(1, 60), st.integers(0, 59))
def test_chunks_never_exceed_size_and_lose_no_sentence(parts, size, overlap):
    overlap = overlap % size
    text = "".join(parts)
    chunks = chunk_text(text, size, overlap)
    assert all(c.text and c.text == c.text.strip() and len(c.text) <= size for c in chunks)
    covered = "\n".join(c.text for c in chunks)
    for heading, body in _sections(text):
        for sentence in _sentences(body):
            if len(sentence.rstrip()) <= size:  # longer ones are cut (with overlap)
                assert sentence.strip() in covered
