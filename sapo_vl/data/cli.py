"""`sapo-vl recipe list | preview | check | build`: the recipe authoring commands.

`add_recipe_commands(subparsers)` adds the `recipe` command to the `sapo-vl` argparse entry point; each
leaf sets `func(args) -> int` (the exit status). `python -m sapo_vl.data.cli recipe ...` runs them alone.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sapo_vl.data.images import ImageConfig
from sapo_vl.data.recipe import Recipe, RecipeError, coerce_option, get_recipe, list_recipes, load_file

NAME_HELP = "a recipe name from `sapo-vl recipe list`, or a path to your own recipe file (my_recipe.py)"


def _common(p: argparse.ArgumentParser, *, split_default: str | None = None) -> None:
    default = split_default or "the recipe's first split"
    p.add_argument("--split", default=split_default, help=f"split to read (default: {default})")
    p.add_argument("--seed", type=int, default=0, help="seed for synthetic recipes and sampling (default: 0)")
    p.add_argument("--root", default=None, help="dataset root that image paths are relative to (and confined to)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe option (difficulty knob, size...), repeatable; see the recipe's records() docstring")
    g = p.add_argument_group("images")
    d = ImageConfig()
    g.add_argument("--min-pixels", type=int, default=d.min_pixels,
                   help=f"least pixels after resize (default: {d.min_pixels})")
    g.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help=f"most pixels after resize (default: {d.max_pixels})")
    g.add_argument("--max-source-pixels", type=int, default=d.max_source_pixels,
                   help=f"refuse larger source images (decompression-bomb guard; default: {d.max_source_pixels})")
    g.add_argument("--allow-urls", action="store_true", help="fetch http(s) images (refused by default)")


def _config(args: argparse.Namespace) -> ImageConfig:
    return ImageConfig(min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                       max_source_pixels=args.max_source_pixels, allow_urls=args.allow_urls)


def _options(recipes: list[Recipe], pairs: list[str]) -> list[dict[str, Any]]:
    """Per recipe, the -o KEY=VALUE options it declares (each key must be declared by at least one)."""
    per: list[dict[str, Any]] = [{} for _ in recipes]
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise RecipeError(f"option {pair!r}: expected KEY=VALUE")
        takers = [k for k, r in enumerate(recipes) if key in r.options]
        if not takers:
            known = sorted({o for r in recipes for o in r.options})
            raise RecipeError(f"no recipe here has option {key!r}; options: {', '.join(known) or '(none)'}")
        for k in takers:
            per[k][key] = coerce_option(recipes[k], key, value)
    return per


def cmd_list(args: argparse.Namespace) -> int:
    recipes = list_recipes() + [load_file(p) for p in args.paths]
    rows = [("NAME", "DOMAIN", "VERIFIER", "SOURCE", "DESCRIPTION")]
    rows += [(r.name, r.domain, r.verifier, r.source, r.description) for r in recipes]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    if args.options:
        for r in recipes:
            opts = ", ".join(f"{k}={v!r}" for k, v in r.options.items()) or "(none)"
            print(f"\n{r.name} ({r.path}): splits {', '.join(r.splits or ['?'])}\n  options: {opts}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from sapo_vl.data.preview import preview

    recipe = get_recipe(args.name)
    out = Path(args.out or Path("runs/preview") / recipe.name)
    sheet, page = preview(recipe, out, n=args.n, split=args.split or recipe.default_split, seed=args.seed,
                          root=args.root, options=_options([recipe], args.option)[0], config=_config(args))
    print(f"wrote {sheet}\nwrote {page}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from sapo_vl.data.check import CheckSettings, check, format_report

    recipe = get_recipe(args.name)
    settings = CheckSettings(image_config=None if args.text_only else _config(args),
                             max_prompt_tokens=args.max_prompt_tokens, processor=args.processor)
    report = check(recipe, split=args.split or recipe.default_split, seed=args.seed, limit=args.limit, root=args.root,
                   options=_options([recipe], args.option)[0], settings=settings)
    print(format_report(report))
    return 0 if report.ok else 1


def cmd_build(args: argparse.Namespace) -> int:
    from sapo_vl.data.build import BuildSettings, Mix, build, parse_mix, summary

    mixes = [parse_mix(s) for s in args.recipes]
    recipes = [get_recipe(m.recipe) for m in mixes]
    mixes = [Mix(m.recipe, m.weight, o, args.root) for m, o in zip(mixes, _options(recipes, args.option))]
    settings = BuildSettings(limit=args.limit, seed=args.seed, split=args.split, shard_size=args.shard_size,
                             image_config=_config(args))
    manifest = build(mixes, args.out, settings, overwrite=args.overwrite,
                     log=None if args.quiet else lambda line: print(line, file=sys.stderr))
    print(summary(manifest))
    print(f"manifest: {Path(args.out) / 'manifest.json'}")
    return 1 if any(st.get("error") for st in manifest["recipes"]) else 0


def _run(func):
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (RecipeError, ValueError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return wrapped


def add_recipe_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `recipe list|preview|check|build` to an argparse subparsers object; returns the `recipe` parser."""
    recipe = subparsers.add_parser("recipe", help="list, preview, check and build data recipes",
                                   description="Data recipes: one file per source in data_recipes/ (or your own "
                                               "file). Start from data_recipes/_template.py.")
    sub = recipe.add_subparsers(dest="recipe_command", metavar="{list,preview,check,build}", required=True)

    p = sub.add_parser("list", help="names, domains, verifiers and sources of the shipped recipes",
                       description="List the shipped recipes (and any recipe files given).")
    p.add_argument("paths", nargs="*", help="extra recipe files to list")
    p.add_argument("--options", action="store_true", help="also list each recipe's options and their defaults")
    p.set_defaults(func=_run(cmd_list))

    p = sub.add_parser("preview", help="contact sheet PNG + HTML page of a recipe's records",
                       description="Write a contact sheet (PNG) and an HTML page of the first N records, images as "
                                   "the model sees them, with their prompts and answers.")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--n", type=int, default=16, help="records to show (default: 16)")
    p.add_argument("--out", default=None, help="output folder (default: runs/preview/<name>)")
    _common(p)
    p.set_defaults(func=_run(cmd_preview))

    p = sub.add_parser("check", help="check every record: images, verifier, tokens, duplicates",
                       description="Check that every image opens, every answer passes its own verifier as a perfect "
                                   "response, prompts fit the token budget and nothing is duplicated; rows kept, "
                                   "skipped (by reason) and failing their own verifier are counted against the "
                                   "split's published size. Exit status 1 on any failure.")
    p.add_argument("name", help=NAME_HELP)
    p.add_argument("--limit", type=int, default=None, help="check only the first N records (default: all)")
    p.add_argument("--max-prompt-tokens", type=int, default=2048,
                   help="prompt budget, image tokens included (default: 2048)")
    p.add_argument("--processor", default=None,
                   help="local processor/tokenizer folder for exact text token counts (default: estimate)")
    p.add_argument("--text-only", action="store_true",
                   help="check a release's rows, golds and options without its image files (images and image "
                        "tokens are not checked); prints kept / skipped / self-check failures against the "
                        "split's published size")
    _common(p)
    p.set_defaults(func=_run(cmd_check))

    p = sub.add_parser("build", help="build parquet shards + manifest from weighted recipes",
                       description="Build a training set from one or more recipes mixed by weight "
                                   "(NAME:WEIGHT, weights share --limit). Resumable: rerun the same command "
                                   "after an interruption. Bad records are skipped and listed, never fatal.")
    p.add_argument("recipes", nargs="+", metavar="NAME[:WEIGHT]", help=NAME_HELP + ", with an optional weight")
    p.add_argument("--out", required=True, help="output folder (gets manifest.json and data/*.parquet)")
    p.add_argument("--limit", type=int, default=None, help="records in the whole set (default: every record)")
    p.add_argument("--shard-size", type=int, default=512, help="records per parquet shard (default: 512)")
    p.add_argument("--overwrite", action="store_true", help="start again in a folder holding another build")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _common(p, split_default="train")
    p.set_defaults(func=_run(cmd_build))
    return recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sapo-vl")
    add_recipe_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
