
import pytest

from vslm.docs import chunk_text, find_documents, load_document
from vslm.jsonio import DataError


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
    with pytest.raises(DataError, match=r"scan.pdf: the PDF has no text layer"):
        load_document(tmp_path / "scan.pdf")
