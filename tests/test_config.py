"""Configs: defaults <- YAML <- overrides, every error message, round-trips, docstrings, shipped YAMLs."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from sapo_vl.config import (
    Config,
    ConfigError,
    RecipeSpec,
    all_keys,
    config_classes,
    config_to_dict,
    doc_for,
    dump_yaml,
    field_docs,
    load_config,
    parse_override,
    problems,
    validate,
)
from sapo_vl.config_cli import add_config_commands

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").glob("**/*.yaml")) + sorted((REPO / "configs").glob("**/*.yml"))
LAUNCHERS = ("sapo-vl ", "deepspeed ", "python -m sapo_vl", "bash scripts/", "scripts/")


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ----------------------------------------------------------------------------------------- defaults, precedence


def test_defaults_are_valid_and_load_without_a_file():
    assert problems(Config()) == []
    assert load_config(None) == Config()
    assert Config().data.recipes == [RecipeSpec("synthetic_color")]


def test_yaml_then_overrides_take_precedence(tmp_path):
    p = write(tmp_path, "rollout:\n  group_size: 4\n  temperature: 0.7\nalgorithm:\n  sapo:\n    tau_neg: 1.2\n")
    cfg = load_config(p, ["rollout.group_size=6", "algorithm.name=gspo"])
    assert cfg.rollout.group_size == 6  # override beats file
    assert cfg.rollout.temperature == 0.7  # file beats default
    assert cfg.algorithm.sapo.tau_neg == 1.2 and cfg.algorithm.sapo.tau_pos == 1.0  # sections merge key by key
    assert cfg.algorithm.name == "gspo"
    assert cfg.rollout.prompts_per_step == Config().rollout.prompts_per_step  # untouched default
    # later overrides win over earlier ones
    assert load_config(p, ["rollout.group_size=6", "rollout.group_size=3"]).rollout.group_size == 3


def test_override_values_are_yaml():
    cfg = load_config(None, [
        "data.recipes=[{name: synthetic_count, weight: 2, options: {size: 32}}, {name: synthetic_color, limit: 10}]",
        "logging.run_name=null",
        "optimizer.lr=1e-5",  # PyYAML reads `1e-5` as a string: floats accept it anyway
        "optimizer.betas=[0.9, 0.95]",
        "optimizer.max_grad_norm=2",  # an int where a float is expected
        "algorithm={name: grpo, grpo: {dual_clip: 3}}",  # a whole section as a mapping merges
        "eval.tasks=[color_eval]",
        "eval.every=5",
        "deepspeed.config_file=",  # empty value = null
    ])
    assert cfg.data.recipes == [
        RecipeSpec("synthetic_count", weight=2.0, options={"size": 32}),
        RecipeSpec("synthetic_color", limit=10),
    ]
    assert isinstance(cfg.data.recipes[0].weight, float)
    assert cfg.logging.run_name is None
    assert cfg.optimizer.lr == 1e-5
    assert cfg.optimizer.betas == (0.9, 0.95)
    assert cfg.optimizer.max_grad_norm == 2.0 and isinstance(cfg.optimizer.max_grad_norm, float)
    assert cfg.algorithm.name == "grpo" and cfg.algorithm.grpo.dual_clip == 3.0 and cfg.algorithm.grpo.eps_low == 0.2
    assert cfg.eval.tasks == ["color_eval"]
    assert cfg.deepspeed.config_file is None


def test_scientific_floats_in_files(tmp_path):
    cfg = load_config(write(tmp_path, "optimizer:\n  lr: 1e-6\n  eps: 1.0e-8\n"))
    assert cfg.optimizer.lr == 1e-6 and cfg.optimizer.eps == 1e-8


def test_empty_file_is_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing here\n")) == Config()


def test_parse_override():
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    assert parse_override("a=x=y") == {"a": "x=y"}  # only the first '=' splits


def test_loss_agg_resolves_to_the_algorithms_default():
    assert load_config(None, ["algorithm.name=sapo"]).algorithm.resolved_loss_agg() == "seq-mean-token-mean"
    assert load_config(None, ["algorithm.name=gspo"]).algorithm.resolved_loss_agg() == "seq-mean-token-mean"
    assert load_config(None, ["algorithm.name=grpo"]).algorithm.resolved_loss_agg() == "token-mean"
    cfg = load_config(None, ["algorithm.name=grpo", "algorithm.loss_agg=seq-mean-token-sum-norm"])
    assert cfg.algorithm.resolved_loss_agg() == "seq-mean-token-sum-norm"


# ----------------------------------------------------------------------------------------- errors

FILE_ERRORS = [
    # (YAML text, substrings the message must contain)
    ("algorithm:\n  sapo:\n    tau_pos_: 1.0\n",
     ["x.yaml: unknown key 'algorithm.sapo.tau_pos_'", "(did you mean 'algorithm.sapo.tau_pos'?)"]),
    ("group_size: 4\n", ["unknown key 'group_size'", "did you mean 'rollout.group_size'"]),  # wrong section
    ("rollout:\n  temperature: hot\n", ["x.yaml: rollout.temperature: expected float, got 'hot'"]),
    ("rollout:\n  group_size: 8.5\n", ["x.yaml: rollout.group_size: expected int, got 8.5"]),
    ("model:\n  freeze_vision: 1\n", ["model.freeze_vision: expected bool, got 1"]),
    ("model: 3\n", ["x.yaml: model: expected a section (a mapping with keys name_or_path"]),
    ("algorithm:\n  name: ppo\n", ["algorithm.name: expected one of 'sapo', 'gspo', 'grpo', got 'ppo'"]),
    ("algorithm:\n  loss_agg: mean\n", ["algorithm.loss_agg: expected one of 'token-mean'", "or null, got 'mean'"]),
    ("deepspeed:\n  zero_stage: '3'\n", ["deepspeed.zero_stage: expected one of 0, 1, 2, 3, got '3'"]),
    ("optimizer:\n  betas: [0.9]\n", ["optimizer.betas: expected a list of 2 float"]),
    ("eval:\n  tasks: color\n", ["eval.tasks: expected a list of str, got 'color'"]),
    ("eval:\n  tasks: [color, 3]\n", ["eval.tasks[1]: expected str, got 3"]),
    ("data:\n  recipes:\n    - {name: a, wieght: 2}\n",
     ["unknown key 'data.recipes[0].wieght'", "did you mean 'data.recipes[0].weight'"]),
    ("data:\n  recipes:\n    - {name: a}\n    - {weight: 2}\n", ["x.yaml: data.recipes[1]: missing required key 'name'"]),
    ("data:\n  recipes: [synthetic_color]\n", ["data.recipes[0]: expected a mapping with keys name, weight"]),
    ("data:\n  recipes:\n    - {name: a, options: [1]}\n", ["data.recipes[0].options: expected a mapping"]),
    ("rollout:\n  group_size: 4\n  group_size: 5\n", ["x.yaml: invalid YAML", "duplicate key 'group_size'"]),
    ("model:\n  dtype: [\n", ["x.yaml: invalid YAML (line 3, column 1)"]),
    ("sapo:\n  tau_pos: 2\n", ["unknown key 'sapo.tau_pos' (did you mean 'algorithm.sapo.tau_pos'?)"]),
    ("algorithm:\n  group_size: 4\n", ["did you mean 'rollout.group_size'"]),
    ("- model\n", ["x.yaml: expected a mapping of sections at the top level, got list"]),
    ("42: x\n", ["unknown key '42'"]),
]


@pytest.mark.parametrize("text,expected", FILE_ERRORS, ids=[e[1][0][:40] for e in FILE_ERRORS])
def test_file_errors_name_file_key_and_fix(tmp_path, text, expected):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    for part in expected:
        assert part in str(e.value)


OVERRIDE_ERRORS = [
    (["rollout.group_size=eight"], ["command line: rollout.group_size: expected int, got 'eight'"]),
    (["rollout.group_size=true"], ["command line: rollout.group_size: expected int, got True"]),
    (["algorithm.sapo.tau_pos_=1"], ["command line: unknown key 'algorithm.sapo.tau_pos_'",
                                     "did you mean 'algorithm.sapo.tau_pos'"]),
    (["algorithm.nmae=gspo"], ["did you mean 'algorithm.name'"]),
    (["sapo.tau_pos=2"], ["unknown key 'sapo.tau_pos' (did you mean 'algorithm.sapo.tau_pos'?)"]),
    (["rollout.group_size"], ["command line: expected key=value", "'rollout.group_size'"]),
    (["--rollout.group_size=4"], ["command line: bad key '--rollout.group_size'"]),
    (["rollout..group_size=4"], ["command line: bad key"]),
    (["=4"], ["command line: bad key ''"]),
    (["data.recipes=[{name: a"], ["command line: data.recipes: invalid YAML"]),
    (["data.recipes=[{weight: 2}]"], ["command line: data.recipes[0]: missing required key 'name'"]),
    (["deepspeed.zero_stage=4"], ["command line: deepspeed.zero_stage: expected one of 0, 1, 2, 3, got 4"]),
    (["zzzz=1"], ["command line: unknown key 'zzzz' (valid keys here: model, data, rollout"]),
]


@pytest.mark.parametrize("overrides,expected", OVERRIDE_ERRORS, ids=[o[0][0][:40] for o in OVERRIDE_ERRORS])
def test_override_errors(overrides, expected):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    for part in expected:
        assert part in str(e.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: configs/nope.yaml"):
        load_config("configs/nope.yaml")


@pytest.mark.parametrize("overrides,expected", [
    (["rollout.group_size=1"], "rollout.group_size: must be >= 2"),
    (["algorithm.updates_per_rollout=0"], "algorithm.updates_per_rollout: must be >= 1 (got 0)"),
    (["algorithm.sapo.tau_pos=0"], "algorithm.sapo.tau_pos: must be > 0"),
    (["algorithm.sapo.tau_neg=-1"], "algorithm.sapo.tau_neg: must be > 0"),
    (["algorithm.gspo.eps_low=-0.1"], "algorithm.gspo.eps_low: must be >= 0"),
    (["algorithm.grpo.dual_clip=0.5"], "algorithm.grpo.dual_clip: must be > 1 or null"),
    (["deepspeed.offload_params=true", "deepspeed.zero_stage=2"], "deepspeed.offload_params: needs deepspeed.zero_stage=3"),
    (["deepspeed.offload_optimizer=true"], "deepspeed.offload_optimizer: needs deepspeed.zero_stage >= 1"),
    (["rollout.top_p=0.9"], "rollout.top_p: must be 1.0 for training"),
    (["rollout.top_k=20"], "rollout.top_k: must be 0 for training"),
    (["optimizer.betas=[0.9, 1.0]"], "optimizer.betas: must both be in [0, 1)"),
    (["data.recipes=[{name: a, weight: 0}]"], "data.recipes[0].weight: must be > 0"),
    (["data.recipes=[]"], "data.recipes: must list at least one recipe"),
    (["eval.every=10"], "eval.tasks: must not be empty when eval.every > 0"),
    (["model.max_pixels=16"], "model.max_pixels: must be >= model.min_pixels"),
])
def test_validate_cross_field(overrides, expected):
    with pytest.raises(ConfigError, match="invalid config") as e:
        load_config(None, overrides)
    assert expected in str(e.value)


def test_validate_names_the_sources(tmp_path):
    with pytest.raises(ConfigError, match=r"x.yaml \+ command line: invalid config"):
        load_config(write(tmp_path, "train:\n  steps: 5\n"), ["rollout.group_size=1"])
    with pytest.raises(ConfigError, match=r"^x?.*x.yaml: invalid config"):
        load_config(write(tmp_path, "rollout:\n  group_size: 1\n"))


def test_validate_lists_every_problem_at_once():
    cfg = Config()
    cfg.rollout.group_size, cfg.algorithm.updates_per_rollout = 1, 0
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert "rollout.group_size" in str(e.value) and "algorithm.updates_per_rollout" in str(e.value)


def test_valid_edge_cases_pass():
    load_config(None, ["deepspeed.zero_stage=3", "deepspeed.offload_params=true", "deepspeed.offload_optimizer=true",
                       "data.recipes=[]", "data.built=/tmp/built", "rollout.group_size=2",
                       "algorithm.updates_per_rollout=1", "eval.every=5", "eval.tasks=[a]"])


# ----------------------------------------------------------------------------------------- round-trip


def _custom() -> Config:
    cfg = Config()
    cfg.data.recipes = [RecipeSpec("a", 0.25, "test", 7, {"size": 64, "colors": ["red", "blue"], "t": "x: y"}),
                        RecipeSpec("b")]
    cfg.data.root = "/data/with spaces"
    cfg.algorithm.name, cfg.algorithm.loss_agg, cfg.algorithm.grpo.dual_clip = "grpo", "seq-mean-token-sum-norm", 3.0
    cfg.optimizer.lr, cfg.optimizer.betas = 3.3e-7, (0.8, 0.95)
    cfg.logging.run_name = "001"  # a string that looks like a number stays a string
    cfg.model.name_or_path = "yes"  # ... and one that looks like a bool
    cfg.model.lora.target_modules = []
    cfg.eval.tasks, cfg.eval.limit = ["t1", "t2"], None
    cfg.train.resume = "auto"
    return cfg


@pytest.mark.parametrize("doc", [False, True])
@pytest.mark.parametrize("make", [Config, _custom])
def test_dump_round_trips(tmp_path, make, doc):
    cfg = make()
    text = dump_yaml(cfg, doc=doc)
    assert load_config(write(tmp_path, text)) == cfg
    assert text.count("#") > 50 if doc else "#" not in text


def test_config_to_dict_is_plain():
    d = config_to_dict(Config())
    assert d["optimizer"]["betas"] == [0.9, 0.999]
    assert d["data"]["recipes"][0] == {"name": "synthetic_color", "weight": 1.0, "split": "train", "limit": None,
                                       "options": {}}
    assert list(d) == [f.name for f in dataclasses.fields(Config)]


# ----------------------------------------------------------------------------------------- docstrings


def test_every_field_has_a_docstring():
    classes = config_classes()
    assert len(classes) >= 14
    missing = [f"{c.__name__}.{f.name}" for c in classes for f in dataclasses.fields(c) if not field_docs(c).get(f.name)]
    assert missing == []


def test_doc_for_dotted_keys():
    assert "negative advantage" in doc_for("algorithm.sapo.tau_neg")
    assert "sampling weight" in doc_for("data.recipes.weight")
    assert "algorithm.sapo.tau_neg" in all_keys() and "algorithm.sapo" in all_keys()
    with pytest.raises(ConfigError, match="did you mean 'algorithm.sapo.tau_neg'"):
        doc_for("algorithm.sapo.tau_ne")


# ----------------------------------------------------------------------------------------- shipped YAMLs


def test_some_configs_are_shipped():
    assert any(p.name == "demo.yaml" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_shipped_config_loads_and_opens_with_its_command(path):
    cfg = load_config(path)
    validate(cfg)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path.name}: the first line must be a comment with the command that runs it"
    assert any(l in first for l in LAUNCHERS), f"{path.name}: first line names no launcher: {first!r}"
    rel = str(path.relative_to(REPO))
    assert rel in first or "scripts/" in first, f"{path.name}: first line must name {rel} (or its launch script)"


# ----------------------------------------------------------------------------------------- `config show`


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sapo-vl")
    add_config_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_config_show(tmp_path, capsys):
    assert _run(["config", "show", str(REPO / "configs/demo.yaml"), "rollout.group_size=4", "--doc"]) == 0
    out = capsys.readouterr().out
    assert "group_size: 4" in out and "# G: completions sampled per prompt" in out
    assert load_config(write(tmp_path, out), []).rollout.group_size == 4

    assert _run(["config", "show", "defaults"]) == 0
    assert load_config(write(tmp_path, capsys.readouterr().out)) == Config()
    assert _run(["config", "show", "train.steps=3"]) == 0  # no file: overrides on the defaults
    assert "steps: 3" in capsys.readouterr().out


def test_config_show_error_exit_status(capsys):
    assert _run(["config", "show", "defaults", "rollout.group_size=eight"]) == 2
    err = capsys.readouterr().err
    assert "command line: rollout.group_size: expected int, got 'eight'" in err
