"""Load documents (PDF, Markdown, TXT, DOCX) and cut them into overlapping, heading-aware chunks.

PDF text is reflowed first: the lines of a paragraph are joined (no space between CJK characters, none inside a
number broken over two lines), paragraph breaks and heading lines stay, page numbers and running headers go.
DOCX tables are read in document order as Markdown rows. A file or page that cannot be read is reported, never
dropped silently: in a folder the file is skipped and named, the others are read."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .jsonio import DataError

SUFFIXES = (".pdf", ".md", ".markdown", ".txt", ".docx")
SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])|(?<=\.)(?=\s)")
HEADING = re.compile(r"^#{1,6}\s+\S")
OCR_FIRST = "no text layer (scanned?) — OCR it first"
# A PDF line that is a heading when it is short and unpunctuated: 第三章 / 第十四条 / 一、 / Chapter 2 ...
PDF_HEADING = re.compile(r"^(?:第[一二三四五六七八九十百千零〇两\d]+[章节条篇编部分]|[一二三四五六七八九十]+、|"
                         r"(?:chapter|section|article|part)\s+[\dIVXivx]+\b)", re.I)
# A line that starts a new item even right after a full line that ends a sentence: （二）, 2., •, -, 第三条 ...
ITEM_START = re.compile(r"^(?:[（(][一二三四五六七八九十\d]+[)）]|\d+[.、)）]\s*\S|[•·●▪■◆\-–*]\s|[①-⑳])|" + PDF_HEADING.pattern, re.I)
PAGE_NUMBER = re.compile(r"^(?:[-–—]?\s*\d+\s*[-–—]?|第\s*\d+\s*页(?:\s*[,，/／]?\s*共\s*\d+\s*页)?|\d+\s*[/／]\s*\d+|"
                         r"page\s+\d+(?:\s+of\s+\d+)?)$", re.I)
TERMINAL = tuple("。！？；：…!?;:.，,、")  # a line ending so is no heading
SENTENCE_STOP = tuple("。！？；…!?;.")
FULL_LINE = 0.75  # a line at least this share of the text width wrapped at the margin: its paragraph goes on


@dataclass
class Document:
    path: Path
    text: str
    notes: list[str] = field(default_factory=list)  # parts left out (pages without text), for the run's summary


def _is_cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def _width(line: str) -> int:
    return sum(2 if _is_cjk(ch) else 1 for ch in line)


def _joiner(left: str, right: str) -> str:
    """What goes between two lines of one paragraph: nothing next to CJK, inside a number or after a hyphen."""
    a, b = left[-1], right[0]
    if _is_cjk(a) or _is_cjk(b) or a in "-/":
        return ""
    if a.isdigit() and b.isdigit():  # CJK typesetting breaks inside numbers; Latin never does
        before = left.rstrip("0123456789.,")[-1:]
        after = right.lstrip("0123456789.,")[:1]
        return "" if (before and _is_cjk(before)) or (after and _is_cjk(after)) else " "
    return " "


def _pdf_heading(line: str, full: int) -> bool:
    return bool(PDF_HEADING.match(line)) and _width(line) < 0.6 * full and not line.endswith(TERMINAL)


def reflow(pages: list[str | None]) -> str:
    """PDF page texts (None = a page left out) as paragraphs: one line each, headings as Markdown headings."""
    lines_of = [[l.rstrip() for l in page.splitlines()] if page else None for page in pages]
    texts = [p for p in lines_of if p]
    if len(texts) >= 3:  # a running header/footer: the same first/last line (digits aside) on most pages
        for pick in (0, -1):
            shapes = Counter(re.sub(r"\d+", "#", next(l for l in (p if pick == 0 else reversed(p)) if l.strip()).strip())
                             for p in texts if any(l.strip() for l in p))
            shape, count = shapes.most_common(1)[0]
            if count >= max(3, 0.6 * len(texts)):
                for p in texts:
                    idx = [i for i, l in enumerate(p) if l.strip()]
                    if idx and re.sub(r"\d+", "#", p[idx[pick]].strip()) == shape:
                        del p[idx[pick]]
    stream: list[str | None] = []  # lines in reading order; None = a hard break (a page left out)
    for page in lines_of:
        if page is None:
            stream.append(None)
            continue
        idx = [i for i, l in enumerate(page) if l.strip()]
        edges = set(idx[:2] + idx[-2:])  # page numbers sit at the top or bottom; a number in the body stays
        stream += [l for i, l in enumerate(page) if not (i in edges and PAGE_NUMBER.match(l.strip()))]
    widths = sorted((_width(l.strip()) for l in stream if l and l.strip()), reverse=True)
    if not widths:
        return ""
    full = widths[len(widths) // 10]  # the text width: most wrapped lines reach it
    out: list[str] = []  # paragraphs and headings
    para = ""
    heading: list[str] = []

    def flush() -> None:
        nonlocal para
        if para:
            if heading:
                out.append("## " + " / ".join(heading))
                heading.clear()
            out.append(para)
            para = ""

    prev_full = False
    for raw in stream:
        line = raw.strip() if raw else ""
        if not line:
            flush()
            prev_full = False
            continue
        if _pdf_heading(line, full) and not (prev_full and not para.endswith(SENTENCE_STOP)):  # not mid-sentence
            flush()
            heading.append(line)
            prev_full = False
            continue
        indented = raw[:1] in (" ", "\u3000") and raw[:2].strip() == ""
        continues = para and prev_full and not indented and not (para.endswith(SENTENCE_STOP + (":", "：")) and ITEM_START.match(line))
        if continues:
            para += _joiner(para, line) + line
        else:
            flush()
            para = line
        prev_full = _width(line) >= FULL_LINE * full
    flush()
    if heading:  # headings with nothing after them stay as text
        out.append(" / ".join(heading))
    return "\n\n".join(out)


@contextmanager
def _quiet(logger: str):
    """pypdf logs every repair of a damaged file as a warning; the outcome is reported instead."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _read_pdf(path: Path) -> Document:
    from pypdf import PdfReader

    try:
        with _quiet("pypdf"):
            reader = PdfReader(str(path))
            if reader.is_encrypted and not reader.decrypt(""):
                raise DataError(f"{path}: the PDF is password-protected — save an unprotected copy (e.g. `qpdf --decrypt`) and use that")
            pages: list[str | None] = []
            no_text: list[int] = []
            for number, page in enumerate(reader.pages, 1):
                text = page.extract_text() or ""
                if not text.strip():
                    contents = page.get_contents()
                    if contents is not None and contents.get_data().strip():  # drawn, but no text: a scan
                        no_text.append(number)
                    text = None
                pages.append(text)
    except DataError:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files
        raise DataError(f"{path}: cannot read this PDF ({type(exc).__name__}: {str(exc)[:120]}) — is it damaged or "
                        f"incomplete? open it and save/print it to a new PDF") from None
    text = reflow(pages)
    if not text.strip():
        raise DataError(f"{path}: the PDF has no text layer (scanned?) — OCR it first, e.g. `ocrmypdf {path.name} out.pdf`, and use out.pdf")
    notes = []
    if no_text:
        notes.append(f"{path} page{'s' if len(no_text) > 1 else ''} {', '.join(map(str, no_text))} of {len(pages)}: "
                     f"{OCR_FIRST}; the other pages were used")
    return Document(path, text, notes)


