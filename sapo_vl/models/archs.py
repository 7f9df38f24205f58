"""Architecture numbers of the published Qwen3-VL checkpoints, so memory can be planned with no network.

`Arch` holds what the memory planner needs of a checkpoint: the text model (layers, hidden size, MLP or MoE
sizes, attention heads, KV heads, head dim, vocabulary, tied embeddings) and the vision tower (depth, width,
patch size, spatial merge, deepstack layers). `Arch.param_counts()` turns them into parameter counts per part,
exactly as `transformers` builds Qwen3VLForConditionalGeneration / Qwen3VLMoeForConditionalGeneration (tested
against a model built on the meta device).

`arch_for(name_or_path)` finds the numbers without loading anything: a known hub id (the table below, Instruct
and Thinking share them), an embedded tiny name (`sapo-vl/tiny-qwen3-vl`, read from `sapo_vl.models.tiny`'s
settings), or a local checkpoint folder (its config.json, `arch_from_config_json`; a LoRA adapter folder: its base
model's).

Sources of the numbers (the released config.json files, as quoted in public code that ships or checks them):
- 2B: text 28 layers × 2048, MLP 6144, 16 heads / 8 KV heads, head dim 128, tied embeddings; vision depth 24 ×
  1024, MLP 4096, deepstack [5, 11, 17]: the Qwen3-VL-2B config.json values as quoted by a vLLM-style engine's
  defaults ("对齐 config.json") and by a Qwen-VL plugin test's source config (text 2048/6144/16/28/8).
- 4B: text 36 × 2560, MLP 9728, 32 / 8 heads, head dim 128, tied; vision 24 × 1024, MLP 4096, deepstack
  [5, 11, 17]: "an inline copy of the released Qwen3-VL-4B-Instruct config.json" in a Rust port's tests.
- 8B: text 36 × 4096, MLP 12288, 32 / 8 heads, head dim 128, untied; vision 27 × 1152, MLP 4304, deepstack
  [8, 16, 24]: huggingface.co/Steinate/Cortex config.json (a Qwen3-VL-8B fine-tune, unchanged shapes) and a
  loader test's "official checkpoint config" / Cosmos-Reason2-8B backbone (the same Qwen3-VL-8B tower); model
  hubs list 8.77 B parameters, what `param_count` gives.
- 32B: text 64 × 5120, MLP 25600, 64 / 8 heads, head dim 128, untied; vision 27 × 1152, MLP 4304, deepstack
  [8, 16, 24]: the "shipped config" of Qwen3-VL-32B quoted in a Rust crate's config test; the same crate notes a
  top-level `lm_head.weight` (untied) and 66,714,912,872 bytes of bf16 shards, i.e. 33.357 B parameters, which is
  what `param_count` gives (the test holds it).
- 30B-A3B (MoE): text 48 × 2048, 32 / 4 heads, head dim 128, 128 experts, 8 active, expert MLP 768, every
  layer sparse (decoder_sparse_step 1, no mlp_only_layers), untied; vision 27 × 1152, MLP 4304, deepstack
  [8, 16, 24]: "an inline copy of the REAL Qwen/Qwen3-VL-30B-A3B-Instruct/config.json" in a Rust port's tests.
All share vocabulary 151,936, patch 16, temporal patch 2, spatial merge 2, 16 vision heads and 2,304 learned
vision positions; each tower's output width is its text hidden size.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class VisionArch:
    depth: int
    """Vision transformer blocks."""
    hidden_size: int
    """Width of the vision tower."""
    intermediate_size: int
    """Width of each vision block's MLP (GELU, not gated)."""
    num_heads: int = 16
    """Attention heads of the vision tower."""
    patch_size: int = 16
    """Pixels per patch side."""
    temporal_patch_size: int = 2
    """Frames folded into one patch (an image is repeated to fill them)."""
    spatial_merge_size: int = 2
    """m: m×m patches merge into one visual token of the text model."""
    out_hidden_size: int = 0
    """Width of the merged visual tokens (= the text hidden size)."""
    deepstack_layers: tuple[int, ...] = ()
    """Vision blocks whose outputs are also merged and added to the first text layers (DeepStack)."""
    in_channels: int = 3
    """Image channels."""
    num_position_embeddings: int = 2304
    """Rows of the learned position table (48 × 48)."""

    def param_count(self) -> int:
        h, i, m2 = self.hidden_size, self.intermediate_size, self.spatial_merge_size ** 2
        patch = self.in_channels * self.temporal_patch_size * self.patch_size ** 2 * h + h  # Conv3d + bias
        pos = self.num_position_embeddings * h
        block = 4 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h)  # 2 LayerNorms, qkv, proj, MLP
        merged = h * m2

        def merger(norm: int) -> int:
            return 2 * norm + (merged * merged + merged) + (merged * self.out_hidden_size + self.out_hidden_size)

        return patch + pos + self.depth * block + merger(h) + len(self.deepstack_layers) * merger(merged)


