"""Fixtures for the real-recipe tests: tiny copies of each public dataset, written in its own schema.

Each test writes 3-6 rows (real PNGs drawn by PIL, plus one or two malformed rows) as the hub stores them
(parquet through `datasets` features, so image columns are `{"bytes", "path"}` structs, class labels ints),
runs the recipe on the local copy with `path=` (or `root=`), and checks what comes out with `kit.check`.
No test touches the network.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from sapo_vl.data.recipe import Skip, get_recipe
from sapo_vl.data.record import Record


class Kit:
    """Helpers shared by the recipe tests (a fixture, so test files need no imports from here)."""

    @staticmethod
    def png(color: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (48, 32)) -> bytes:
        """A real PNG: a coloured rectangle on white."""
        img = Image.new("RGB", size, (255, 255, 255))
        ImageDraw.Draw(img).rectangle([4, 4, size[0] - 5, size[1] - 5], fill=color)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    @staticmethod
    def image(color: tuple[int, int, int] = (200, 40, 40)) -> dict[str, Any]:
        """An image cell as HF parquet holds it."""
        return {"bytes": Kit.png(color), "path": None}

    @staticmethod
    def parquet(path: Path, rows: list[dict[str, Any]], features: dict[str, Any]) -> Path:
        """Write `rows` with HF `features` ({"col": datasets.Value("string"), ...}) as a parquet file."""
        import datasets

        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows, features=datasets.Features(features)).to_parquet(str(path))
        return path

    @staticmethod
    def jsonl(path: Path, rows: list[Any]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        return path

    @staticmethod
    def run(name: str, split: str, **options: Any) -> tuple[list[Record], list[Skip]]:
        """All of a recipe's output, split into records and skips."""
        out = list(get_recipe(name).records(split, **options))
        assert all(isinstance(x, (Record, Skip)) for x in out)
        return [x for x in out if isinstance(x, Record)], [x for x in out if isinstance(x, Skip)]

    @staticmethod
    def check(records: list[Record], name: str, split: str, root: Path | None = None) -> None:
        """What every real record must satisfy: unique ids under "<name>/<split>/", images that open (bytes,
        or files under `root`), one prompt slot per image, a non-empty answer that passes its own verifier."""
        ids = [r.id for r in records]
        assert len(set(ids)) == len(ids) and all(i.startswith(f"{name}/{split}/") for i in ids)
        for r in records:
            assert r.split == split and r.answer.strip()
            slots = sum(c.get("type") == "image" for m in r.prompt for c in m["content"])
            assert slots == len(r.images)
            assert "<answer>" in r.prompt[-1]["content"][-1]["text"]  # the answer format is asked for, last
            for src in r.images:
                data = src if isinstance(src, bytes) else (root / src).read_bytes()
                assert root is None or isinstance(src, bytes) or not Path(src).is_absolute()
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
            json.dumps(r.to_dict(), default=lambda b: "<bytes>")  # storable
        Kit.self_check(records)

    @staticmethod
    def self_check(records: list[Record]) -> None:
        """The ground truth, fed back as `<answer>{answer}</answer>`, scores 1 with the record's own verifier."""
        verifiers = pytest.importorskip("sapo_vl.verifiers")
        if not hasattr(verifiers, "score"):
            pytest.skip("sapo_vl.verifiers.score not available yet")
        for r in records:
            result = verifiers.score(r.verifier, f"<answer>{r.answer}</answer>", r.answer, **r.verifier_params)
            assert result.score == 1.0, (r.id, r.verifier, r.answer, r.verifier_params, result)

    @staticmethod
    def cli_check(name: str, split: str, root: Path | None = None, **options: Any) -> int:
        """Exit status of `sapo-vl recipe check NAME --split SPLIT [--root R] -o key=value ...` (0: all usable)."""
        from sapo_vl.data.cli import main

        argv = ["recipe", "check", name, "--split", split] + (["--root", str(root)] if root else [])
        return main(argv + [a for k, v in options.items() for a in ("-o", f"{k}={v}")])

    @staticmethod
    def text(record: Record) -> str:
        """All the text of a record's prompt, joined."""
        return " ".join(c["text"] for m in record.prompt for c in m["content"] if c.get("type") == "text")

    @staticmethod
    def layout(record: Record) -> list[str]:
        """The user turn's content as "image" / "text" items, in order."""
        return [c["type"] for c in record.prompt[-1]["content"]]


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
