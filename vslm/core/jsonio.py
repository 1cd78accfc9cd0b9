"""Reading text in whatever encoding it came in, JSON Lines with file:line errors, and atomic writes
(no half-written files, ever)."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import DataError


# Legacy encodings told apart by charset-normalizer when a file is not UTF-8 (Chinese Excel/Windows exports are
# GBK = gb18030's subset). Each is a rival of the others: bytes that read as different text in two of them are
# refused rather than guessed.
LEGACY_ENCODINGS = ("gb18030", "big5", "shift_jis", "euc_kr", "cp1252")
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))
SHORT = 32  # fewer non-ASCII bytes than this: any other legacy encoding that decodes them differently is a rival
NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")
CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")  # no text file has these; tab, newlines and form feed do
SAVE_AS_UTF8 = "save it as UTF-8 (Excel: Save As > CSV UTF-8; editors: Save with Encoding > UTF-8) and run again"
_noticed: set[str] = set()


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """(text, encoding) of a file's bytes: UTF-8 (BOM or not), UTF-16/32 with a BOM, or one legacy encoding that
    charset-normalizer detects without a rival; anything else is a DataError naming the file and what to do."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise DataError(f"{name}: starts with a {encoding.upper()} byte-order mark but is not valid {encoding.upper()} "
                                f"(byte {exc.start}); {SAVE_AS_UTF8}") from None
    if b"\x00" in data:
        raise DataError(f"{name}: not a text file (NUL bytes at byte {data.index(0)}: binary data, or UTF-16 without a "
                        f"byte-order mark); {SAVE_AS_UTF8}")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    loose = data.decode("utf-8", errors="replace")
    if len(NON_ASCII.findall(loose)) > loose.count("\ufffd"):  # more good UTF-8 characters than bad bytes: a damaged file
        line = data[:first_bad].count(b"\n") + 1
        raise DataError(f"{name}:{line}: invalid UTF-8 (byte {first_bad}) in an otherwise UTF-8 file; fix or retype that "
                        f"line, or {SAVE_AS_UTF8}")
    from charset_normalizer import from_bytes

    matches = from_bytes(data, cp_isolation=list(LEGACY_ENCODINGS))
    best = matches.best()
    if best is None:
        raise DataError(f"{name}: not UTF-8 and no text encoding fits it (binary data?); {SAVE_AS_UTF8}")
    text = str(best)
    rivals = {m.encoding for m in matches if m.chaos <= best.chaos + 0.1 and str(m) != text}
    if len(data.translate(None, bytes(range(128)))) < SHORT:  # too little text to tell encodings apart statistically
        for encoding in LEGACY_ENCODINGS:
            try:
                if data.decode(encoding) != text:
                    rivals.add(encoding)
            except UnicodeDecodeError:
                pass
    rivals.discard(best.encoding)
    if rivals:
        raise DataError(f"{name}: not UTF-8, and its encoding cannot be told for sure ({best.encoding} or "
                        f"{' or '.join(sorted(rivals))}?); {SAVE_AS_UTF8}")
    if CONTROL.search(text):
        raise DataError(f"{name}: not UTF-8, and read as {best.encoding} it has control characters (binary data?); {SAVE_AS_UTF8}")
    return text, best.encoding


def read_text(path: Path | str) -> str:
    """A text file's content. UTF-8 is read silently; another clearly detected encoding (GBK, Big5, UTF-16 ...) is
    read with a one-line notice on stderr; binary or ambiguous bytes raise DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text, encoding = decode_text(path.read_bytes(), str(path))
    if encoding != "utf-8" and str(path) not in _noticed:
        _noticed.add(str(path))
        print(f"note: {path} is not UTF-8; read it as {encoding}", file=sys.stderr)
    return text


def text_lines(text: str) -> Iterator[str]:
    """Lines as a text-mode file gives them (\\n, \\r\\n, \\r); unlike str.splitlines, U+2028 and friends stay inside."""
    return iter(io.StringIO(text, newline=None))


def json_records(path: Path | str) -> Iterator[tuple[int, Any]]:
    """(line, record) of a JSON Lines file or of a JSON list (line = item number). A line that is not JSON comes as
    a DataError naming file:line, so the caller chooses to stop or to skip it; an unreadable list raises."""
    path = Path(path)
    text = read_text(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            line = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise DataError(f"{path}{line}: invalid JSON ({getattr(exc, 'msg', 'nested too deeply')})") from None
        yield from enumerate(data, 1)
        return
    for lineno, line in enumerate(text_lines(text), 1):
        if line.strip():
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})")
            except RecursionError:
                yield lineno, DataError(f"{path}:{lineno}: invalid JSON (nested too deeply)")


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Every record of a JSON Lines file (or JSON list) as a dict with its `_line`; the first bad one raises."""
    rows = []
    for lineno, row in json_records(path):
        if isinstance(row, DataError):
            raise row
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        row["_line"] = lineno
        rows.append(row)
    return rows


def strip_meta(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: read it the only other way, by setting and restoring it
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers see old or new, never half. The file keeps
    its mode when it is replaced; a new file gets what open() would give it (0666 minus the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)  # mkstemp creates 0600
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(strip_meta(r), ensure_ascii=False) + "\n" for r in rows)


def atomic_write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, dumps_jsonl(rows))


def atomic_write_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
