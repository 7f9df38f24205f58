"""Where the real recipes get their rows: a Hugging Face dataset id, or a local copy read the same way.

`load_rows(source, split, config=...)` yields each row as a plain dict in the source's own schema, so one
recipe runs unchanged on the hub (`"MMMU/MMMU"`, config `"Math"`), on a downloaded copy of the repository,
and on the tiny fixture files the tests write:

- a hub id goes through `datasets.load_dataset(source, config, split=split)`; rows come back undecoded
  (images as `{"bytes": ..., "path": ...}`, class labels as ints), exactly as a local parquet file holds them;
- a local `.parquet` / `.jsonl` / `.json` file is read whole, whatever `split` says;
- a local folder is searched (recursively, hidden folders skipped) for data files named after the split,
  `<split>.parquet` or `<split>-00000-of-00001.parquet` (HF's `data/` layout included); `config` picks a
  subfolder (`MMMU/Math/`) or a file (`testmini_text_only.parquet`). Parquet wins over jsonl over json when a
  folder holds several (MathVerse ships both). A folder whose files carry no split name at all
  (ViRL39K's `39Krelease.parquet`) is one split.

The row helpers below turn cells into record parts: `cell_text` (a required text cell), `image_entry` (an
image cell to bytes or a root-relative path), `interleaved_prompt` (image slots where `<image 1>`
placeholders sit), `parse_options` / `inline_options` (option lists), and `rows_to_records`, which drives a
recipe's row -> Record function and turns a bad row (`BadRow`, or any error converting it) into a `Skip`
that build and check count and name.

Every real recipe takes the same three sources, in this order: its `path` option (hub id or local copy),
else `--root` (the folder holding a local copy and its images), else its hub id (SOURCE). Image paths in
the records are relative to `root` when one is given; otherwise the image bytes are embedded.
"""
from __future__ import annotations

import ast
import contextlib
import contextvars
import io
import json
import logging
import os
import re
import string
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import pyarrow.parquet as pq

from sapo_vl.data.recipe import Skip
from sapo_vl.data.record import Record

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
"""Local data files `load_rows` reads, in order of preference when a folder holds several kinds."""
SPLIT_NAMES = ("train", "validation", "val", "dev", "test", "testmini")
"""Split names a local file name may start with; a folder whose files carry none of them is one split."""
SPLIT_ALIASES = {"validation": ("val",), "val": ("validation",)}
"""Other names a local file of a split may carry: CharXiv's release calls its validation split `val.parquet`."""
ID_COLUMNS = ("id", "pid", "qid", "sample_index")
"""Columns `rows_to_records` takes a record id from, first present wins; else the row number."""


class SourceError(RuntimeError):
    """A source that cannot be read (hub unreachable, no such file, no file for the split); one line."""


class BadRow(ValueError):
    """A row a recipe cannot use (missing image, empty answer, unparsable options); it is skipped."""


# ------------------------------------------------------------------------------------------------ rows
def is_local(source: str | os.PathLike) -> bool:
    """True for a path on this machine (existing, or spelled like a path); False for a hub id."""
    s = str(source)
    # "org/name" is a hub id; "a/b/c", "./x", "x.parquet" are paths even before they exist
    return (Path(s).expanduser().exists() or s.startswith((".", "/", "~")) or s.endswith(DATA_SUFFIXES)
            or s.count("/") >= 2)


def source_dir(source: str | os.PathLike) -> Path | None:
    """The folder a local source's relative image paths start from (the folder, or the file's); None on the hub."""
    if not is_local(source):
        return None
    p = Path(source).expanduser()
    return p if p.is_dir() else p.parent


