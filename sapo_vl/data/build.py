"""Build a training set: recipes mixed by weight into parquet shards, with a manifest; and load it back.

Layout of `out_dir`:
    manifest.json                 settings, per-recipe status, chunks (shards with sha256), skipped records
    data/<recipe>-00000.parquet   one shard per `shard_size` records of one recipe

Images are stored inside the parquet as encoded bytes of the image after the pipeline (RGB, EXIF applied,
resized by Qwen's rules): the source bytes when they already are that image (an RGB PNG or JPEG at a
valid size), else a new PNG. A built set is self-contained and already checked. Columns: id, recipe, prompt (JSON),
answer, images (list of PNG/JPEG bytes), verifier, verifier_params (JSON), domain, source, split, meta (JSON).

Mixing: `limit` is the size of the whole set; recipe i gets round(limit * w_i / sum(w)) good records
(largest remainder), read from the start of its stream; bad records do not count. Without `limit`, every
recipe contributes all its records and the weights are only recorded. A recipe that runs out before its
quota is reported as short; `load_built(..., shuffle_seed=s)` interleaves the recipes.

Resume: the manifest is rewritten atomically after every shard. A rerun with the same settings keeps the
shards already written (checked by sha256), fast-forwards each recipe's stream to where its last chunk
ended and goes on; a finished build is returned as it is. This needs recipes that yield the same records
in the same order for the same settings (all shipped ones do). Other settings in the same folder are an
error (pass overwrite=True / --overwrite to start again). `elapsed_s` counts the runs that finished.

Bad input never ends a build: a record whose image, answer or prompt is unusable is skipped, counted and
named with its reason; a recipe that raises stops that recipe only (its error is reported); the rest go on.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from sapo_vl.data.images import BadImage, ImageConfig, prepare_image
from sapo_vl.data.jsonio import write_json
from sapo_vl.data.recipe import Recipe, Skip, get_recipe
from sapo_vl.data.record import Record

FORMAT = 1
SCHEMA = pa.schema([("id", pa.string()), ("recipe", pa.string()), ("prompt", pa.string()), ("answer", pa.string()),
                    ("images", pa.list_(pa.binary())), ("verifier", pa.string()), ("verifier_params", pa.string()),
                    ("domain", pa.string()), ("source", pa.string()), ("split", pa.string()), ("meta", pa.string())])


class BuildError(RuntimeError):
    """A build that cannot start or be loaded (unknown recipe, other settings in the folder, incomplete)."""


class BadRecord(ValueError):
    """One record that cannot be stored; the build skips it with this reason."""


@dataclass(frozen=True)
class Mix:
    recipe: str
    """A recipe name, or a path to a recipe file."""
    weight: float = 1.0
    """Share of `limit` relative to the other recipes' weights."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword options passed to the recipe's `records` (difficulty knobs, size)."""
    root: str | None = None
    """Dataset root the recipe's image paths are relative to (and confined to)."""