@dataclass(frozen=True)
class Arch:
    name: str
    """What the numbers describe (a hub id, a folder, an embedded name)."""
    num_layers: int
    """Text decoder layers."""
    hidden_size: int
    """Text model width."""
    intermediate_size: int
    """Dense MLP width (SwiGLU: gate, up and down projections); unused by a MoE layer."""
    num_heads: int
    """Query heads."""
    num_kv_heads: int
    """Key/value heads (grouped-query attention); the KV cache scales with these."""
    head_dim: int
    """Width of one attention head (not hidden_size / num_heads in Qwen3)."""
    vocab_size: int
    """Rows of the embedding and of the output projection."""
    tie_word_embeddings: bool
    """The output projection shares the embedding matrix."""
    vision: VisionArch
    """The vision tower."""
    num_experts: int = 0
    """Experts per MoE layer; 0 = a dense model."""
    experts_per_token: int = 0
    """Experts each token is routed to."""
    moe_intermediate_size: int = 0
    """MLP width of one expert."""

    @property
    def moe(self) -> bool:
        return self.num_experts > 0

    def layer_param_count(self) -> int:
        """Parameters of one text decoder layer."""
        h, hd = self.hidden_size, self.head_dim
        attn = h * self.num_heads * hd + 2 * h * self.num_kv_heads * hd + self.num_heads * hd * h + 2 * hd  # + q/k norms
        if self.moe:
            mlp = self.num_experts * 3 * h * self.moe_intermediate_size + h * self.num_experts  # experts + router
        else:
            mlp = 3 * h * self.intermediate_size
        return attn + mlp + 2 * h  # + the two RMSNorms

    def param_counts(self) -> dict[str, int]:
        """Parameters per part: embedding, decoder layers, final norm, output head (0 when tied), vision tower."""
        embed = self.vocab_size * self.hidden_size
        return {
            "embed": embed, "layers": self.num_layers * self.layer_param_count(), "norm": self.hidden_size,
            "lm_head": 0 if self.tie_word_embeddings else embed, "vision": self.vision.param_count(),
        }

    def param_count(self) -> int:
        return sum(self.param_counts().values())

    def text_param_count(self) -> int:
        """Everything but the vision tower (what `model.freeze_vision` leaves trainable)."""
        c = self.param_counts()
        return c["embed"] + c["layers"] + c["norm"] + c["lm_head"]


def _vision(depth: int, hidden: int, inter: int, out: int, deepstack: tuple[int, ...]) -> VisionArch:
    return VisionArch(depth=depth, hidden_size=hidden, intermediate_size=inter, out_hidden_size=out,
                      deepstack_layers=deepstack)


_SMALL_TOWER = dict(depth=24, hidden=1024, inter=4096, deepstack=(5, 11, 17))  # 2B, 4B
_LARGE_TOWER = dict(depth=27, hidden=1152, inter=4304, deepstack=(8, 16, 24))  # 8B, 32B, 30B-A3B
VOCAB = 151_936