def load_rows(source: str | os.PathLike, split: str, *, config: str | None = None,
              root: str | os.PathLike | None = None, revision: str | None = None, streaming: bool | None = None,
              limit: int | None = None, data_files: str | list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The rows of `split` of `source` (a hub id or a local file / folder), as plain dicts, at most `limit`.

    config: the hub configuration ("Math" for MMMU), or locally a subfolder or file of that name.
    root: a relative local `source` is looked up under `root` first.
    revision: hub branch, tag or commit. streaming: hub only; default streams when `limit` is given, so a
        preview does not download a whole split. data_files: hub only, for repos whose default config does
        not load (ViRL39K: "39Krelease.parquet").
    """
    if root is not None and not Path(source).expanduser().is_absolute() and (Path(root) / source).exists():
        source = Path(root) / source
    if is_local(source):
        rows = _local_rows(Path(source).expanduser(), split, config)
    else:
        stream = (limit is not None) if streaming is None else streaming
        rows = _hub_rows(str(source), split, config, revision, stream, data_files)
    for n, row in enumerate(rows):
        if limit is not None and n >= limit:
            return
        yield row


def _hub_rows(name: str, split: str, config: str | None, revision: str | None, streaming: bool,
              data_files: Any) -> Iterator[dict[str, Any]]:
    import datasets

    what = f"{name}" + (f" (config {config!r})" if config else "") + f" split {split!r}"
    try:
        ds = datasets.load_dataset(name, config, split=split, revision=revision, streaming=streaming,
                                   data_files=data_files)
    except Exception as e:  # offline, unreachable, gated, unknown split: all end here, in one line
        cause = " ".join(str(e).split())[:300] or type(e).__name__
        offline = next((v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
                        if os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")), None)
        hint = f"{offline} is set and it is not in the local cache: " if offline else "no network? "
        raise SourceError(f"cannot load hub dataset {what}: {type(e).__name__}: {cause} -- {hint}download "
                          f"a copy and pass its folder or parquet/jsonl file as the recipe's `path` option "
                          f"(or --root)" + (f", or unset {offline}" if offline else "")) from None
    if streaming:  # rows arrive over the network from here on: a failure is the same one-line error
        try:
            yield from ds.decode(False)
        except Exception as e:
            raise SourceError(f"reading hub dataset {what} failed: {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]} -- pass a local copy as the recipe's `path` "
                              f"option (or --root)") from None
        return
    for batch in ds.with_format("arrow").iter(batch_size=256):
        yield from batch.to_pylist()


def _local_rows(path: Path, split: str, config: str | None) -> Iterator[dict[str, Any]]:
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    files = [path] if path.is_file() else _split_files(path, split, config)
    for f in files:
        yield from _read_file(f)


def _split_files(folder: Path, split: str, config: str | None) -> list[Path]:
    if config:
        if (folder / config).is_dir():
            folder = folder / config
        else:
            named = [folder / f"{config}{s}" for s in DATA_SUFFIXES if (folder / f"{config}{s}").is_file()]
            if not named:
                raise SourceError(f"{folder}: no subfolder or data file named {config!r} (the config)")
            return named[:1]
    found = [p for p in sorted(folder.rglob("*")) if p.suffix in DATA_SUFFIXES and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    for suffix in DATA_SUFFIXES:  # parquet beats jsonl beats json
        kind = [p for p in found if p.suffix == suffix]
        if not kind:
            continue
        mine = [p for p in kind if _names_split(p, split)]
        if mine:
            return mine
        if not any(_names_split(p, s) for p in kind for s in SPLIT_NAMES):
            return kind  # files without split names: the folder is one split
        names = ", ".join(p.relative_to(folder).as_posix() for p in kind[:6])
        raise SourceError(f"{folder}: no {suffix} file for split {split!r} (found {names}); name them "
                          f"{split}{suffix} or {split}-*{suffix}, or pass the file itself")
    raise SourceError(f"{folder}: no .parquet, .jsonl or .json files")


def _names_split(path: Path, split: str) -> bool:
    return any(path.stem == name or path.stem.startswith(f"{name}-") for name in (split, *SPLIT_ALIASES.get(split, ())))


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    try:
        if path.suffix == ".parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
                yield from batch.to_pylist()
            return
        content = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".json" and content.lstrip()[:1] in ("[", "{"):
            try:
                data = json.loads(content)
            except ValueError:
                data = None  # JSON lines under a .json name: read line by line below
            if data is not None:  # a list of rows, or {key: row} (MathVista's annot_testmini.json)
                yield from (data if isinstance(data, list) else _keyed_rows(data) if isinstance(data, dict)
                            else [data])
                return
        for n, line in enumerate(content.splitlines()):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    yield {"_bad_row": f"{path.name} line {n + 1}: not JSON ({e})"}
    except (OSError, ValueError) as e:  # pyarrow errors are OSError / ValueError subclasses
        raise SourceError(f"cannot read {path}: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None


def _keyed_rows(data: dict) -> Iterator[Any]:
    """The rows of a {key: row} file; a row with no id column of its own gets its key as `id` (LogicVista's
    dataset.json: "v1_0": {...}), so record ids follow the release's keys, not row numbers."""
    for key, row in data.items():
        if isinstance(row, dict) and not any(row.get(c) not in (None, "") for c in ID_COLUMNS):
            row = {**row, "id": key}
        yield row


# --------------------------------------------------------------------------------------------- records
def rows_to_records(rows: Iterable[dict[str, Any]], to_record: Callable[[dict[str, Any], str], Record], *,
                    name: str, split: str) -> Iterator[Record | Skip]:
    """`to_record(row, record_id)` over the rows; a row it cannot convert becomes `Skip(record_id, reason)`.

    The id is "<name>/<split>/<key>", the key being the row's own id (ID_COLUMNS) or its number. Any error
    in `to_record` skips the row (a `BadRow` with its message, anything else with its type as well): one
    bad row never ends a run. Skips are also logged (the first 5 per reason at WARNING)."""
    warned: dict[str, int] = {}
    for n, row in enumerate(rows):
        key = next((row[c] for c in ID_COLUMNS if isinstance(row, dict) and row.get(c) not in (None, "")), n)
        rid = f"{name}/{split}/{key}"
        try:
            if not isinstance(row, dict):
                raise BadRow(f"row is a {type(row).__name__}, not an object")
            if "_bad_row" in row:
                raise BadRow(row["_bad_row"])
            item: Record | Skip = to_record(row, rid)
        except Exception as e:  # noqa: BLE001 -- a bad row is skipped, never fatal
            reason = str(e) if isinstance(e, BadRow) else f"{type(e).__name__}: {e}"
            kind = reason.split(":")[0]
            warned[kind] = warned.get(kind, 0) + 1
            (log.warning if warned[kind] <= 5 else log.debug)("%s skipped: %s", rid, reason)
            item = Skip(rid, reason)
        yield item


_EATEN_ESCAPES = {"\x0c": "\\f", "\x08": "\\b"}


def repair_escapes(text: str) -> str:
    """LaTeX whose backslash a JSON writer read as an escape, put back: a form feed is `\\f` (`\\frac`), a
    backspace `\\b` (`\\beta`). Neither character occurs in real question or answer text (MATH-V test
    row 2830's gold is "\\x0crac{36}{13}")."""
    for char, latex in _EATEN_ESCAPES.items():
        text = text.replace(char, latex)
    return text


def cell_text(row: Mapping[str, Any], column: str, what: str | None = None) -> str:
    """A non-empty text cell, escapes repaired (`repair_escapes`, before stripping: a form feed is white
    space), stripped; BadRow ("empty <what>") when missing or blank."""
    value = row.get(column)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"empty {what or column}")
    return repair_escapes(value).strip()