def parse_mix(spec: str) -> Mix:
    """"name" or "name:weight" (also "path/to/recipe.py:2") as a Mix."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            return Mix(spec)
        if not weight > 0:
            raise BuildError(f"{spec!r}: weight must be positive")
        return Mix(head, weight)
    return Mix(spec)


def quotas(weights: list[float], limit: int | None) -> list[int | None]:
    """Split `limit` by weight with the largest-remainder rule (quotas sum to `limit`); None without limit."""
    if limit is None:
        return [None] * len(weights)
    total = sum(weights)
    exact = [limit * w / total for w in weights]
    q = [int(e) for e in exact]
    for k in sorted(range(len(q)), key=lambda k: q[k] - exact[k])[: limit - sum(q)]:
        q[k] += 1
    return q


def _text(value: Any, what: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRecord(f"{what} is not valid UTF-8") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadRecord(f"{what} is a {type(value).__name__}, not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord(f"{what} is not valid UTF-8 (undecodable bytes)") from None
    return value


def prepare(item: Any, *, root: str | Path | None = None, config: ImageConfig = ImageConfig(),
            load_images: bool = True) -> tuple[Record, list[tuple[int, int]]]:
    """A record ready to store, images as encoded bytes through the pipeline, and each image's (h, w);
    BadRecord naming the reason when any part is unusable. `load_images=False` leaves the images as they
    are and returns no sizes (`recipe check --text-only`)."""
    if isinstance(item, dict):
        try:
            item = Record.from_dict(item)
        except (TypeError, ValueError) as e:
            raise BadRecord(f"not a valid record: {e}") from e
    if not isinstance(item, Record):
        raise BadRecord(f"recipe yielded a {type(item).__name__}, not a Record")
    if not isinstance(item.id, str) or not item.id.strip():
        raise BadRecord("empty id")
    answer = _text(item.answer, "answer")
    if not answer.strip():
        raise BadRecord("empty answer")
    for what, value in (("prompt", item.prompt), ("verifier_params", item.verifier_params), ("meta", item.meta)):
        try:
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as e:
            raise BadRecord(f"{what} is not JSON text: {e}") from e
    if not load_images:
        return replace(item, answer=answer), []
    images, sizes = [], []
    for src in item.images:
        try:
            data, h, w = prepare_image(src, root, config)
        except BadImage as e:
            raise BadRecord(str(e)) from e
        images.append(data)
        sizes.append((h, w))
    return replace(item, answer=answer, images=images), sizes


def _row(rec: Record, recipe: str) -> dict[str, Any]:
    dump = lambda v: json.dumps(v, ensure_ascii=False, default=str)  # noqa: E731
    return {"id": rec.id, "recipe": recipe, "prompt": dump(rec.prompt), "answer": rec.answer, "images": rec.images,
            "verifier": rec.verifier, "verifier_params": dump(rec.verifier_params), "domain": rec.domain,
            "source": rec.source, "split": rec.split, "meta": dump(rec.meta)}


def _from_row(row: dict[str, Any]) -> Record:
    return Record(id=row["id"], prompt=json.loads(row["prompt"]), answer=row["answer"], images=list(row["images"]),
                  verifier=row["verifier"], verifier_params=json.loads(row["verifier_params"]),
                  domain=row["domain"], source=row["source"], split=row["split"], meta=json.loads(row["meta"]))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


@dataclass(frozen=True)
class BuildSettings:
    """What a build is made of besides its recipes; stored in the manifest, and a resume must match them."""

    limit: int | None = None
    """Records in the whole set, shared by weight; None: every record of every recipe."""
    seed: int = 0
    """Passed to every recipe (synthetic data)."""
    split: str = "train"
    """The split every recipe reads."""
    shard_size: int = 512
    """Records per parquet shard (the manifest is rewritten after each)."""
    image_config: ImageConfig = ImageConfig()
    """The image pipeline (pixel bounds) the stored images went through."""


def build(mixes: Iterable[Mix | str | tuple], out_dir: str | Path, settings: BuildSettings = BuildSettings(), *,
          overwrite: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build (or resume) a mixed training set in `out_dir`; returns the manifest (also in manifest.json)."""
    mixes = [m if isinstance(m, Mix) else parse_mix(m) if isinstance(m, str) else Mix(*m) for m in mixes]
    recipes = [get_recipe(m.recipe) for m in mixes]
    names = [r.name for r in recipes]
    if not mixes or len(set(names)) != len(names):
        raise BuildError(f"need one or more distinct recipes, got {names}")
    if settings.limit is not None and settings.limit < 0:
        raise BuildError("limit must be >= 0")
    for r, m in zip(recipes, mixes):  # unknown split or option: fail now, not halfway
        r.records(settings.split, seed=settings.seed, root=m.root, **m.options)
    stored = json.loads(json.dumps({
        "format": FORMAT, "split": settings.split, "seed": settings.seed, "limit": settings.limit,
        "shard_size": settings.shard_size, "image_config": asdict(settings.image_config),
        "recipes": [{"recipe": m.recipe, "name": r.name, "weight": m.weight, "options": m.options,
                     "root": str(m.root) if m.root else None, "quota": q}
                    for m, r, q in zip(mixes, recipes, quotas([m.weight for m in mixes], settings.limit))]}))
    out = Path(out_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    man_path = out / "manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.exists() and not overwrite else None
    if manifest is not None and manifest.get("settings") != stored:
        old = manifest.get("settings", {})
        diff = [k for k in stored if old.get(k) != stored[k]]
        raise BuildError(f"{out} holds a build with other settings ({', '.join(diff)}); "
                         "use another --out or --overwrite")
    if manifest is not None and manifest["complete"]:
        return manifest
    if manifest is None:
        for p in (out / "data").glob("*.parquet"):
            p.unlink()
        manifest = {"settings": stored, "complete": False, "elapsed_s": 0.0, "chunks": [],
                    "recipes": [{"name": n, "done": False, "error": None} for n in names]}
    else:
        _keep_intact_chunks(manifest, out)
    for p in (out / "data").glob("*.tmp"):
        p.unlink()
    seen = {i for c in manifest["chunks"] if c["file"]
            for i in pq.read_table(out / c["file"], columns=["id"])["id"].to_pylist()}
    shards = _Shards(out, manifest, seen, settings, log)
    started = time.perf_counter()
    for recipe, mix, st, rs in zip(recipes, mixes, manifest["recipes"], stored["recipes"]):
        if not st["done"]:
            shards.fill(recipe, mix, rs["quota"], st)
            write_json(man_path, manifest)
    manifest["elapsed_s"] = round(manifest["elapsed_s"] + time.perf_counter() - started, 3)
    _finish(manifest)
    write_json(man_path, manifest)
    return manifest


def _keep_intact_chunks(manifest: dict, out: Path) -> None:
    """Resume: keep each recipe's chunks up to the first missing or altered shard; that recipe goes on from there."""
    kept, broken = [], set()
    for c in manifest["chunks"]:
        ok = c["file"] is None or ((out / c["file"]).is_file() and _sha256(out / c["file"]) == c["sha256"])
        if c["recipe"] in broken or not ok:
            broken.add(c["recipe"])
            continue
        kept.append(c)
    manifest["chunks"] = kept
    for st in manifest["recipes"]:
        if st["name"] in broken:
            st.update(done=False, error=None)


@dataclass
class _Shards:
    """Where a build writes: its folder, its manifest (rewritten after every shard) and the ids stored so far."""

    out: Path
    manifest: dict
    seen: set[str]
    settings: BuildSettings
    log: Callable[[str], None] | None = None

    def fill(self, recipe: Recipe, mix: Mix, quota: int | None, st: dict) -> None:
        """Stream one recipe into shards from where its last chunk ended, updating its status `st`."""
        split, shard_size = self.settings.split, self.settings.shard_size
        chunks = [c for c in self.manifest["chunks"] if c["recipe"] == recipe.name]
        position = chunks[-1]["end"] if chunks else 0
        written = sum(c["records"] for c in chunks)
        rows: list[dict] = []
        skipped: list[dict] = []
        try:
            stream = recipe.records(split, seed=self.settings.seed, root=mix.root, **mix.options)
            for _ in range(position):  # resume: fast-forward past what the kept chunks cover
                next(stream)
            while quota is None or written < quota:
                try:
                    item = next(stream)
                except StopIteration:
                    break
                position += 1
                item_id = str(getattr(item, "id", f"{recipe.name}/{split}/#{position - 1}"))
                try:
                    if isinstance(item, Skip):
                        raise BadRecord(item.reason)
                    rec, _ = prepare(item, root=mix.root, config=self.settings.image_config)
                    if rec.id in self.seen:
                        raise BadRecord("duplicate id")
                except BadRecord as e:
                    skipped.append({"id": item_id, "reason": str(e)})
                    continue
                self.seen.add(rec.id)
                rows.append(_row(rec, recipe.name))
                written += 1
                if len(rows) >= shard_size:
                    self.flush(recipe.name, rows, skipped, position, written)
                    rows, skipped = [], []
        except StopIteration:
            st["error"] = f"stream ended at {position} while resuming: the recipe yields fewer records than before"
        except Exception as e:  # a recipe bug stops that recipe only
            st["error"] = f"recipe stopped after reading {position}: {type(e).__name__}: {e}"
        if rows or skipped or not [c for c in self.manifest["chunks"] if c["recipe"] == recipe.name]:
            self.flush(recipe.name, rows, skipped, position, written)
        st["done"] = True

    def flush(self, recipe: str, rows: list[dict], skipped: list[dict], end: int, written: int) -> None:
        """Write `rows` as the recipe's next shard (none when empty) and add the chunk to the manifest."""
        index = sum(c["recipe"] == recipe for c in self.manifest["chunks"])
        name = f"data/{_safe(recipe)}-{index:05d}.parquet"
        entry = {"recipe": recipe, "file": None, "records": len(rows), "sha256": None, "end": end,
                 "skipped": skipped}
        if rows:
            tmp = self.out / (name + ".tmp")
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp)
            os.replace(tmp, self.out / name)
            entry.update(file=name, sha256=_sha256(self.out / name))
        self.manifest["chunks"].append(entry)
        write_json(self.out / "manifest.json", self.manifest)
        if self.log:
            self.log(f"{recipe}: {written} records, read {end}")


