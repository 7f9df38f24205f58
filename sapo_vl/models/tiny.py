"""The embedded default policy: a tiny Qwen3-VL checkpoint built locally, with no network.

`build_tiny_checkpoint(out_dir, moe=False, seed=0)` writes an ordinary Hugging Face checkpoint that loads through
the same calls as `Qwen/Qwen3-VL-2B-Instruct` (`AutoProcessor` / `AutoModelForImageTextToText`):

- `config.json` for `Qwen3VLForConditionalGeneration` (or `Qwen3VLMoeForConditionalGeneration` with `moe=True`):
  the real architecture (vision tower with deepstack, patch 16, spatial merge 2, interleaved M-RoPE) at a size
  that runs fast on two CPU cores; random weights (seeded) in safetensors.
- a byte-level BPE tokenizer trained here on a small built-in corpus, with Qwen2's pre-tokenizer split pattern
  (digits one at a time), Qwen's special tokens in Qwen's order, and Qwen's chat format;
- a `Qwen3VLProcessor` with Qwen's image settings (patch 16, merge 2, temporal patch 2, mean/std 0.5);
- `generation_config.json` stopping on `<|im_end|>` (and `<|endoftext|>`).

The same seed gives the same bytes. Nothing downstream knows the checkpoint is tiny.

`head_dim` and `mrope_section` size the text attention heads. The defaults, head_dim 32 with M-RoPE sections
[6, 5, 5] (`VLLM_TEXT_HEADS`), are what vLLM's CPU attention accepts (head_dim >= 32, in its supported list;
sections summing to head_dim / 2), in Qwen3-VL-2B's proportions ([24, 20, 20] for 128), so the embedded
checkpoints run under both rollout engines.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

# Qwen's special tokens, in the order (and so the relative ids) of the Qwen2/Qwen3 tokenizers.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]
# Qwen3 marks these as added but not special (they stay in decoded text).
QWEN_ADDED_TOKENS = [
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]
# Qwen2's pre-tokenizer split: contractions, letter runs, single digits, punctuation runs, newlines, spaces.
QWEN_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen3-VL's chat format, written for this project: <|im_start|>role\n content <|im_end|>\n, images as
# <|vision_start|><|image_pad|><|vision_end|> in place, and `<|im_start|>assistant\n` as the generation prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item or 'image_url' in item -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'video' or 'video' in item -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in item -%}{{- item['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

TRAINED_VOCAB = 768  # byte alphabet (256) + merges; special tokens come after
MIN_PIXELS = 32 * 32  # one merged 2×2 block of 16-pixel patches
MAX_PIXELS = 128 * 128  # ≤ 64 image tokens per image: small and fast on a CPU
HEAD_DIM, MROPE_SECTION = 32, (6, 5, 5)  # the default text heads (the sections sum to head_dim / 2)
VLLM_TEXT_HEADS = {"head_dim": 32, "mrope_section": (6, 5, 5)}
"""Text-head sizes that vLLM's CPU attention accepts (the defaults; `**VLLM_TEXT_HEADS` says so explicitly)."""

_WORDS = (
    "red green blue yellow orange purple black white gray brown pink cyan color colour dominant image picture "
    "what which how many is are the of in on at to a an and or with left right above below between largest "
    "smallest count shapes circle circles square squares triangle triangles cube cubes sphere spheres cylinder "
    "answer question think reason step first then so therefore final value values chart bar bars line pie label "
    "labels axis total difference sum percent percentage year month highest lowest angle angles side sides length "
    "area perimeter triangle right hypotenuse degree degrees rectangle radius diameter find compute solve equals "
    "option options choose correct A B C D E yes no one two three four five six seven eight nine ten user assistant "
    "system"
).split()


def _corpus(n_lines: int = 4000) -> list[str]:
    """A fixed, deterministic training corpus: prompt-like sentences, numbers, LaTeX and answer tags."""
    import random

    rng = random.Random(1234)  # fixed: the tokenizer does not depend on the weight seed
    lines = []
    for i in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        num = str(rng.randint(0, 10 ** rng.randint(1, 5)))
        kind = i % 6
        if kind == 0:
            lines.append(" ".join(words).capitalize() + "?")
        elif kind == 1:
            lines.append(f"<think>{' '.join(words)}.</think><answer>{rng.choice(_WORDS[:11])}</answer>")
        elif kind == 2:
            lines.append(f"The answer is \\boxed{{{num}}}. \\frac{{{num}}}{{{rng.randint(2, 9)}}} + \\sqrt{{{num}}}")
        elif kind == 3:
            lines.append(f"{' '.join(words)}: {num}% ({rng.choice('ABCD')}) {rng.random():.2f}")
        elif kind == 4:
            lines.append("\n".join([" ".join(words[:3]), " ".join(words[3:])]))
        elif i % 12 == 5:
            lines.append(f"user\n{' '.join(words)}\nassistant\n{rng.choice(_WORDS[:11])}\n")
        else:
            lines.append(f"How many {rng.choice(_WORDS[30:40])} are there? Answer: {num[:1]}.")
    return lines


