"""Load documents (PDF, Markdown, TXT, DOCX) and cut them into overlapping, heading-aware chunks.

PDF text is reflowed first: the lines of a paragraph are joined (no space between CJK characters, none inside a
number broken over two lines), paragraph breaks and heading lines stay, page numbers and running headers go.
DOCX tables are read in document order as Markdown rows. A PDF page without a text layer (a scan) is rendered with
pypdfium2 and OCR'd (rapidocr, or Debian's tesseract; --ocr-engine off leaves it out); the Document says which pages
were OCR'd, and so does every chunk cut from them. A file or page that cannot be read is reported, never dropped
silently: in a folder the file is skipped and named, the others are read."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import shutil
import statistics
import subprocess
import unicodedata
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import DataError

SUFFIXES = (".pdf", ".md", ".markdown", ".txt", ".docx")
SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])|(?<=\.)(?=\s)")
HEADING = re.compile(r"^#{1,6}\s+\S")
OCR_FIRST = "no text layer (scanned?) — OCR it first (leave out --ocr-engine off)"
OCR_ENGINES = ("rapidocr", "tesseract", "off")
OCR_DPI = 200  # scans are rendered at this resolution for OCR
OCR_MAX_SIDE = 4000  # ... but no side longer than this many pixels (a poster page would take minutes)
TESSERACT_APT = "tesseract-ocr tesseract-ocr-chi-sim"
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
    ocr_engine: str | None = None  # set when some page's text comes from OCR
    ocr_pages: list[int] = field(default_factory=list)  # those pages (1-based)
    ocr_spans: list[tuple[int, int, frozenset[int]]] = field(default_factory=list)  # text[start:end] holds OCR'd pages

    def chunks(self, size: int, overlap: int) -> list[Chunk]:
        """chunk_text of the document; each chunk names the OCR'd pages its text comes from."""
        chunks = chunk_text(self.text, size, overlap)
        if self.ocr_spans:
            cursor = 0
            for chunk in chunks:  # chunks are verbatim pieces of the text, in order, overlapping
                start = self.text.find(chunk.text, cursor)
                start = self.text.find(chunk.text) if start < 0 else start
                cursor, end = max(start, 0), max(start, 0) + len(chunk.text)
                chunk.ocr_pages = sorted({p for a, b, pages in self.ocr_spans if a < end and b > cursor for p in pages})
        return chunks

    @property
    def ocr_note(self) -> str | None:
        """One line for the run's summary: which pages were read by OCR."""
        if not self.ocr_pages:
            return None
        return f"{self.path} page{'s' if len(self.ocr_pages) > 1 else ''} {', '.join(map(str, self.ocr_pages))}: read by OCR ({self.ocr_engine})"


def ocr_provenance(doc: Document, chunk: Chunk) -> dict:
    """The fields a row cut from OCR'd pages carries: the engine and the pages (none for text-layer chunks)."""
    return {"ocr_engine": doc.ocr_engine, "ocr_pages": chunk.ocr_pages} if chunk.ocr_pages else {}


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
    return _reflow(pages)[0]


