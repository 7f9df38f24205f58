"""Split placement (`rollout.placement: split`): which ranks train and which roll out, their process groups, and the
channel between them.

One launch (`deepspeed` / `torchrun`, one node or many) starts W ranks. The first T train, the last R = W − T only
sample (`rollout.rollout_ranks`). Each role gets its own default process group, so DeepSpeed, ZeRO and every
collective of the training loop see a job of T ranks exactly as a colocated run of T ranks would (a rollout rank is a
group of one). The roles meet through two groups built on the launch's own store:

- `data`: gloo over all W ranks, for messages (objects written by `torch.save`): a trainer's hello, the scored
  batches, the headers of weight buckets. Point to point only.
- `weights`: trainer 0 and the R rollout ranks, for the weight tensors (NCCL on GPUs, gloo on the CPU).

Every wait on the other role is bounded by `rollout.sync_timeout_s`; a peer that dies closes its connections, so
the waiting side fails at once. Both become a `SplitError` naming the rank and what was awaited.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as tdist

from .weights import SYNC_BUCKET_BYTES

Tensor = torch.Tensor


class SplitError(RuntimeError):
    """The other role of a split placement did not answer (dead, hung or out of step); names the rank."""


@dataclass(frozen=True)
class Placement:
    """The launch's W ranks: ranks 0..T−1 train, T..W−1 roll out."""

    world: int
    trainers: int
    rank: int
    """This process's rank in the launch."""

    @property
    def is_trainer(self) -> bool:
        return self.rank < self.trainers

    @property
    def rollout_ranks(self) -> list[int]:
        return list(range(self.trainers, self.world))

    def server_of(self, trainer: int) -> int:
        """The rollout rank that samples trainer `trainer`'s share of each batch (round robin)."""
        return self.trainers + trainer % (self.world - self.trainers)

    def clients_of(self, rollout_rank: int) -> list[int]:
        """The trainers whose shares `rollout_rank` samples, in order."""
        return [t for t in range(self.trainers) if self.server_of(t) == rollout_rank]


def rollout_rank_count(spec: float, world: int) -> int:
    """`rollout.rollout_ranks` as a number of ranks: a whole number as is, a fraction of `world` rounded (≥ 1)."""
    return int(spec) if spec >= 1 else max(1, round(spec * world))


def placement_of(placement: str, rollout_ranks: float, world: int, rank: int) -> Placement | None:
    """The split of a launch of `world` ranks, or None when colocated. Raises ValueError naming the key when the
    launch is too small for it."""
    if placement != "split":
        return None
    r = rollout_rank_count(rollout_ranks, world)
    if r >= world:
        raise ValueError(f"rollout.placement=split with rollout.rollout_ranks={rollout_ranks:g} leaves no training "
                         f"rank in a launch of {world} rank(s); launch more ranks or lower rollout.rollout_ranks")
    return Placement(world=world, trainers=world - r, rank=rank)


# ---------------------------------------------------------------------------------------------------- groups
def launch_ranks() -> tuple[int, int]:
    """(rank, world size) the launcher set (RANK / WORLD_SIZE; a plain process is rank 0 of 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def join(p: Placement, *, backend: str, timeout_s: float) -> "Channel":
    """Join this role's default process group (trainers: T ranks; a rollout rank: itself) and the two bridge
    groups; RANK / WORLD_SIZE are set to the role's own, for the libraries that read them."""
    store, _, _ = next(tdist.rendezvous("env://"))  # the launch's store (the launcher's agent store under torchrun)
    if p.is_trainer:
        tdist.init_process_group(backend, store=tdist.PrefixStore("sapo_vl/trainers/", store), rank=p.rank,
                                 world_size=p.trainers)
        os.environ.update(RANK=str(p.rank), WORLD_SIZE=str(p.trainers))
    else:
        tdist.init_process_group(backend, store=tdist.PrefixStore(f"sapo_vl/rollout{p.rank}/", store), rank=0,
                                 world_size=1)
        os.environ.update(RANK="0", WORLD_SIZE="1")
    timeout = timedelta(seconds=timeout_s)
    data = tdist.ProcessGroupGloo(tdist.PrefixStore("sapo_vl/data/", store), p.rank, p.world, timeout)
    weights = None
    members = [0, *p.rollout_ranks]
    if p.rank in members:
        wstore = tdist.PrefixStore("sapo_vl/weights/", store)
        if backend == "nccl":
            opts = tdist.ProcessGroupNCCL.Options()
            opts._timeout = timeout
            weights = tdist.ProcessGroupNCCL(wstore, members.index(p.rank), len(members), opts)
        else:
            weights = tdist.ProcessGroupGloo(wstore, members.index(p.rank), len(members), timeout)
    return Channel(p, data, weights, timeout_s=timeout_s)