# ---------------------------------------------------------------------------------------------- images
_TEXT_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("sapo_vl_text_only", default=False)


@contextlib.contextmanager
def text_only() -> Iterator[None]:
    """Within this block `image_entry` does not need the image: a missing one becomes the text
    "missing image: <where>" instead of a skipped row. `recipe check --text-only` reads a release's rows,
    golds and options this way without its image files (the records are not for training)."""
    token = _TEXT_ONLY.set(True)
    try:
        yield
    finally:
        _TEXT_ONLY.reset(token)


def image_entry(cell: Any, *, base: Path | None = None, root: Path | None = None) -> str | bytes:
    """What `Record.images` holds for one image cell: encoded bytes, or a path relative to `root`.

    Cells come as HF stores them: `{"bytes": b"...", "path": "x.png"}`, a path string, raw bytes or a PIL
    image. Bytes win when present. A path is found under `base` (the source's folder); with a `root` it is
    returned relative to it (and must lie inside it), without one the file's bytes are embedded.
    BadRow when there is no usable image (inside `text_only()`: the text "missing image: ..." instead)."""
    try:
        return _image_entry(cell, base, root)
    except BadRow as e:
        if _TEXT_ONLY.get() and str(e).startswith("missing image"):
            return str(e)
        raise


def _image_entry(cell: Any, base: Path | None, root: Path | None) -> str | bytes:
    if cell is None:
        raise BadRow("missing image")
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
        if not cell:
            raise BadRow("missing image")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        if not len(cell):
            raise BadRow("missing image: zero bytes")
        return bytes(cell)
    if hasattr(cell, "save") and hasattr(cell, "mode"):  # a PIL image (hub rows decoded elsewhere)
        buf = io.BytesIO()
        cell.save(buf, format="PNG")
        return buf.getvalue()
    if not isinstance(cell, (str, os.PathLike)):
        raise BadRow(f"missing image: a {type(cell).__name__} cell")
    s = str(cell)
    if s.startswith(("http://", "https://", "data:image")):
        return s  # the image pipeline refuses or fetches it
    p = Path(s)
    full = p if p.is_absolute() else (base or root or Path(".")) / p
    if not full.is_file():
        raise BadRow(f"missing image: {s} not found" + (f" under {base or root}" if (base or root) else ""))
    if root is None:
        return full.read_bytes()
    try:
        return full.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise BadRow(f"missing image: {s} lies outside the dataset root {root}") from None


