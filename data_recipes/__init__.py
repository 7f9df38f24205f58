"""Data recipes: one file per data source, each declaring NAME, DOMAIN, SOURCE, VERIFIER, DESCRIPTION,
PROMPT and a `records(split, *, seed, limit, root, **options)` generator (see sapo_vl/data/recipe.py).

`sapo-vl recipe list` shows them. To write a new one, copy `synthetic_color.py` (generated data) or
`_template.py` (your own image folder); files starting with `_` are not listed.
"""