def _finish(manifest: dict) -> None:
    """Chunks in recipe order (as if never interrupted), per-recipe counts and totals."""
    order = [st["name"] for st in manifest["recipes"]]
    manifest["chunks"].sort(key=lambda c: (order.index(c["recipe"]), c["end"]))
    for st, rs in zip(manifest["recipes"], manifest["settings"]["recipes"]):
        mine = [c for c in manifest["chunks"] if c["recipe"] == st["name"]]
        st["records"] = sum(c["records"] for c in mine)
        st["skipped"] = sum(len(c["skipped"]) for c in mine)
        st["short"] = rs["quota"] is not None and st["records"] < rs["quota"]
    manifest["records"] = sum(st["records"] for st in manifest["recipes"])
    manifest["skipped"] = [dict(s, recipe=c["recipe"]) for c in manifest["chunks"] for s in c["skipped"]]
    manifest["complete"] = True
    rate = manifest["records"] / manifest["elapsed_s"] if manifest["elapsed_s"] else 0.0
    manifest["records_per_s"] = round(rate, 1)


def summary(manifest: dict, max_skipped: int = 20) -> str:
    """A table of recipes (weight, quota, records, skipped, status) and the first skipped records."""
    lines = [f"{'recipe':<28} {'weight':>6} {'quota':>7} {'records':>8} {'skipped':>8}  status"]
    for st, rs in zip(manifest["recipes"], manifest["settings"]["recipes"]):
        status = st.get("error") or ("short of quota" if st.get("short") else "ok")
        quota = "all" if rs["quota"] is None else rs["quota"]
        lines.append(f"{st['name']:<28} {rs['weight']:>6g} {quota:>7} {st.get('records', 0):>8} "
                     f"{st.get('skipped', 0):>8}  {status}")
    skipped = manifest.get("skipped", [])
    lines.append(f"total: {manifest.get('records', 0)} records, {len(skipped)} skipped, "
                 f"{manifest.get('records_per_s', 0)} records/s")
    for s in skipped[:max_skipped]:
        lines.append(f"  skipped {s['id']} ({s['recipe']}): {s['reason']}")
    if len(skipped) > max_skipped:
        lines.append(f"  ... and {len(skipped) - max_skipped} more (see manifest.json)")
    return "\n".join(lines)


def iter_built(out_dir: str | Path, *, verify: bool = False) -> Iterator[Record]:
    """Records of a finished build, shard by shard (`verify` re-checks each shard's sha256 first)."""
    out = Path(out_dir)
    man_path = out / "manifest.json"
    if not man_path.is_file():
        raise BuildError(f"{out}: no manifest.json; build it with `sapo-vl recipe build ... --out {out}`")
    manifest = json.loads(man_path.read_text())
    if not manifest.get("complete"):
        raise BuildError(f"{out}: the build is incomplete; rerun the same build command to finish it")
    for c in manifest["chunks"]:
        if c["file"] is None:
            continue
        if verify and _sha256(out / c["file"]) != c["sha256"]:
            raise BuildError(f"{out / c['file']}: sha256 differs from the manifest")
        for row in pq.read_table(out / c["file"]).to_pylist():
            yield _from_row(row)


def load_built(out_dir: str | Path, *, shuffle_seed: int | None = None, verify: bool = False) -> list[Record]:
    """All records of a finished build, in manifest order or shuffled with `shuffle_seed` (mixing recipes)."""
    recs = list(iter_built(out_dir, verify=verify))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(recs)
    return recs