_PLACEHOLDER = re.compile(r"<image\s*(\d*)>", re.IGNORECASE)


def interleaved_prompt(body: str, images: Mapping[str, str | bytes], *, unknown: str = "error"
                       ) -> tuple[list[dict[str, Any]], list[str | bytes]]:
    """One user turn with an image slot where each placeholder sits, and the images in slot order.

    `images` maps a placeholder's number ("1" for `<image 1>` / `<image1>`) to its image. A numbered
    placeholder gets a slot at its first mention (later mentions stay as text: they refer back); bare
    `<image>` tokens take images "1", "2", ... in order. Images no placeholder names go before the text,
    as `user_prompt` places them. A placeholder naming an image that is not there is a BadRow, or with
    `unknown="text"` stays in the text as written (MATH-V: `<image2>` ... name parts of one merged picture)."""
    if unknown not in ("error", "text"):
        raise ValueError(f"unknown={unknown!r}: expected 'error' or 'text'")
    content: list[dict[str, Any]] = []
    slots: list[str | bytes] = []
    used: set[str] = set()
    bare, pos = 0, 0
    pieces: list[tuple[str, str | None]] = []
    for m in _PLACEHOLDER.finditer(body):
        if m.group(1):
            key = m.group(1)
            if key in used:
                continue  # a back reference: keep it as text
        else:
            bare += 1
            key = str(bare)
        if key not in images:
            if unknown == "text":
                continue
            raise BadRow(f"missing image: the text names {m.group(0)!r} but the row has no image {key}")
        pieces.append((body[pos:m.start()], key))
        used.add(key)
        pos = m.end()
    pieces.append((body[pos:], None))
    for key in images:
        if key not in used:
            content.append({"type": "image"})
            slots.append(images[key])
    for chunk, key in pieces:
        if chunk.strip():
            content.append({"type": "text", "text": chunk.strip()})
        if key is not None:
            content.append({"type": "image"})
            slots.append(images[key])
    return [{"role": "user", "content": content}], slots