_TABLE: dict[str, Arch] = {
    "Qwen3-VL-2B": Arch("Qwen3-VL-2B", num_layers=28, hidden_size=2048, intermediate_size=6144, num_heads=16,
                        num_kv_heads=8, head_dim=128, vocab_size=VOCAB, tie_word_embeddings=True,
                        vision=_vision(out=2048, **_SMALL_TOWER)),
    "Qwen3-VL-4B": Arch("Qwen3-VL-4B", num_layers=36, hidden_size=2560, intermediate_size=9728, num_heads=32,
                        num_kv_heads=8, head_dim=128, vocab_size=VOCAB, tie_word_embeddings=True,
                        vision=_vision(out=2560, **_SMALL_TOWER)),
    "Qwen3-VL-8B": Arch("Qwen3-VL-8B", num_layers=36, hidden_size=4096, intermediate_size=12288, num_heads=32,
                        num_kv_heads=8, head_dim=128, vocab_size=VOCAB, tie_word_embeddings=False,
                        vision=_vision(out=4096, **_LARGE_TOWER)),
    "Qwen3-VL-32B": Arch("Qwen3-VL-32B", num_layers=64, hidden_size=5120, intermediate_size=25600, num_heads=64,
                         num_kv_heads=8, head_dim=128, vocab_size=VOCAB, tie_word_embeddings=False,
                         vision=_vision(out=5120, **_LARGE_TOWER)),
    "Qwen3-VL-30B-A3B": Arch("Qwen3-VL-30B-A3B", num_layers=48, hidden_size=2048, intermediate_size=6144,
                             num_heads=32, num_kv_heads=4, head_dim=128, vocab_size=VOCAB, tie_word_embeddings=False,
                             vision=_vision(out=2048, **_LARGE_TOWER), num_experts=128, experts_per_token=8,
                             moe_intermediate_size=768),
}

KNOWN_HUB_IDS: dict[str, str] = {
    f"Qwen/{size}-{kind}": size for size in _TABLE for kind in ("Instruct", "Thinking")
}
"""Hub id → table entry: Instruct and Thinking checkpoints of one size share their architecture."""


def known_arch(hub_id: str) -> Arch | None:
    """The table's numbers for a published hub id (case-insensitive, FP8 variants included), else None."""
    key = hub_id.strip().rstrip("/")
    if key.lower().endswith("-fp8"):
        key = key[: -len("-fp8")]
    for hid, size in KNOWN_HUB_IDS.items():
        if hid.lower() == key.lower():
            return _TABLE[size]
    return None


class ArchError(ValueError):
    """A config.json that does not describe a Qwen3-VL model; the message names the file and the key."""


