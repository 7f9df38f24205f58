"""Data: records, recipes, the image pipeline, building training sets, and the recipe CLI.

    record.py   Record (one prompt with images and ground truth) and user_prompt()
    recipe.py   the recipe registry: get_recipe(name or path), list_recipes(), Recipe.records(), Skip
    images.py   load_image(): path confinement, decoding guards, RGB, Qwen resize; BadImage; ImageConfig
    synth.py    helpers of the synthetic recipes (per-record random streams, colours, fonts)
    build.py    build(mixes, out_dir) -> parquet shards + manifest.json, resumable; load_built(out_dir)
    sources.py  load_rows(hub id or local copy) and the row helpers the real recipes share
    check.py    check(recipe) behind `sapo-vl recipe check` (--text-only: a release's rows without images)
    jsonio.py   write_json(): the one atomic JSON writer (manifest.json, summary.json, run.json)
    preview.py  preview(recipe, out_dir) behind `sapo-vl recipe preview`
    cli.py      add_recipe_commands(subparsers): `sapo-vl recipe list|preview|check|build`

The recipes themselves are files in data_recipes/. Modules are imported where used (nothing here), so
`import sapo_vl.data.record` stays light.
"""
