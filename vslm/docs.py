"""Load documents (PDF, Markdown, TXT, DOCX) and cut them into overlapping, heading-aware chunks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .jsonio import DataError

SUFFIXES = (".pdf", ".md", ".markdown", ".txt", ".docx")
SENTENCE_END = re.compile(r"(?<=[。！？!?；;\n])|(?<=\.)(?=\s)")
HEADING = re.compile(r"^#{1,6}\s+\S")


def load_document(path: Path) -> str:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if suffix in (".md", ".markdown", ".txt"):
        return path.read_text(encoding="utf-8-sig")
    if suffix == ".docx":
        import docx

        document = docx.Document(str(path))
        lines = []
        for para in document.paragraphs:
            style = (para.style.name or "") if para.style is not None else ""
            level = re.match(r"Heading (\d)", style)
            lines.append(("#" * int(level.group(1)) + " " if level else "") + para.text)
        return "\n\n".join(line for line in lines if line.strip())
    if suffix == ".pdf":
        from pypdf import PdfReader

        text = "\n\n".join((page.extract_text() or "") for page in PdfReader(str(path)).pages)
        if not text.strip():
            raise DataError(f"{path}: the PDF has no text layer (a scan?); run OCR first, e.g. `ocrmypdf {path.name} out.pdf`, and distil out.pdf")
        return text
    raise DataError(f"{path}: unsupported document type {suffix} (use {', '.join(SUFFIXES)})")


def find_documents(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"{source}: no such file or folder")
    docs = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not docs:
        raise DataError(f"{source}: no documents ({', '.join(SUFFIXES)}) found")
    return docs


@dataclass
class Chunk:
    index: int
    heading: str
    text: str


def _sections(text: str) -> list[tuple[str, str]]:
    """Split on Markdown headings; each section keeps its heading path."""
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
    return [p for p in SENTENCE_END.split(text) if p.strip()]


def chunk_text(text: str, size: int = 2000, overlap: int = 200) -> list[Chunk]:
    """Pack sentences into chunks of at most `size` characters; each chunk after the first starts with
    the last whole sentences (up to `overlap` characters) of the previous chunk of the same section."""
    if overlap >= size:
        raise ValueError("overlap must be smaller than size")
    chunks: list[Chunk] = []
    for heading, body in _sections(text):
        sentences = []
        for sentence in _sentences(body):
            while len(sentence) > size:  # a single over-long sentence: hard split
                sentences.append(sentence[:size])
                sentence = sentence[size - overlap:]
            sentences.append(sentence)
        current: list[str] = []
        for sentence in sentences:
            if current and len("".join(current)) + len(sentence) > size:
                chunks.append(Chunk(len(chunks), heading, "".join(current)))
                tail: list[str] = []
                for prev in reversed(current):
                    if len("".join(tail)) + len(prev) > overlap:
                        break
                    tail.insert(0, prev)
                current = tail
            current.append(sentence)
        if current:
            chunks.append(Chunk(len(chunks), heading, "".join(current)))
    return chunks


def build_corpus(source: Path, name: str, out: Path, size: int = 1000, overlap: int = 100, replace: bool = False) -> int:
    """Chunk documents into a {"text": ...} JSONL for continual pre-training (stage pt) and register it."""
    from .jsonio import atomic_write_jsonl
    from .paths import ROOT
    from .registry import register, text_entry

    rows = []
    for doc in find_documents(source):
        for chunk in chunk_text(load_document(doc), size, overlap):
            rows.append({"text": (chunk.heading + "\n" if chunk.heading else "") + chunk.text, "source": doc.name, "chunk_id": chunk.index})
    rel = str(out.resolve().relative_to(ROOT)) if out.resolve().is_relative_to(ROOT) else str(out.resolve())
    from .registry import load_registry

    existing = load_registry().get(name)
    if existing and existing != text_entry(rel) and not replace:
        raise DataError(f"dataset_info.json: `{name}` is already registered with other settings; pass --replace")
    atomic_write_jsonl(out, rows)
    register(name, text_entry(rel), replace=True)
    return len(rows)
