"""The `sapo-vl` command: one entry point, one subcommand per job.

    sapo-vl tiny-model OUT_DIR [--moe] [--seed N]   build the embedded tiny Qwen3-VL checkpoint
    sapo-vl config show CONFIG [key=value ...]      print a resolved config
    sapo-vl recipe list|preview|check|build         author and build data recipes
    sapo-vl eval --task T --model M --out DIR       evaluate (also --suite, --list)
    sapo-vl train CONFIG [key=value ...]            train (one process; `deepspeed -m sapo_vl.train` for more)
    sapo-vl compare CONFIG --algorithms sapo,gspo,grpo --seeds 0,1,2   every algorithm × seed, summary + plot
    sapo-vl export HF_DIR OUT_DIR [--merge]         a checkpoint as a standalone transformers folder (LoRA merged)
    sapo-vl demo                                    the embedded default job (what `make demo` runs)

Each subcommand's module registers its own parser; this file only wires them together.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .typed_config import parse_with_overrides


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from .models.tiny import build_tiny_checkpoint, tiny_param_count

    out = build_tiny_checkpoint(args.out_dir, moe=args.moe, seed=args.seed)
    from .models.loading import load_policy

    n = tiny_param_count(load_policy(str(out)))
    kind = "Qwen3VLMoeForConditionalGeneration" if args.moe else "Qwen3VLForConditionalGeneration"
    print(f"wrote {kind} checkpoint ({n:,} parameters, seed {args.seed}) to {out}")
    return 0


def _add_tiny_model(sub) -> None:
    p = sub.add_parser(
        "tiny-model",
        help="build a tiny random-weight Qwen3-VL checkpoint (offline)",
        description="Write a tiny Qwen3-VL Hugging Face checkpoint (random weights, locally trained byte-level BPE "
        "tokenizer with Qwen's special tokens and chat template, Qwen's image processor) that loads with "
        "AutoProcessor / AutoModelForImageTextToText. The same seed gives the same bytes.",
    )
    p.add_argument("out_dir", help="folder to write the checkpoint to")
    p.add_argument("--moe", action="store_true", help="build the Qwen3VLMoe (mixture-of-experts) variant")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    p.set_defaults(func=_cmd_tiny_model)


def _add_module(sub, name: str, module_name: str, run: str, help: str) -> None:
    """`sapo-vl NAME`: the subcommand whose parser and entry point live in `sapo_vl.MODULE_NAME`
    (`add_arguments(parser)` and the function `run`; the module docstring is the description)."""
    import importlib

    module = importlib.import_module(f".{module_name}", __package__)
    p = sub.add_parser(name, help=help, description=module.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    p.set_defaults(func=getattr(module, run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sapo-vl",
        description="Fine-tune Qwen3-VL with SAPO / GSPO / GRPO: build models and data, train, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_tiny_model(sub)
    _add_module(sub, "demo", "demo", "main", "run the embedded default job offline (what `make demo` runs)")
    _add_module(sub, "train", "train", "run", "train a policy with SAPO / GSPO / GRPO (one process; use the "
                "deepspeed launcher with -m sapo_vl.train for several)")
    _add_module(sub, "compare", "compare", "run", "train the same config under several algorithms and seeds; "
                "summary.json, table and plot")
    _add_module(sub, "export", "export", "main", "write a checkpoint (a LoRA adapter merged into its base with "
                "--merge) as a standalone transformers checkpoint")

    from .config_cli import add_config_commands
    from .data.cli import add_recipe_commands
    from .evaluation.cli import add_eval_commands

    add_config_commands(sub)
    add_recipe_commands(sub)
    add_eval_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_with_overrides(parser, argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