def arch_from_config(cfg: dict, name: str) -> Arch:
    """An `Arch` from a Qwen3-VL config.json's contents (`text_config` and `vision_config` sections)."""
    text, vis = cfg.get("text_config"), cfg.get("vision_config")
    if not isinstance(text, dict) or not isinstance(vis, dict):
        raise ArchError(f"{name}: config.json has no text_config / vision_config (model_type "
                        f"{cfg.get('model_type')!r}); the memory plan knows Qwen3-VL checkpoints")

    def need(section: dict, key: str, where: str):
        if key not in section:
            raise ArchError(f"{name}: config.json has no {where}.{key}")
        return section[key]

    hidden = int(need(text, "hidden_size", "text_config"))
    heads = int(need(text, "num_attention_heads", "text_config"))
    # the top-level flag is the one transformers honours for the VL model; older files only set the text one
    tie = cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
    experts = int(text.get("num_experts") or text.get("num_local_experts") or 0)  # transformers 5 writes the latter
    if experts and (text.get("mlp_only_layers") or int(text.get("decoder_sparse_step", 1)) != 1):
        raise ArchError(f"{name}: MoE with dense layers (mlp_only_layers / decoder_sparse_step) is not planned")
    return Arch(
        name=name, num_layers=int(need(text, "num_hidden_layers", "text_config")), hidden_size=hidden,
        intermediate_size=int(need(text, "intermediate_size", "text_config")), num_heads=heads,
        num_kv_heads=int(text.get("num_key_value_heads", heads)),
        head_dim=int(text.get("head_dim") or hidden // heads),
        vocab_size=int(need(text, "vocab_size", "text_config")), tie_word_embeddings=bool(tie),
        vision=VisionArch(
            depth=int(need(vis, "depth", "vision_config")), hidden_size=int(need(vis, "hidden_size", "vision_config")),
            intermediate_size=int(need(vis, "intermediate_size", "vision_config")),
            num_heads=int(vis.get("num_heads", 16)), patch_size=int(vis.get("patch_size", 16)),
            temporal_patch_size=int(vis.get("temporal_patch_size", 2)),
            spatial_merge_size=int(vis.get("spatial_merge_size", 2)),
            out_hidden_size=int(vis.get("out_hidden_size", hidden)),
            deepstack_layers=tuple(int(i) for i in vis.get("deepstack_visual_indexes", ())),
            in_channels=int(vis.get("in_channels", 3)),
            num_position_embeddings=int(vis.get("num_position_embeddings", 2304)),
        ),
        num_experts=experts, experts_per_token=int(text.get("num_experts_per_tok", 0) or 0),
        moe_intermediate_size=int(text.get("moe_intermediate_size", 0) or 0),
    )


def arch_from_config_json(folder: str | Path) -> Arch:
    """An `Arch` read from a checkpoint folder's config.json (or the file itself)."""
    p = Path(folder).expanduser()
    path = p if p.is_file() else p / "config.json"
    if not path.is_file():
        raise ArchError(f"{folder}: no config.json")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ArchError(f"{path}: not valid JSON ({err})") from None
    return arch_from_config(cfg, str(folder))


def tiny_arch(moe: bool = False) -> Arch:
    """The embedded tiny model's numbers, from `sapo_vl.models.tiny`'s settings (no checkpoint is built)."""
    from . import tiny

    class _Tok:  # tiny_config only asks the tokenizer for its length and the special tokens' ids
        def __len__(self) -> int:
            return tiny.TRAINED_VOCAB + len(tiny.QWEN_SPECIAL_TOKENS) + len(tiny.QWEN_ADDED_TOKENS)

        def convert_tokens_to_ids(self, token: str) -> int:
            return tiny.TRAINED_VOCAB + tiny.QWEN_SPECIAL_TOKENS.index(token)

    cfg = tiny.tiny_config(_Tok(), moe=moe).to_dict()
    return arch_from_config(cfg, f"sapo-vl/tiny-qwen3-vl{'-moe' if moe else ''}")


EMBEDDED = {"sapo-vl/tiny-qwen3-vl": False, "sapo-vl/tiny-qwen3-vl-moe": True}


def arch_for(name_or_path: str) -> Arch:
    """The architecture of `model.name_or_path` with no network: embedded name, local folder, or known hub id."""
    if name_or_path in EMBEDDED:
        return tiny_arch(moe=EMBEDDED[name_or_path])
    p = Path(name_or_path).expanduser()
    adapter = p / "adapter_config.json"
    if p.is_dir() and not (p / "config.json").is_file() and adapter.is_file():  # a LoRA checkpoint: its base model
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if not base:
            raise ArchError(f"{name_or_path}: adapter_config.json names no base_model_name_or_path")
        return arch_for(base)
    if p.exists():
        return arch_from_config_json(p)
    found = known_arch(name_or_path)
    if found is not None:
        return replace(found, name=name_or_path)
    known = ", ".join(sorted({h.split("/")[1].rsplit("-", 1)[0] for h in KNOWN_HUB_IDS}))
    raise ArchError(f"no architecture numbers for {name_or_path!r} without network: give a local checkpoint folder "
                    f"(its config.json is read) or one of the published Qwen3-VL sizes ({known}; Instruct/Thinking)")


__all__ = ["Arch", "ArchError", "VisionArch", "KNOWN_HUB_IDS", "arch_for", "arch_from_config", "arch_from_config_json",
           "known_arch", "tiny_arch"]
