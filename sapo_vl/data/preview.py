"""`recipe preview`: what the model will see, as a contact sheet PNG and an HTML page.

Images are shown after the image pipeline (RGB, resized by Qwen's rules), so the sizes and token counts
are the ones training uses. A record that cannot be used appears as a red cell with its reason.

    out/contact_sheet.png   a grid: each cell an image with its id, question and answer underneath
    out/index.html          every record: its images, the full prompt messages, answer, verifier, sizes
    out/images/<k>_<j>.png  the images the page shows (.jpg where the source was a JPEG kept as is)
"""
from __future__ import annotations

import html
import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from sapo_vl.data.build import BadRecord, prepare
from sapo_vl.data.images import ImageConfig, image_tokens
from sapo_vl.data.recipe import Recipe, Skip
from sapo_vl.data.synth import font

CELL, TEXT_H, COLS = 256, 84, 4
JPEG_MAGIC = b"\xff\xd8"


def _prompt_text(prompt: list[dict[str, Any]]) -> str:
    parts = []
    for m in prompt:
        content = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        body = " ".join("[image]" if c.get("type") == "image" else str(c.get("text", "")) for c in content)
        parts.append(f"{m['role']}: {body}")
    return "\n".join(parts)


def _question(prompt: list[dict[str, Any]]) -> str:
    texts = [c.get("text", "") for m in prompt if m["role"] == "user"
             for c in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
             if c.get("type", "text") == "text"]
    return " ".join(texts)


def preview(recipe: Recipe, out_dir: str | Path, *, n: int = 16, split: str | None = None, seed: int = 0,
            root: str | Path | None = None, options: dict[str, Any] | None = None,
            config: ImageConfig = ImageConfig()) -> tuple[Path, Path]:
    """Write contact_sheet.png and index.html for the first `n` records; returns their paths."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cells, cards = [], []
    for k, item in enumerate(recipe.records(split, seed=seed, limit=n, root=root, **(options or {}))):
        rid = str(getattr(item, "id", f"#{k}"))
        try:
            if isinstance(item, Skip):
                raise BadRecord(f"skipped by the recipe: {item.reason}")
            rec, sizes = prepare(item, root=root, config=config)
        except BadRecord as e:
            cells.append((None, rid, str(e), ""))
            cards.append(f"<div class='card bad'><h3>{html.escape(rid)}</h3><p>{html.escape(str(e))}</p></div>")
            continue
        imgs = []
        for j, data in enumerate(rec.images):
            ext = "jpg" if data[:2] == JPEG_MAGIC else "png"
            path = out / "images" / f"{k:04d}_{j}.{ext}"
            path.write_bytes(data)
            imgs.append(path)
        cells.append((imgs[0] if imgs else None, rid, _question(rec.prompt), rec.answer))
        dims = ", ".join(f"{w}x{h} = {image_tokens(h, w, config.factor)} tokens" for h, w in sizes)
        tags = "".join(f"<img src='images/{p.name}'>" for p in imgs)
        cards.append(
            f"<div class='card'><h3>{html.escape(rec.id)}</h3>{tags}"
            f"<pre>{html.escape(_prompt_text(rec.prompt))}</pre>"
            f"<p><b>answer</b> <code>{html.escape(rec.answer)}</code> &middot; "
            f"verifier <code>{html.escape(rec.verifier)}</code> {html.escape(str(rec.verifier_params or ''))} "
            f"&middot; images: {html.escape(dims or 'none')}</p></div>")
    sheet_path, page_path = out / "contact_sheet.png", out / "index.html"
    _contact_sheet(cells).save(sheet_path)
    page_path.write_text(
        "<!doctype html><meta charset='utf-8'>"
        f"<title>{html.escape(recipe.name)} preview</title>"
        "<style>body{font-family:sans-serif;margin:1em}.card{border:1px solid #ccc;padding:.5em;margin:.5em 0}"
        ".bad{background:#fdd}img{max-width:512px;margin-right:.5em;border:1px solid #eee}"
        "pre{white-space:pre-wrap;background:#f7f7f7;padding:.4em}</style>"
        f"<h1>{html.escape(recipe.name)}</h1><p>{html.escape(recipe.description)}<br>domain {recipe.domain} &middot; "
        f"source {html.escape(recipe.source)} &middot; verifier {recipe.verifier} &middot; "
        f"split {split or recipe.default_split}, seed {seed}</p>"
        + "\n".join(cards), encoding="utf-8")
    return sheet_path, page_path


def _contact_sheet(cells: list[tuple[Path | None, str, str, str]]) -> Image.Image:
    """Grid of CELL x CELL thumbnails with id, question (wrapped) and answer below each."""
    cols = max(1, min(COLS, len(cells)))
    rows = max(1, -(-len(cells) // cols))
    sheet = Image.new("RGB", (cols * CELL, rows * (CELL + TEXT_H)), (255, 255, 255))
    draw, f = ImageDraw.Draw(sheet), font(11)
    for k, (img_path, rid, question, answer) in enumerate(cells):
        x, y = (k % cols) * CELL, (k // cols) * (CELL + TEXT_H)
        if img_path is None:
            draw.rectangle([x + 2, y + 2, x + CELL - 3, y + CELL - 3], fill=(250, 210, 210))
        else:
            with Image.open(img_path) as im:
                im = im.convert("RGB")
                im.thumbnail((CELL - 4, CELL - 4))
                sheet.paste(im, (x + (CELL - im.width) // 2, y + (CELL - im.height) // 2))
        lines = [rid] + textwrap.wrap(question, 42)[:3] + ([f"answer: {answer}"] if answer else [])
        for j, line in enumerate(lines[:6]):
            draw.text((x + 4, y + CELL + 2 + 13 * j), line, fill=(0, 0, 0) if answer else (180, 0, 0), font=f)
    return sheet
