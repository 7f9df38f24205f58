"""Typed dataclass configs from YAML: field docstrings, type checking, strict YAML, dotted overrides, output.

Generic machinery behind `sapo_vl.config` (which holds the schema, `load_config` and the cross-field checks):
any tree of dataclasses whose fields carry a docstring (a string literal right under the field) can be
documented, checked against its annotations and dumped back to YAML here. Every problem is a `ConfigError`
naming the source (file or "command line"), the dotted key, what was expected and, for an unknown key, the
closest valid one.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Literal, Union

import yaml

from .suggest import did_you_mean


class ConfigError(ValueError):
    """A config that cannot be loaded or is invalid; the message names the source, the key and the fix."""


# ----------------------------------------------------------------------------------------- docstrings


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> docstring of a config dataclass, parsed from its source with `ast`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # the ClassDef's statements
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def config_classes(root: type) -> list[type]:
    """Every config dataclass reachable from `root`, root first."""
    seen: list[type] = []

    def visit(cls: type) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for tp in _hints(cls).values():
            for inner in _dataclasses_in(tp):
                visit(inner)

    visit(root)
    return seen


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of `cls`, sections included, through nested sections (not lists)."""
    keys: list[str] = []
    for name, tp in _hints(cls).items():
        keys.append(prefix + name)
        if is_dataclass(tp):
            keys += all_keys(tp, f"{prefix}{name}.")
    return keys


def doc_for(root: type, key: str) -> str:
    """The docstring of a dotted key of `root` such as "algorithm.sapo.tau_neg" (also "data.recipes.weight")."""
    cls: Any = root
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = _hints(cls) if is_dataclass(cls) else {}
        if part not in hints:
            prefix = ".".join(parts[:i]) + "." if i else ""
            raise ConfigError(f"unknown key {key!r}{_suggestion(key, cls, prefix, root)}")
        if i == len(parts) - 1:
            return field_docs(cls).get(part, "")
        inner = _dataclasses_in(hints[part])
        cls = inner[0] if inner else None
    return ""


# ----------------------------------------------------------------------------------------- type checking


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _dataclasses_in(tp: Any) -> list[type]:
    if is_dataclass(tp):
        return [tp]
    return [d for a in typing.get_args(tp) for d in _dataclasses_in(a)]


