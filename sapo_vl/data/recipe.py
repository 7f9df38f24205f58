"""Recipes: one file per data source, found by name.

A recipe is a Python file, `data_recipes/<name>.py` for shipped ones or any path for your own, that
declares module-level metadata and one generator:

    NAME = "synthetic_color"          # equals the file name for shipped recipes
    DOMAIN = "reasoning"              # math | chart | reasoning
    SOURCE = "synthetic:color"        # hub dataset id, local path, or synthetic:<generator>
    VERIFIER = "exact"                # a name in sapo_vl.verifiers.VERIFIERS
    DESCRIPTION = "one line for `sapo-vl recipe list`"
    PROMPT = "What is ... {question}"  # the prompt template the records use
    SPLITS = ("train", "test")        # optional: splits `records` accepts
    SIZES = {"test": 3040}            # optional: published rows per split (or per `config` option value);
                                      # `recipe check` compares the rows it keeps with it

    def records(split="train", *, seed=0, limit=None, root=None, knob=default, ...) -> Iterator[Record]

Keyword arguments after `root` are the recipe's options (the data path, a subset, a flag); their defaults
are read from the signature, so `Recipe.options` lists them without a second table. A generator with many
knobs declares them instead as the fields of a frozen dataclass `Options` (one docstring per field) and
takes it whole:

    @dataclass(frozen=True)
    class Options:
        size: int | None = None           # each field followed by its docstring
        n_colors: int = 4

    def records(split="train", *, seed=0, limit=None, root=None, options: Options = Options()) -> ...

Either way the options are passed as `-o key=value` and checked by name. Copy
`data_recipes/synthetic_color.py` (generated data) or `data_recipes/_template.py` (your image folder)
to start a new one. Files whose name starts with `_` are not listed.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from sapo_vl.data.record import DOMAINS, Record
from sapo_vl.suggest import did_you_mean

REQUIRED = ("NAME", "DOMAIN", "SOURCE", "VERIFIER", "DESCRIPTION", "PROMPT", "records")
_FIXED_ARGS = ("split", "seed", "limit", "root")


class RecipeError(ValueError):
    """A recipe that cannot be found or loaded, or a bad option; the message says what to do."""


@dataclass(frozen=True)
class Skip:
    """Yield this from `records` for a source row that cannot become a record (bad JSON, missing field):
    build and check count it and name it in their summaries, and the recipe goes on with the next row."""

    id: str
    reason: str


@dataclass(frozen=True)
class Recipe:
    name: str
    domain: str
    source: str
    verifier: str
    description: str
    prompt: str
    """The prompt template, as declared in the file."""
    splits: tuple[str, ...] | None
    """Splits `records` accepts, or None when the recipe does not declare them."""
    sizes: dict[str, int]
    """Published rows per split, as the benchmark states them (empty when the recipe does not declare them)."""
    options: dict[str, Any]
    """Option name -> default, read from the signature of `records` (or the fields of the module's `Options`)."""
    path: Path
    module: ModuleType = field(repr=False, compare=False)

    @property
    def default_split(self) -> str:
        """The first declared split, else "train"."""
        return self.splits[0] if self.splits else "train"

    def records(self, split: str | None = None, *, seed: int = 0, limit: int | None = None,
                root: str | Path | None = None, **options: Any) -> Iterator[Record | Skip]:
        """The recipe's records (and Skips) of `split` (default: `default_split`), with split and option
        names checked first and `limit` enforced."""
        split = split or self.default_split
        if self.splits is not None and split not in self.splits:
            raise RecipeError(f"recipe {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        params = inspect.signature(self.module.records).parameters.values()
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params)
        for key in options:
            if key not in self.options and not accepts_any:
                raise RecipeError(f"recipe {self.name!r} has no option {key!r}{did_you_mean(key, self.options)}; "
                                  f"options: {', '.join(self.options) or '(none)'}")
        root = Path(root) if root is not None else None
        if hasattr(self.module, "Options"):  # the knobs travel as one dataclass
            options = {"options": self.module.Options(**options)}
        it = self.module.records(split, seed=seed, limit=limit, root=root, **options)
        return itertools.islice(it, limit) if limit is not None else iter(it)


def recipes_dir() -> Path:
    """The folder of shipped recipes: `data_recipes/` in the repository, installed as `sapo_vl.recipes`."""
    from .. import recipes

    return Path(recipes.__file__).resolve().parent


def recipe_names() -> list[str]:
    """Names of the shipped recipes (file stems, `_`-prefixed files excluded), sorted."""
    return sorted(p.stem for p in recipes_dir().glob("*.py") if not p.stem.startswith("_"))


def from_module(module: ModuleType, path: Path) -> Recipe:
    """Check a loaded module's metadata and wrap it as a Recipe; RecipeError naming what is missing."""
    missing = [k for k in REQUIRED if not hasattr(module, k)]
    if missing:
        raise RecipeError(f"{path}: not a recipe, missing {', '.join(missing)} (see data_recipes/_template.py)")
    if module.DOMAIN not in DOMAINS:
        raise RecipeError(f"{path}: DOMAIN {module.DOMAIN!r} is not one of {DOMAINS}")
    options = _options(module, path)
    splits = getattr(module, "SPLITS", None)
    sizes = getattr(module, "SIZES", None) or {}
    if not isinstance(sizes, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in sizes.items()):
        raise RecipeError(f"{path}: SIZES must map split names to row counts, got {sizes!r}")
    return Recipe(name=module.NAME, domain=module.DOMAIN, source=module.SOURCE, verifier=module.VERIFIER,
                  description=module.DESCRIPTION, prompt=module.PROMPT,
                  splits=tuple(splits) if splits is not None else None, sizes=dict(sizes), options=options,
                  path=path, module=module)


def _options(module: ModuleType, path: Path) -> dict[str, Any]:
    """Option name -> default: the fields of the module's `Options` dataclass, else the keyword arguments of
    `records` after the fixed ones."""
    params = inspect.signature(module.records).parameters
    if not hasattr(module, "Options"):
        return {k: p.default for k, p in params.items() if k not in _FIXED_ARGS and p.kind is p.KEYWORD_ONLY}
    if not dataclasses.is_dataclass(module.Options) or "options" not in params:
        raise RecipeError(f"{path}: Options must be a dataclass and `records` must take it as `options=`")
    return {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(module.Options)}


def load_file(path: str | Path) -> Recipe:
    """Load a recipe from a file path (a user's recipe outside `data_recipes/`)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise RecipeError(f"no recipe file {path}")
    mod_name = f"_sapo_vl_user_recipe_{path.stem}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise RecipeError(f"{path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise RecipeError(f"{path}: import failed: {type(e).__name__}: {e}") from e
    return from_module(module, path)


def get_recipe(name: str) -> Recipe:
    """A shipped recipe by name, or a recipe file by path (anything ending in .py or containing a /)."""
    if name.endswith(".py") or "/" in name or "\\" in name:
        return load_file(name)
    names = recipe_names()
    if name not in names:
        raise RecipeError(f"unknown recipe {name!r}{did_you_mean(name, names)}; "
                          f"known: {', '.join(names)} (or pass a path to a recipe file)")
    module = importlib.import_module(f"sapo_vl.recipes.{name}")
    recipe = from_module(module, Path(module.__file__))
    if recipe.name != name:
        raise RecipeError(f"{recipe.path}: NAME {recipe.name!r} must equal the file name {name!r}")
    return recipe


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, loaded (raises RecipeError on the first that does not load)."""
    return [get_recipe(n) for n in recipe_names()]


def coerce_option(recipe: Recipe, key: str, value: str) -> Any:
    """A command-line string as the type of the option's default (int, float, bool, str)."""
    default = recipe.options.get(key)
    try:
        if isinstance(default, bool):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(default, (int, float)):
            return type(default)(value)
    except ValueError:
        expected = type(default).__name__
        raise RecipeError(f"option {key}={value!r} of recipe {recipe.name!r}: expected {expected}") from None
    if default is None:  # untyped: a number when it reads as one
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
    return value