def _reflow(pages: list[str | None]) -> tuple[str, list[tuple[int, int, frozenset[int]]]]:
    """reflow, and for each paragraph or heading its place in the text and the pages (0-based) it comes from."""
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
    stream: list[tuple[str | None, int]] = []  # (line, page) in reading order; None = a hard break (a page left out)
    for number, page in enumerate(lines_of):
        if page is None:
            stream.append((None, number))
            continue
        idx = [i for i, l in enumerate(page) if l.strip()]
        edges = set(idx[:2] + idx[-2:])  # page numbers sit at the top or bottom; a number in the body stays
        stream += [(l, number) for i, l in enumerate(page) if not (i in edges and PAGE_NUMBER.match(l.strip()))]
    widths = sorted((_width(l.strip()) for l, _ in stream if l and l.strip()), reverse=True)
    if not widths:
        return "", []
    full = widths[len(widths) // 10]  # the text width: most wrapped lines reach it
    out: list[tuple[str, set[int]]] = []  # paragraphs and headings, with their pages
    para, para_pages = "", set()
    heading: list[str] = []
    heading_pages: set[int] = set()

    def flush() -> None:
        nonlocal para, para_pages
        if para:
            if heading:
                out.append(("## " + " / ".join(heading), set(heading_pages)))
                heading.clear()
                heading_pages.clear()
            out.append((para, para_pages))
            para, para_pages = "", set()

    prev_full = False
    for raw, number in stream:
        line = raw.strip() if raw else ""
        if not line:
            flush()
            prev_full = False
            continue
        if _pdf_heading(line, full) and not (prev_full and not para.endswith(SENTENCE_STOP)):  # not mid-sentence
            flush()
            heading.append(line)
            heading_pages.add(number)
            prev_full = False
            continue
        indented = raw[:1] in (" ", "\u3000") and raw[:2].strip() == ""
        continues = para and prev_full and not indented and not (para.endswith(SENTENCE_STOP + (":", "：")) and ITEM_START.match(line))
        if continues:
            para += _joiner(para, line) + line
            para_pages.add(number)
        else:
            flush()
            para, para_pages = line, {number}
        prev_full = _width(line) >= FULL_LINE * full
    flush()
    if heading:  # headings with nothing after them stay as text
        out.append((" / ".join(heading), set(heading_pages)))
    spans, at = [], 0
    for block, block_pages in out:
        spans.append((at, at + len(block), frozenset(block_pages)))
        at += len(block) + 2
    return "\n\n".join(block for block, _ in out), spans


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


def _rows_of_boxes(boxes: list[tuple[float, float, float, float, str]]) -> list[str]:
    """OCR'd text boxes (left, top, right, bottom, text) as page lines in reading order: boxes side by side are one line
    (left to right, a space between), a gap taller than a line is a blank line (a paragraph break), a line starting
    well right of the margin is indented with two full-width spaces (a paragraph's first line, as reflow reads it)."""
    rows: list[list[tuple[float, float, float, float, str]]] = []
    for box in sorted(boxes, key=lambda b: (b[1] + b[3]) / 2):
        if rows and (box[1] + box[3]) / 2 < max(b[3] for b in rows[-1]):  # its middle is above the row's bottom: same row
            rows[-1].append(box)
        else:
            rows.append([box])
    if not rows:
        return []
    height = statistics.median(b[3] - b[1] for b in boxes)
    margin = min(b[0] for b in boxes)
    lines, bottom = [], None
    for row in rows:
        row.sort()
        top = min(b[1] for b in row)
        if bottom is not None and top - bottom > height:
            lines.append("")
        lines.append(("\u3000\u3000" if row[0][0] - margin > 1.5 * height else "") + " ".join(b[4].strip() for b in row))
        bottom = max(b[3] for b in row)
    return lines


class RapidOcr:
    """rapidocr with the ONNX models its wheel ships (Chinese + English): nothing is downloaded."""

    name = "rapidocr"

    def __init__(self) -> None:
        from rapidocr import RapidOCR

        # it logs every model it loads, and resets its logger's level as it goes: a filter stays
        logging.getLogger("RapidOCR").addFilter(lambda record: record.levelno >= logging.ERROR)
        self.engine = RapidOCR()

    def lines(self, image) -> list[str]:
        result = self.engine(image.convert("RGB"))
        if result.boxes is None or not result.txts:
            return []
        boxes = [(float(min(x for x, _ in box)), float(min(y for _, y in box)), float(max(x for x, _ in box)),
                  float(max(y for _, y in box)), text) for box, text in zip(result.boxes.tolist(), result.txts) if text.strip()]
        return _rows_of_boxes(boxes)


class Tesseract:
    """Debian's tesseract (chi_sim, + eng when installed): ~6x faster than rapidocr, a little less exact."""

    name = "tesseract"

    def __init__(self) -> None:
        if not shutil.which("tesseract"):
            raise DataError(f"--ocr-engine tesseract: the `tesseract` program is not installed — `apt-get install {TESSERACT_APT}`, "
                            f"or use --ocr-engine rapidocr")
        listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=60, check=False)
        langs = set((listed.stdout + listed.stderr).split())
        if "chi_sim" not in langs:
            raise DataError("--ocr-engine tesseract: tesseract has no Chinese (chi_sim) data — `apt-get install tesseract-ocr-chi-sim`, "
                            "or use --ocr-engine rapidocr")
        self.langs = "chi_sim+eng" if "eng" in langs else "chi_sim"

    def lines(self, image) -> list[str]:
        import io

        png = io.BytesIO()
        image.save(png, "PNG")
        # one thread: tesseract's OpenMP threads slow it down several times on a busy 2-core machine
        env = {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1")}
        proc = subprocess.run(["tesseract", "stdin", "stdout", "-l", self.langs, "--dpi", str(OCR_DPI)], input=png.getvalue(),
                              capture_output=True, timeout=600, env=env, check=False)
        if proc.returncode:
            raise DataError(f"tesseract failed ({proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}) — "
                            f"reinstall it (`apt-get install --reinstall {TESSERACT_APT}`) or use --ocr-engine rapidocr")
        return [_drop_cjk_spaces(line) for line in proc.stdout.decode("utf-8", errors="replace").replace("\f", "").splitlines()]


def _drop_cjk_spaces(line: str) -> str:
    """tesseract puts spaces between Chinese characters and next to them; Chinese text has none there."""
    def keep(m: re.Match) -> str:
        before, after = line[m.start() - 1:m.start()], line[m.end():m.end() + 1]
        return "" if (before and _is_cjk(before)) or (after and _is_cjk(after)) else m.group()

    return re.sub(r"(?<=\S) +(?=\S)", keep, line)


def check_ocr(engine: str) -> None:
    """Fail at once, in one line, when the chosen OCR engine cannot run here (before any file is read)."""
    if engine not in OCR_ENGINES:
        raise DataError(f"--ocr-engine must be one of {', '.join(OCR_ENGINES)} (got {engine!r})")
    if engine == "tesseract":
        _ocr(engine)
    elif engine == "rapidocr":
        missing = [m for m in ("rapidocr", "onnxruntime", "pypdfium2") if importlib.util.find_spec(m) is None]
        if missing:
            raise DataError(f"--ocr-engine rapidocr: {', '.join(missing)} not installed — run scripts/install.sh (requirements.lock "
                            f"pins them), or use --ocr-engine tesseract / off")


@functools.cache
def _ocr(engine: str) -> RapidOcr | Tesseract:
    return RapidOcr() if engine == "rapidocr" else Tesseract()  # the models load once per process


def _ocr_pages(path: Path, numbers: list[int], engine: str) -> dict[int, str]:
    """The OCR'd text of the given pages (1-based), rendered with pypdfium2; a progress bar per file."""
    import pypdfium2 as pdfium
    from tqdm import tqdm

    ocr = _ocr(engine)
    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise DataError(f"{path}: cannot render this PDF for OCR ({str(exc)[:120]}) — open it and save/print it to a new PDF") from None
    texts = {}
    try:
        for number in tqdm(numbers, desc=f"OCR ({engine}) {path.name}", unit="page", dynamic_ncols=True, leave=False):
            page = pdf[number - 1]
            width, height = page.get_size()
            scale = min(OCR_DPI / 72, OCR_MAX_SIDE / max(width, height, 1))
            image = page.render(scale=scale, grayscale=True).to_pil()
            texts[number] = "\n".join(ocr.lines(image))
    finally:
        pdf.close()
    return texts


def _read_pdf(path: Path, ocr: str = "rapidocr") -> Document:
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
    ocr_pages: list[int] = []
    if no_text and ocr != "off":
        for number, text in _ocr_pages(path, no_text, ocr).items():
            if text.strip():
                pages[number - 1] = text
                ocr_pages.append(number)
        no_text = [n for n in no_text if n not in ocr_pages]
    text, spans = _reflow(pages)
    if not text.strip():
        if not no_text:
            raise DataError(f"{path}: the PDF has no text layer and nothing drawn on its {len(pages)} page(s) — is it empty? "
                            f"check the file")
        if ocr == "off":
            raise DataError(f"{path}: the PDF has no text layer (scanned?) — OCR it: leave out --ocr-engine off, or run "
                            f"`ocrmypdf {path.name} out.pdf` and use out.pdf")
        raise DataError(f"{path}: no text even after OCR ({ocr}) of its {len(no_text)} scanned page(s) of {len(pages)} — "
                        f"blank, or too faint or small to read? rescan it at 300 dpi" + (
                            ", or try --ocr-engine tesseract" if ocr == "rapidocr" else ", or try --ocr-engine rapidocr"))
    notes = []
    if no_text:
        why = OCR_FIRST if ocr == "off" else f"no text even after OCR ({ocr}) — blank or unreadable"
        notes.append(f"{path} page{'s' if len(no_text) > 1 else ''} {', '.join(map(str, no_text))} of {len(pages)}: "
                     f"{why}; the other pages were used")
    spans = [(a, b, frozenset(n + 1 for n in where if n + 1 in ocr_pages)) for a, b, where in spans]
    return Document(path, text, notes, ocr if ocr_pages else None, ocr_pages, [s for s in spans if s[2]])


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


def read_document(path: Path, ocr: str = "rapidocr") -> Document:
    """A document's text (and the parts left out); DataError naming the file when it cannot be read at all.
    `ocr` reads the scanned pages of a PDF: rapidocr, tesseract or off."""
    from ..core.jsonio import read_text

    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix in (".md", ".markdown", ".txt"):
        return Document(path, read_text(path))
    if suffix == ".docx":
        return Document(path, _read_docx(path))
    if suffix == ".pdf":
        return _read_pdf(path, ocr)
    raise DataError(f"{path}: unsupported document type {suffix} (use {', '.join(SUFFIXES)})")


def load_document(path: Path, ocr: str = "rapidocr") -> str:
    return read_document(path, ocr).text


def find_documents(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"{source}: no such file or folder")
    docs = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not docs:
        raise DataError(f"{source}: no documents ({', '.join(SUFFIXES)}) found")
    return docs


def read_documents(source: Path, ocr: str = "rapidocr") -> tuple[list[Document], list[str]]:
    """The documents of a file or folder, and what was skipped and why. A single file that cannot be read is an
    error; in a folder it is skipped (listed) and the run goes on with the others."""
    check_ocr(ocr)
    docs, skipped = [], []
    for path in find_documents(source):
        try:
            doc = read_document(path, ocr)
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
    ocr_pages: list[int] = field(default_factory=list)  # the OCR'd PDF pages its text comes from (Document.chunks)


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
                 registry_path: Path | None = None, ocr: str = "rapidocr") -> int:
    """Chunk documents into a {"text": ...} JSONL for continual pre-training (stage pt) and register it as `name`;
    an existing file or entry is replaced only with `replace`. Skipped files and OCR'd pages are named on stderr;
    rows cut from OCR'd pages carry ocr_engine and ocr_pages."""
    import sys

    from ..core.jsonio import dumps_jsonl
    from ..core.paths import DATASET_INFO
    from .registry import check_name, publish, text_entry

    check_name(name)
    check_chunking(size, overlap)
    registry_path = registry_path or DATASET_INFO
    docs, skipped = read_documents(source, ocr)
    rows = []
    for doc in docs:
        for chunk in doc.chunks(size, overlap):
            rows.append({"text": (chunk.heading + "\n" if chunk.heading else "") + chunk.text, "source": doc.path.name, "chunk_id": chunk.index,
                         **ocr_provenance(doc, chunk)})
    if not rows:
        raise DataError(f"{source}: the documents have no text to chunk; nothing was written")
    base, path = registry_path.parent.resolve(), out.resolve()
    rel = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
    publish({name: (out, dumps_jsonl(rows), text_entry(rel))}, replace=replace, registry_path=registry_path)
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    for doc in docs:
        if doc.ocr_note:
            print(doc.ocr_note, file=sys.stderr)
    return len(rows)
