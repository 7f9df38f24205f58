"""The recipe registry: discovery, closest-name errors, user files, options from the signature or an
`Options` dataclass, and a contract every shipped recipe meets (metadata, NAME = file name, every option
documented)."""
from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from sapo_vl.data.recipe import RecipeError, Skip, coerce_option, get_recipe, list_recipes, recipe_names
from sapo_vl.data.record import DOMAINS

USER_RECIPE = '''
from sapo_vl.data.record import Record, user_prompt
from sapo_vl.data.recipe import Skip
NAME = "mine"
DOMAIN = "reasoning"
SOURCE = "local:test"
VERIFIER = "exact"
DESCRIPTION = "a user recipe"
PROMPT = "Say {word}."
SPLITS = ("train",)

def records(split="train", *, seed=0, limit=None, root=None, word="yes", repeat=2, scale=1.5, loud=False):
    for i in range(repeat):
        yield Record(id=f"mine/{i}", prompt=user_prompt(PROMPT.format(word=word), n_images=0), answer=word)
    yield Skip("mine/bad", "a row the recipe could not use")
'''

KNOBS_RECIPE = '''
from dataclasses import dataclass
from sapo_vl.data.record import Record, user_prompt
NAME, DOMAIN, SOURCE, VERIFIER, DESCRIPTION, PROMPT = "knobs", "reasoning", "local:test", "exact", "d", "Say {word}."

@dataclass(frozen=True)
class Options:
    word: str = "yes"
    repeat: int = 2

def records(split="train", *, seed=0, limit=None, root=None, options=Options()):
    for i in range(options.repeat):
        yield Record(id=f"knobs/{i}", prompt=user_prompt(PROMPT.format(word=options.word), n_images=0),
                     answer=options.word)
'''


def _documented_fields(cls: type) -> set[str]:
    """Fields of a dataclass followed by a docstring in its source."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {a.target.id for a, doc in zip(body, body[1:]) if isinstance(a, ast.AnnAssign)
            and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)}


def test_shipped_names_are_discovered_without_the_template():
    names = recipe_names()
    synthetic = {"synthetic_chart", "synthetic_clevr", "synthetic_color", "synthetic_count", "synthetic_geometry"}
    assert synthetic <= set(names)
    assert "_template" not in names and "__init__" not in names


@pytest.mark.parametrize("typo, suggestion", [
    ("synthetic_colour", "synthetic_color"),
    ("synthetic_cont", "synthetic_count"),
    ("synth_geometry", "synthetic_geometry"),
])
def test_unknown_name_error_names_the_closest(typo, suggestion):
    with pytest.raises(RecipeError, match=f"did you mean '{suggestion}'"):
        get_recipe(typo)


def test_unrelated_name_lists_the_known_ones():
    with pytest.raises(RecipeError, match="known: .*synthetic_color"):
        get_recipe("qqqqqq")


def test_every_shipped_recipe_meets_the_contract():
    for r in list_recipes():
        assert r.path.stem == r.name and r.domain in DOMAINS and r.description and r.prompt and r.source
        if hasattr(r.module, "Options"):  # a docstring under every field
            undocumented = sorted(set(r.options) - _documented_fields(r.module.Options))
        else:  # every keyword option named in the records() docstring
            doc = inspect.getdoc(r.module.records) or ""
            undocumented = [o for o in r.options if f"{o}:" not in doc and f", {o}:" not in doc and f"{o}," not in doc]
        assert not undocumented, f"{r.name}: undocumented options: {undocumented}"
        assert r.module.__doc__ and "recipe check" in r.module.__doc__, r.name
        if r.source.startswith("synthetic:"):  # the others need their data (tested on fixtures elsewhere)
            first = next(iter(r.records("train", limit=1)))
            assert first.domain == r.domain and first.id.startswith(r.name + "/")


def test_user_file_options_come_from_the_signature(tmp_path):
    path = tmp_path / "my_recipe.py"
    path.write_text(USER_RECIPE)
    r = get_recipe(str(path))
    assert r.name == "mine" and r.options == {"word": "yes", "repeat": 2, "scale": 1.5, "loud": False}
    items = list(r.records("train", word="ok", repeat=3))
    assert [x.answer for x in items[:3]] == ["ok"] * 3 and isinstance(items[3], Skip)
    assert len(list(r.records("train", repeat=3, limit=2))) == 2  # limit enforced even if the recipe ignores it
    with pytest.raises(RecipeError, match="did you mean 'repeat'"):
        r.records("train", repaet=3)
    with pytest.raises(RecipeError, match="no split 'test'"):
        r.records("test")


def test_options_dataclass_fields_are_the_options(tmp_path):
    path = tmp_path / "knobs.py"
    path.write_text(KNOBS_RECIPE)
    r = get_recipe(str(path))
    assert r.options == {"word": "yes", "repeat": 2}
    assert [x.answer for x in r.records("train")] == ["yes", "yes"]
    assert [x.answer for x in r.records("train", word="ok", repeat=3)] == ["ok"] * 3
    with pytest.raises(RecipeError, match="did you mean 'repeat'"):
        r.records("train", repaet=3)
    assert coerce_option(r, "repeat", "4") == 4


def test_options_that_are_not_a_dataclass_are_refused(tmp_path):
    path = tmp_path / "knobs.py"
    path.write_text(KNOBS_RECIPE.replace("@dataclass(frozen=True)\n", ""))
    with pytest.raises(RecipeError, match="Options must be a dataclass"):
        get_recipe(str(path))


@pytest.mark.parametrize("key, text, value", [
    ("repeat", "4", 4), ("scale", "0.25", 0.25), ("loud", "true", True), ("loud", "off", False), ("word", "7", "7"),
])
def test_command_line_options_take_the_default_type(tmp_path, key, text, value):
    path = tmp_path / "my_recipe.py"
    path.write_text(USER_RECIPE)
    got = coerce_option(get_recipe(str(path)), key, text)
    assert got == value and type(got) is type(value)


def test_bad_option_values_and_files_are_named(tmp_path):
    path = tmp_path / "my_recipe.py"
    path.write_text(USER_RECIPE)
    with pytest.raises(RecipeError, match="expected int"):
        coerce_option(get_recipe(str(path)), "repeat", "many")
    (tmp_path / "half.py").write_text("NAME = 'half'\nDOMAIN = 'reasoning'\n")
    with pytest.raises(RecipeError, match="missing SOURCE, VERIFIER, DESCRIPTION, PROMPT, records"):
        get_recipe(str(tmp_path / "half.py"))
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(RecipeError, match="import failed: ModuleNotFoundError"):
        get_recipe(str(tmp_path / "broken.py"))
    with pytest.raises(RecipeError, match="no recipe file"):
        get_recipe(str(tmp_path / "absent.py"))


def test_sizes_must_map_splits_to_counts(tmp_path):
    path = tmp_path / "sized.py"
    path.write_text(USER_RECIPE + '\nSIZES = {"train": 3}\n')
    assert get_recipe(str(path)).sizes == {"train": 3}
    path.write_text(USER_RECIPE + '\nSIZES = {"train": "three"}\n')
    with pytest.raises(RecipeError, match="SIZES must map split names to row counts"):
        get_recipe(str(path))