# ---------------------------------------------------------------------------------------------------- channel
class Channel:
    """Messages and weights between the roles (see the module docstring)."""

    def __init__(self, p: Placement, data, weights, *, timeout_s: float):
        self.p, self.data, self.weights, self.timeout_s = p, data, weights, timeout_s
        self.pending: list[tuple[Any, Tensor, int]] = []
        """Sends not yet received: (work, the buffer it reads, kept alive until it completes, destination)."""

    def _fail(self, err: Exception, peer: str, what: str) -> SplitError:
        detail = f"{type(err).__name__}: {str(err).strip()[:300]}"
        if "timeout" not in str(err).lower() and "timed out" not in str(err).lower():  # closed / reset by peer
            return SplitError(f"split placement: {peer} closed its connection while this rank waited for {what} "
                              f"(it died: its own log says why): {detail}")
        return SplitError(f"split placement: {peer} did not deliver {what} within rollout.sync_timeout_s="
                          f"{self.timeout_s:g} s (hung, or slower than that: raise rollout.sync_timeout_s if it is "
                          f"only slow): {detail}")

    def name(self, rank: int) -> str:
        return f"{'rollout' if rank >= self.p.trainers else 'training'} rank {rank}"

    def send(self, obj: Any, dst: int) -> None:
        """Send a picklable object to rank `dst` without waiting for it to be received."""
        buf = io.BytesIO()
        torch.save(obj, buf)  # (torch.save writes a storage once however many views share it; pickle, once per view)
        payload = torch.frombuffer(bytearray(buf.getbuffer()), dtype=torch.uint8)
        size = torch.tensor([payload.numel()], dtype=torch.int64)
        for t in (size, payload):
            self.pending.append((self.data.send([t], dst, 0), t, dst))
        self.pending = [x for x in self.pending if not x[0].is_completed()]

    def recv(self, src: int, what: str) -> Any:
        """The next object rank `src` sent; `what` names it in the error when it does not come."""
        size = torch.zeros(1, dtype=torch.int64)
        try:
            self.data.recv([size], src, 0).wait()
            payload = torch.empty(int(size.item()), dtype=torch.uint8)
            self.data.recv([payload], src, 0).wait()
        except RuntimeError as err:
            raise self._fail(err, self.name(src), what) from err
        return torch.load(io.BytesIO(payload.numpy().tobytes()), weights_only=False)  # our own ranks' objects

    def flush(self, what: str) -> None:
        """Wait until every send of this rank was received."""
        for work, _, dst in self.pending:
            try:
                work.wait()
            except RuntimeError as err:
                raise self._fail(err, self.name(dst), what) from err
        self.pending = []

    # ------------------------------------------------------------------------------------------------ weights
    def send_weights(self, named: Iterable[tuple[str, Tensor]], version: int, *,
                     bucket_bytes: int = SYNC_BUCKET_BYTES) -> int:
        """Trainer 0: send `named` (checkpoint tensors, `weights.streamed_weights`) to every rollout rank in buckets
        of about `bucket_bytes`: each a header (names, shapes, dtypes) on `data`, then one flat byte tensor broadcast
        on `weights`; a last header carries `version`. Returns the bytes sent."""
        parts: list[tuple[str, Tensor]] = []
        size = sent = 0
        for name, tensor in named:
            parts.append((name, tensor.detach().contiguous().clone()))  # a ZeRO-3 bucket is partitioned again
            size += tensor.numel() * tensor.element_size()
            if size >= bucket_bytes:
                sent += self._send_bucket(parts, version)
                parts, size = [], 0
        if parts:
            sent += self._send_bucket(parts, version)
        for r in self.p.rollout_ranks:
            self.send({"version": version, "done": True}, r)
        return sent

    def _send_bucket(self, parts: list[tuple[str, Tensor]], version: int) -> int:
        header = {"version": version, "done": False,
                  "tensors": [(n, tuple(t.shape), t.dtype) for n, t in parts]}
        for r in self.p.rollout_ranks:
            self.send(header, r)
        flat = torch.cat([t.reshape(-1).view(torch.uint8) for _, t in parts]).to(self.wire_device)
        self._broadcast(flat, f"the weight sync of version {version}")
        return flat.numel()

    def recv_weights(self, device: torch.device) -> Iterator[tuple[str, Tensor]]:
        """A rollout rank: the next version's tensors, bucket by bucket (a generator; the version the last header
        names is then in `self.received_version`, set only once every bucket arrived)."""
        while True:
            header = self.recv(0, "the next weight sync")
            if header["done"]:
                self.received_version = int(header["version"])
                return
            sizes = [math.prod(shape) * torch.empty((), dtype=dt).element_size() for _, shape, dt in header["tensors"]]
            flat = torch.empty(sum(sizes), dtype=torch.uint8, device=self.wire_device)
            self._broadcast(flat, f"the weight sync of version {header['version']}")
            for (name, shape, dtype), chunk in zip(header["tensors"], flat.split(sizes)):
                yield name, chunk.clone().view(dtype).view(shape).to(device)  # (clone: aligned for the dtype)

    @property
    def wire_device(self) -> torch.device:
        """Where weight tensors travel: the current GPU under NCCL, the CPU under gloo."""
        if isinstance(self.weights, getattr(tdist, "ProcessGroupNCCL", ())):
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _broadcast(self, flat: Tensor, what: str) -> None:
        opts = tdist.BroadcastOptions()
        opts.rootRank = 0
        try:
            self.weights.broadcast([flat], opts).wait()
        except RuntimeError as err:
            peer = self.name(0) if not self.p.is_trainer else f"one of the rollout ranks {self.p.rollout_ranks}"
            raise self._fail(err, peer, what) from err