# --------------------------------------------------------------------------------------------- options
LETTERS = string.ascii_uppercase


def parse_options(value: Any) -> list[str]:
    """Option texts from a list cell or its string repr ("['1', '2']", MMMU's form); BadRow otherwise."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip() or "[]")
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise BadRow(f"unparsable options: {value[:80]!r}") from None
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int, float)) for v in value):
        raise BadRow(f"unparsable options: {str(value)[:80]!r}")
    if len(value) > len(LETTERS):
        raise BadRow(f"unparsable options: {len(value)} options")
    return [str(v).strip() for v in value]


_OPTION_LINE = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])\s*[.:：)．、])\s*(.*?)\s*$")
_OPTION_INLINE = re.compile(r"(?:^|(?<=\s))(?:\(([A-Z])\)|([A-Z])[.:：．])\s*")


def inline_options(body: str) -> list[str] | None:
    """The option texts written into a question ("A. 3\\nB. 4", "A:3", "(A) 3", or all on one line),
    A first and in order; None when the text holds no run of at least two options."""
    found: list[str] = []
    for line in body.splitlines():
        m = _OPTION_LINE.match(line)
        if m and len(found) < len(LETTERS) and (m.group(1) or m.group(2)) == LETTERS[len(found)]:
            found.append(m.group(3))
        elif m and (m.group(1) or m.group(2)) == "A":
            found = [m.group(3)]  # a later run starting again at A wins
    if len(found) >= 2:
        return found
    marks = [(m, m.group(1) or m.group(2)) for m in _OPTION_INLINE.finditer(body)]
    run: list[re.Match[str]] = []
    for m, letter in marks:
        if len(run) < len(LETTERS) and letter == LETTERS[len(run)]:
            run.append(m)
        elif letter == "A":
            run = [m]
    if len(run) < 2:
        return None
    ends = [m.start() for m in run[1:]] + [len(body)]
    return [body[m.end():end].strip() for m, end in zip(run, ends)]


def format_options(options: list[str]) -> str:
    """"A. first\\nB. second" for a prompt."""
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


_LETTER_GOLD = re.compile(r"[(\[]?([A-Z])[)\].]?")


def gold_letters(answer: str, options: list[str] | None, n_options: int | None = None) -> list[str]:
    """The option letters a multiple-choice gold names, in order: "C", "(C)", "C." -> ["C"]; an option's
    text ("False", "090^\\circ T") -> its letter; several letters ("A, C", "C\\nD", "A and C") -> each.
    Letters must lie within the options (or the first `n_options` letters when the options are not known).
    BadRow ("bad answer: ...") when the gold is none of these."""
    n = len(options) if options else (n_options or len(LETTERS))
    text = answer.strip()
    whole = _LETTER_GOLD.fullmatch(text)
    if whole and LETTERS.index(whole.group(1)) < n:
        return [whole.group(1)]
    folded = " ".join(text.split()).lower()
    named = [i for i, o in enumerate(options or []) if " ".join(o.split()).lower() == folded]
    if len(named) == 1:
        return [LETTERS[named[0]]]
    parts = [p for p in re.split(r"\s*(?:,|;|\n|\band\b|&)\s*|\s+", text) if p]
    picks = [m.group(1) for m in map(_LETTER_GOLD.fullmatch, parts) if m]
    if len(parts) > 1 and len(picks) == len(parts) and all(LETTERS.index(p) < n for p in picks):
        return picks
    raise BadRow(f"bad answer: {answer[:40]!r} is neither an option letter (of {n}), nor option letters, "
                 "nor an option's text")