def _table_lines(table) -> list[str]:
    """A DOCX table as Markdown rows; a merged cell counts once per row."""
    rows = []
    for row in table.rows:
        cells, seen = [], []
        for cell in row.cells:
            if any(cell._tc is tc for tc in seen):
                continue
            seen.append(cell._tc)
            cells.append(" ".join(cell.text.split()).replace("|", "\\|"))
        if any(cells):
            rows.append("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        rows.insert(1, "|" + " --- |" * rows[0].count(" | ") + " --- |")
    return rows


def _read_docx(path: Path) -> str:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
        blocks = []
        for block in document.iter_inner_content():  # paragraphs and tables in document order
            if isinstance(block, Table):
                blocks.append("\n".join(_table_lines(block)))
                continue
            style = (block.style.name or "") if block.style is not None else ""
            level = 1 if style == "Title" else int(m.group(1)) if (m := re.match(r"Heading (\d)", style)) else 0
            blocks.append(("#" * level + " " if level else "") + block.text)
    except Exception as exc:  # python-docx raises many kinds on damaged files
        raise DataError(f"{path}: cannot read this DOCX ({type(exc).__name__}) — is it damaged, or another format "
                        f"renamed .docx (e.g. an old .doc)? open it and save it as .docx") from None
    return "\n\n".join(b for b in blocks if b.strip())


def read_document(path: Path) -> Document:
    """A document's text (and the parts left out); DataError naming the file when it cannot be read at all."""
    from .jsonio import read_text

    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix in (".md", ".markdown", ".txt"):
        return Document(path, read_text(path))
    if suffix == ".docx":
        return Document(path, _read_docx(path))
    if suffix == ".pdf":
        return _read_pdf(path)
    raise DataError(f"{path}: unsupported document type {suffix} (use {', '.join(SUFFIXES)})")


def load_document(path: Path) -> str:
    return read_document(path).text


def find_documents(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"{source}: no such file or folder")
    docs = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not docs:
        raise DataError(f"{source}: no documents ({', '.join(SUFFIXES)}) found")
    return docs


def read_documents(source: Path) -> tuple[list[Document], list[str]]:
    """The documents of a file or folder, and what was skipped and why. A single file that cannot be read is an
    error; in a folder it is skipped (listed) and the run goes on with the others."""
    docs, skipped = [], []
    for path in find_documents(source):
        try:
            doc = read_document(path)
        except DataError as exc:
            if source.is_file():
                raise
            skipped.append(str(exc))
            continue
        docs.append(doc)
        skipped += doc.notes
    if not docs:
        more = f" (+{len(skipped) - 2} more)" if len(skipped) > 2 else ""
        raise DataError(f"{source}: no document could be read — {'; '.join(skipped[:2])}{more}")
    return docs, skipped


@dataclass
class Chunk:
    index: int
    heading: str
    text: str


def _sections(text: str) -> list[tuple[str, str]]:
    """Split on Markdown headings; each section keeps its nearest heading. A heading without body is no chunk."""
    sections, heading, buf = [], "", []
    for line in text.splitlines():
        if HEADING.match(line):
            if "".join(buf).strip():
                sections.append((heading, "\n".join(buf).strip()))
            heading, buf = line.lstrip("#").strip(), []
        else:
            buf.append(line)
    if "".join(buf).strip():
        sections.append((heading, "\n".join(buf).strip()))
    return sections


def _sentences(text: str) -> list[str]:
    """Sentences with what follows them (a line break stays with the sentence before it: paragraphs stay apart)."""
    sentences: list[str] = []
    for piece in SENTENCE_END.split(text):
        if piece.strip():
            sentences.append(piece)
        elif sentences:
            sentences[-1] += piece
    return sentences


def check_chunking(size: int, overlap: int) -> None:
    if size < 1:
        raise DataError(f"--size must be at least 1 character (got {size})")
    if overlap < 0:
        raise DataError(f"--overlap must be 0 or more (got {overlap})")
    if overlap >= size:
        raise DataError(f"--overlap ({overlap}) must be smaller than --size ({size})")


def chunk_text(text: str, size: int = 2000, overlap: int = 200) -> list[Chunk]:
    """Pack sentences into chunks of at most `size` characters; each chunk after the first starts with
    the last whole sentences (up to `overlap` characters) of the previous chunk of the same section."""
    check_chunking(size, overlap)
    chunks: list[Chunk] = []
    for heading, body in _sections(text):
        sentences = []
        for sentence in _sentences(body):
            pieces = []
            while len(sentence.rstrip()) > size:  # a single over-long sentence: hard split
                pieces.append(sentence[:size])
                sentence = sentence[size - overlap:]
            sentences += [p for p in [*pieces, sentence] if p.strip()]
        current: list[str] = []
        for sentence in sentences:
            if current and len("".join(current)) + len(sentence.rstrip()) > size:
                if "".join(current).strip():
                    chunks.append(Chunk(len(chunks), heading, "".join(current).strip()))
                tail: list[str] = []
                for prev in reversed(current):
                    if len("".join(tail)) + len(prev) > overlap:
                        break
                    tail.insert(0, prev)
                while tail and len("".join(tail)) + len(sentence.rstrip()) > size:  # the overlap must not push it over
                    tail.pop(0)
                current = tail
            current.append(sentence)
        if "".join(current).strip():
            chunks.append(Chunk(len(chunks), heading, "".join(current).strip()))
    return chunks


def build_corpus(source: Path, name: str, out: Path, size: int = 1000, overlap: int = 100, replace: bool = False,
                 registry_path: Path | None = None) -> int:
    """Chunk documents into a {"text": ...} JSONL for continual pre-training (stage pt) and register it as `name`;
    an existing file or entry is replaced only with `replace`. Skipped files are named on stderr."""
    import sys

    from .jsonio import dumps_jsonl
    from .paths import DATASET_INFO
    from .registry import check_name, publish, text_entry

    check_name(name)
    check_chunking(size, overlap)
    registry_path = registry_path or DATASET_INFO
    docs, skipped = read_documents(source)
    rows = []
    for doc in docs:
        for chunk in chunk_text(doc.text, size, overlap):
            rows.append({"text": (chunk.heading + "\n" if chunk.heading else "") + chunk.text, "source": doc.path.name, "chunk_id": chunk.index})
    if not rows:
        raise DataError(f"{source}: the documents have no text to chunk; nothing was written")
    base, path = registry_path.parent.resolve(), out.resolve()
    rel = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
    publish({name: (out, dumps_jsonl(rows), text_entry(rel))}, replace=replace, registry_path=registry_path)
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    return len(rows)
