"""Recipe throughput: records per second for each synthetic recipe, generating and building.

    .venv/bin/python bench/bench_recipes.py [--n 300] [--plot bench_recipes.png]

`generate` times the recipe alone (drawing + PNG encoding); `build` times `sapo_vl.data.build.build`
end to end into a temporary folder: the image pipeline (decode, RGB, Qwen resize, PNG re-encode), the
checks and the parquet shards. One process, one core; the one-off import of qwen-vl-utils is done before
timing. Runs in well under a minute.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sapo_vl.data.build import BuildSettings, Mix, build
from sapo_vl.data.images import load_image
from sapo_vl.data.recipe import list_recipes
from sapo_vl.data.images import encode_png as png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="records per recipe")
    ap.add_argument("--plot", default=None, help="also save a bar chart of the figures to this PNG")
    args = ap.parse_args()
    from PIL import Image

    load_image(png(Image.new("RGB", (64, 64))))  # warm-up: imports qwen-vl-utils (torch) once
    rows = []
    for r in [r for r in list_recipes() if r.source.startswith("synthetic:")]:
        t = time.perf_counter()
        n_gen = sum(1 for _ in r.records("train", limit=args.n))
        gen = n_gen / (time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            m = build([Mix(r.name)], Path(out), BuildSettings(limit=args.n))
            built = m["records"] / (time.perf_counter() - t)
        rows.append((r.name, gen, built, m["records"]))
    print(f"{'recipe':<22} {'generate rec/s':>15} {'build rec/s':>12} {'records':>8}")
    for name, gen, built, n in rows:
        print(f"{name:<22} {gen:>15.0f} {built:>12.0f} {n:>8}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [g for _, g, _, _ in rows], 0.4, label="generate")
        ax.bar([x + 0.2 for x in xs], [b for _, _, b, _ in rows], 0.4, label="build")
        ax.set_xticks(list(xs), [n.removeprefix("synthetic_") for n, *_ in rows])
        ax.set_ylabel("records / s")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
