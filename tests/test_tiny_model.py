"""The embedded tiny Qwen3-VL checkpoints: built offline, loaded by the Auto classes, generating from images."""
import hashlib
import json

import pytest
import torch
from PIL import Image, ImageDraw

from sapo_vl.data.record import user_prompt
from sapo_vl.models.loading import ModelLoadError, encode_prompts, load_policy, load_processor, resolve_model_path
from sapo_vl.models.tiny import QWEN_ADDED_TOKENS, QWEN_SPECIAL_TOKENS, build_tiny_checkpoint


def _images():
    a = Image.new("RGB", (96, 64), (220, 30, 30))
    b = Image.new("RGB", (64, 128), "white")
    ImageDraw.Draw(b).rectangle((10, 10, 50, 90), fill=(20, 200, 40))
    return a, b


@pytest.mark.parametrize("variant", ["dense", "moe"])
def test_build_reload_with_auto_classes_and_generate_two_images(variant, request):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = request.getfixturevalue(f"tiny_{variant}")
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)  # no pickles
    cfg = json.loads((path / "config.json").read_text())
    expected = "Qwen3VLMoeForConditionalGeneration" if variant == "moe" else "Qwen3VLForConditionalGeneration"
    assert cfg["architectures"] == [expected]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__ == expected
    assert type(processor).__name__ == "Qwen3VLProcessor"
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 < n < 5_000_000
    ip = processor.image_processor
    assert (ip.patch_size, ip.merge_size, ip.temporal_patch_size) == (16, 2, 2)

    processor.tokenizer.padding_side = "left"
    a, b = _images()
    prompts = [user_prompt("What is the dominant color?"), user_prompt("Describe the shape.")]
    inputs = encode_prompts(processor, prompts, [[a], [b]])
    assert "mm_token_type_ids" in inputs
    # 96×64 → 6×4 patches of 16 → 24/4 = 6 image tokens; 64×128 → 4×8 → 8 tokens
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6], [1, 8, 4]]
    pad_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (inputs["input_ids"] == pad_id).sum(-1).tolist() == [6, 8]
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=6, do_sample=True)
    new = out[:, inputs["input_ids"].shape[1]:]
    assert new.shape[0] == 2 and new.shape[1] >= 1
    # the two images give different next-token distributions: the image reaches the logits
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1]
    assert not torch.allclose(logits[0], logits[1])
    swapped = encode_prompts(processor, prompts, [[b], [a]])
    with torch.no_grad():
        logits_swapped = model(**swapped).logits[:, -1]
    assert not torch.allclose(logits[0], logits_swapped[0])


def test_tokenizer_has_qwen_specials_and_chat_format(tiny_dense):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dense)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    ids = [tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS + QWEN_ADDED_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous, in Qwen's order
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    text = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
        add_generation_prompt=True, tokenize=False,
    )
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    # digits are split one by one (Qwen's pattern); round trip is lossless
    assert tok.tokenize("2024") == ["2", "0", "2", "4"]
    s = "Ünïcödé 3.14 <answer>x</answer>\n\t end"
    assert tok.decode(tok(s)["input_ids"]) == s


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    a = _digest(build_tiny_checkpoint(tmp_path / "a", seed=3))
    b = _digest(build_tiny_checkpoint(tmp_path / "b", seed=3))
    c = _digest(build_tiny_checkpoint(tmp_path / "c", seed=4))
    assert a == b
    assert a["model.safetensors"] != c["model.safetensors"] and a["tokenizer.json"] == c["tokenizer.json"]


def test_cli_tiny_model(tmp_path, capsys):
    from sapo_vl.cli import main

    assert main(["tiny-model", str(tmp_path / "m"), "--seed", "1"]) == 0
    assert "Qwen3VLForConditionalGeneration" in capsys.readouterr().out
    assert (tmp_path / "m" / "model.safetensors").exists()


def test_embedded_names_resolve_and_bad_paths_are_clear(tiny_dense, tmp_path):
    assert resolve_model_path("sapo-vl/tiny-qwen3-vl") == str(tiny_dense)
    with pytest.raises(ModelLoadError, match="does not exist.*did you mean 'sapo-vl/tiny-qwen3-vl'"):
        resolve_model_path("sapo-vl/tiny-qwen3vl/")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    # a hub id is passed through untouched, and offline it fails with a one-line reason naming it
    assert resolve_model_path("Qwen/Qwen3-VL-2B-Instruct") == "Qwen/Qwen3-VL-2B-Instruct"
    with pytest.raises(ModelLoadError, match="could not load 'Qwen/Qwen3-VL-2B-Instruct'"):
        load_processor("Qwen/Qwen3-VL-2B-Instruct")


def test_non_qwen_processor_is_refused(tmp_path, tiny_dense):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    # a text-only checkpoint: its "processor" is a tokenizer without Qwen's image tokens
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=1, vocab_size=64)).save_pretrained(tmp_path / "gpt")
    tok = AutoTokenizer.from_pretrained(tiny_dense)
    tok.save_pretrained(tmp_path / "gpt")
    with pytest.raises(ModelLoadError, match="is a 'gpt2' model, not Qwen-VL"):
        load_processor(str(tmp_path / "gpt"))
    with pytest.raises(ModelLoadError, match="is a 'gpt2' model, not Qwen-VL"):
        load_policy(str(tmp_path / "gpt"))


def test_load_policy_safetensors_only_and_dtype(tiny_dense):
    m = load_policy(str(tiny_dense), dtype="bfloat16")
    assert next(m.parameters()).dtype == torch.bfloat16
    assert not m.config.to_dict().get("auto_map")
    p = load_processor(str(tiny_dense), min_pixels=64 * 64, max_pixels=64 * 64)
    assert p.image_processor.size["longest_edge"] == 64 * 64 and p.tokenizer.padding_side == "left"
