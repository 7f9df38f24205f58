"""`sapo-vl config show CONFIG [key=value ...] [--doc]`: print the resolved configuration as YAML.

`add_config_commands(subparsers)` hangs the `config` command off the `sapo-vl` entry point; each
command sets `func(args) -> int` (the exit status). Config errors print one line to stderr, exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sapo_vl.config import ConfigError, dump_yaml, load_config


def add_config_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `config show` on the entry point's subparsers."""
    config = subparsers.add_parser(
        "config",
        help="inspect configurations (defaults <- YAML <- key=value overrides)",
        description="Inspect sapo_vl configurations.",
    )
    sub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    show = sub.add_parser(
        "show",
        help="print the resolved config as YAML",
        description="Resolve defaults <- CONFIG <- overrides, validate, and print the result as YAML "
        "(which `sapo-vl train` reads back unchanged).",
    )
    show.add_argument("config", metavar="CONFIG", help="YAML file, or 'defaults' for the built-in defaults")
    show.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="dotted overrides, values parsed as YAML: rollout.group_size=4 'data.recipes=[{name: synthetic_count}]'",
    )
    show.add_argument("--doc", action="store_true", help="print each field's documentation as a comment above it")
    show.set_defaults(func=show_config)


def show_config(args: argparse.Namespace) -> int:
    """Print the resolved config; return the exit status."""
    path, overrides = args.config, list(args.overrides)
    if path == "defaults" and not Path(path).exists():
        path = None
    elif "=" in path and not Path(path).exists():  # `config show key=value`: no file given
        path, overrides = None, [path, *overrides]
    try:
        cfg = load_config(path, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(dump_yaml(cfg, doc=args.doc))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m sapo_vl.config_cli show CONFIG ...`, the same command without the main entry point."""
    parser = argparse.ArgumentParser(prog="sapo-vl")
    add_config_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["config", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