def _describe(tp: Any) -> str:
    """A short human name for a type annotation, as error messages show it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is tuple:
        return f"a list of {len(args)} {_describe(args[0])}" if args and args[-1] is not Ellipsis else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in fields(tp))}"
    return getattr(tp, "__name__", str(tp))


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class _Mismatch(Exception):
    """Raised inside `_coerce` when a value does not fit its annotation (turned into a ConfigError)."""


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp` and return it in its canonical form (float, tuple, dataclass)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):  # PyYAML reads `1e-6` as a string
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [_checked(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)] if args else list(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if args and args[-1] is Ellipsis:
            return tuple(_checked(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_checked(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        if args:
            return {_checked(k, args[0], key, source): _checked(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
        return dict(value)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch
        return _build(tp, value, key, source)
    raise TypeError(f"config annotation {tp!r} at {key} is not supported")


def _checked(value: Any, tp: Any, key: str, source: str) -> Any:
    """`_coerce`, with a mismatch turned into the ConfigError that names the key, the source and the type."""
    try:
        return _coerce(value, tp, key, source)
    except _Mismatch:
        got = repr(value)
        got = got if len(got) <= 80 else got[:77] + "..."
        raise ConfigError(f"{source}: {key}: expected {_describe(tp)}, got {got}") from None


@dataclasses.dataclass(frozen=True)
class _Where:
    """Where values come from (printed as the file or "command line") and the root class of the whole tree."""

    source: str
    root: type

    def __str__(self) -> str:
        return self.source


def _suggestion(key: str, cls: type, prefix: str, root: type) -> str:
    """' (did you mean ...?)' for an unknown dotted key, else the valid keys at that level."""
    local = [prefix + f.name for f in fields(cls)] if is_dataclass(cls) else []
    candidates = list(dict.fromkeys(local + all_keys(root)))
    leaf = key.rsplit(".", 1)[-1]
    moved = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf]  # a valid key put in the wrong section
    hint = did_you_mean(key, moved, cutoff=0) or did_you_mean(key, candidates, cutoff=0.6)
    if hint:
        return hint
    return f" (valid keys here: {', '.join(f.name for f in fields(cls))})" if local else ""


def _unknown(key: str, value: Any, cls: type, prefix: str, source: _Where) -> ConfigError:
    # `sapo.tau_pos=2` (or a one-key section in a file) names its full dotted path, so that the
    # suggestion can be the full valid key: 'algorithm.sapo.tau_pos'
    while isinstance(value, dict) and len(value) == 1:
        (name, value), = value.items()
        key = f"{key}.{name}"
    return ConfigError(f"{source}: unknown key {key!r}{_suggestion(key, cls, prefix, source.root)}")


def _build(cls: type, data: dict, key: str, source: str) -> Any:
    """A fresh `cls` from a mapping (list elements such as data.recipes[0]); missing fields take defaults."""
    prefix = f"{key}." if key else ""
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        if not isinstance(name, str) or name not in hints:
            raise _unknown(f"{prefix}{name}", value, cls, prefix, source)
        kwargs[name] = _checked(value, hints[name], prefix + name, source)
    required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in kwargs]
    if missing:
        raise ConfigError(f"{source}: {key}: missing required key {missing[0]!r}")
    return cls(**kwargs)


def apply(obj: Any, data: dict, prefix: str, source: str | _Where) -> None:
    """Merge a mapping into the dataclass `obj` in place: sections merge key by key, other values replace.

    `source` names where the mapping came from in error messages; at the top level `obj` is the root of the
    tree, whose keys are searched for the closest valid key."""
    if not isinstance(source, _Where):
        source = _Where(source, type(obj))
    hints = _hints(type(obj))
    for name, value in data.items():
        key = f"{prefix}{name}"
        if not isinstance(name, str) or name not in hints:
            raise _unknown(key, value, type(obj), prefix, source)
        current = getattr(obj, name)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{source}: {key}: expected a section (a mapping with keys "
                    f"{', '.join(f.name for f in fields(current))}), got {value!r}"
                )
            apply(current, value, key + ".", source)
        else:
            setattr(obj, name, _checked(value, hints[name], key, source))


# ----------------------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys in a mapping (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, typing.Hashable):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        where, what = "", str(e)
        if isinstance(e, yaml.MarkedYAMLError):
            mark = e.problem_mark or e.context_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            what = "; ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(f"{source}: invalid YAML{where}: {what}") from None


_KEY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def parse_override(text: str) -> dict[str, Any]:
    """'a.b.c=value' -> {"a": {"b": {"c": value}}}, the value parsed as YAML."""
    source = "command line"
    if "=" not in text:
        raise ConfigError(f"{source}: expected key=value (e.g. rollout.group_size=4), got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise ConfigError(f"{source}: bad key {key!r} in {text!r}: expected a dotted key such as algorithm.sapo.tau_neg")
    value = load_yaml(raw, f"{source}: {key}") if raw.strip() else None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


# ----------------------------------------------------------------------------------------- output


def config_to_dict(cfg: Any) -> Any:
    """Plain dicts, lists and scalars (tuples become lists), in field order: what YAML and JSON can hold."""
    if is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_yaml(cfg: Any, doc: bool = False) -> str:
    """The config as YAML that `load_config` reads back to an equal config; `doc` adds each field's docstring."""
    lines: list[str] = []
    _emit(cfg, 0, doc, lines)
    return "\n".join(lines) + "\n"


def _emit(obj: Any, depth: int, doc: bool, lines: list[str]) -> None:
    pad = "  " * depth
    docs = field_docs(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if doc:
            if depth == 0 and lines:
                lines.append("")
            lines += [f"{pad}# {line}" for line in textwrap.wrap(docs.get(f.name, ""), max(40, 100 - len(pad)))]
        if is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            _emit(value, depth + 1, doc, lines)
        else:
            value = config_to_dict(value)
            flow = None if isinstance(value, (list, dict)) else False  # lists of scalars in flow style: [a, b]
            text = yaml.safe_dump({f.name: value}, sort_keys=False, default_flow_style=flow, allow_unicode=True, width=10**6)
            lines += [pad + line for line in text.rstrip("\n").splitlines()]


def parse_with_overrides(parser, argv):
    """parse_args, except that key=value overrides may also come after options (`train CFG --dry-run a=1`)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if isinstance(getattr(args, "overrides", None), list) and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args