def train_tokenizer():
    """A byte-level BPE with Qwen's split pattern, special tokens and chat format, as a `Qwen2Tokenizer`."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINED_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())
    vocab = state["model"]["vocab"]
    for t in QWEN_SPECIAL_TOKENS + QWEN_ADDED_TOKENS:  # ids right after the trained vocabulary, in Qwen's order
        vocab[t] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["model"]["merges"]]
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        model_max_length=32768,
    )
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_ADDED_TOKENS])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(tokenizer, *, moe: bool = False, head_dim: int = HEAD_DIM,
                mrope_section: tuple[int, ...] | list[int] = MROPE_SECTION):
    """A Qwen3-VL config of the real architecture at toy size, with the token ids of `tokenizer`."""
    from transformers import Qwen3VLConfig, Qwen3VLMoeConfig

    if len(mrope_section) != 3 or 2 * sum(mrope_section) != head_dim:
        raise ValueError(f"mrope_section {list(mrope_section)} must be 3 sections summing to head_dim / 2 = "
                         f"{head_dim / 2:g}")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    vocab_size = ((len(tokenizer) + 63) // 64) * 64  # padded like Qwen's 151,936
    text = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": list(mrope_section),
                         "mrope_interleaved": True},
        tie_word_embeddings=True, pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3, patch_size=16,
        spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=256,
        deepstack_visual_indexes=[1],
    )
    common = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, decoder_sparse_step=1)
        return Qwen3VLMoeConfig(text_config=text, vision_config=vision, **common)
    return Qwen3VLConfig(text_config=text, vision_config=vision, **common)


def tiny_processor(tokenizer):
    """Qwen3-VL's processor with Qwen's image settings, sized for the tiny model's small images."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    norm = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], patch_size=16, temporal_patch_size=2,
                merge_size=2)
    image = Qwen2VLImageProcessor(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}, **norm)
    video = Qwen3VLVideoProcessor(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS * 8}, **norm)
    return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                            chat_template=CHAT_TEMPLATE)


def build_tiny_checkpoint(out_dir: str | Path, *, moe: bool = False, seed: int = 0, head_dim: int = HEAD_DIM,
                          mrope_section: tuple[int, ...] | list[int] = MROPE_SECTION) -> Path:
    """Write the tiny Qwen3-VL checkpoint (dense, or MoE) to `out_dir` and return it. Same seed, same bytes."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer()
    config = tiny_config(tokenizer, moe=moe, head_dim=head_dim, mrope_section=mrope_section)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id],
        do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
    )
    model.save_pretrained(out, safe_serialization=True)
    tiny_processor(tokenizer).save_pretrained(out)
    return out


def tiny_param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def cached_tiny_checkpoint(*, moe: bool = False, seed: int = 0, cache_dir: str | Path | None = None,
                           head_dim: int = HEAD_DIM,
                           mrope_section: tuple[int, ...] | list[int] = MROPE_SECTION) -> Path:
    """Build the tiny checkpoint once into a cache folder (atomically, safe for several ranks) and return it.

    The cache is `$SAPO_VL_CACHE` or `~/.cache/sapo_vl`; this is how the names `sapo-vl/tiny-qwen3-vl` and
    `sapo-vl/tiny-qwen3-vl-moe` resolve to a local folder, as a hub id resolves to a downloaded snapshot.
    """
    import transformers

    root = Path(cache_dir or os.environ.get("SAPO_VL_CACHE") or Path.home() / ".cache" / "sapo_vl")
    heads = f"-hd{head_dim}-mrope{'_'.join(map(str, mrope_section))}"  # in every name: caches of other heads differ
    name = f"tiny-qwen3-vl{'-moe' if moe else ''}{heads}-seed{seed}-tf{transformers.__version__}"
    target = root / name
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        build_tiny_checkpoint(tmp, moe=moe, seed=seed, head_dim=head_dim, mrope_section=mrope_section)
        try:
            os.rename(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
