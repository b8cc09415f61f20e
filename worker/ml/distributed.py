"""Data-parallel training (torch DistributedDataParallel): what each rank of one training run does differently.

One run over ``world`` processes (one per GPU; on the CPU, gloo processes for tests) is the same run as on one
process: every rank draws the same global batches of ``config.batch_size`` (the effective batch, whatever the
world size) and trains on its slice of each, ``batch[rank::world]``; the loss of a slice is scaled so that DDP's
gradient average equals the gradient of the global batch's mean loss (a class-weighted mean included). The loss
curve, the optimizer steps and the checkpoints are those of one process, up to floating-point order and dropout
(each rank draws its own masks), so a checkpoint resumes with any world size.

Rank 0 is the process that launched the run (a worker's prefork child): it alone evaluates, runs the callbacks
(progress, the stop signal, checkpoints: the database) and shares what the others need through collectives.
Every step the ranks all-reduce the stop request with the step's loss, so they stop together.
Nothing here imports the database or Celery; worker/ml/ddp_rank.py starts the other ranks.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

HOST = "127.0.0.1"
TIMEOUT = datetime.timedelta(minutes=30)  # a collective waits this long for a rank (rank 0's evaluation, a save)


def world_size(requested: int, device: str) -> int:
    """Processes for one training run: ``requested`` if above 0, else every visible GPU when training runs on
    CUDA (``device`` auto or cuda; a pinned ``cuda:N`` is one GPU), else 1. More than the visible GPUs is refused."""
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if requested > 1 and device == "mps":
        raise ValueError("training over several processes runs on CUDA GPUs or on the CPU, not on mps")
    if requested > 0:
        if cuda and requested > torch.cuda.device_count():
            raise ValueError(f"BERTJOBS_TRAIN_PROCESSES={requested}, but this worker sees "
                             f"{torch.cuda.device_count()} GPU(s) (CUDA_VISIBLE_DEVICES, bertjobs worker --gpus)")
        return requested
    return torch.cuda.device_count() if cuda else 1


def rank_device(device: str, rank: int) -> str:
    """The device rank ``rank`` trains on: GPU ``rank`` of the visible ones on CUDA, else the CPU."""
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    return f"cuda:{rank}" if cuda else "cpu"


@dataclass
class Parallel:
    """This process's rank in a training run's process group, and the collectives the Trainer calls."""

    rank: int
    world: int
    device: torch.device
    rank_rngs: list = field(default_factory=list)  # every rank's generator states at the last epoch's end

    @classmethod
    def join(cls, rank: int, world: int, port: int, device: str) -> "Parallel":
        """Join the group whose store rank 0 serves on ``port`` (rank 0 creates it: ``serve_store``)."""
        store = dist.TCPStore(HOST, port, world, is_master=False, timeout=TIMEOUT)
        return cls.start(store, rank, world, device)

    @classmethod
    def start(cls, store, rank: int, world: int, device: str) -> "Parallel":
        target = torch.device(device)
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo", store=store, rank=rank,
                                world_size=world, timeout=TIMEOUT)
        return cls(rank, world, target)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def wrap(self, model):
        """The module the training steps run: DDP over ``model`` (whose state_dict keeps its own key names)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # BERT's buffers (position and token type ids) are constants: no buffer broadcast before each forward.
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    def reseed(self, seed: int) -> None:
        """Ranks above 0 draw their own dropout masks (the same stream would mask every slice alike)."""
        if self.rank:
            torch.manual_seed(seed * 1_000_003 + self.rank)

    def shard(self, batch: Sequence[int]) -> list[int]:
        """This rank's slice of a global batch; a rank with none runs the first row at zero weight (DDP needs
        every rank in every backward pass)."""
        return list(batch[self.rank::self.world]) or list(batch[:1])

    def loss(self, logits: torch.Tensor, targets: list, whole: list, weight, multi_label: bool) -> torch.Tensor:
        """This rank's share of the global batch's mean loss, times ``world`` (DDP averages the gradients)."""
        functional = torch.nn.functional
        if multi_label:
            target = torch.as_tensor(targets, dtype=torch.float32, device=logits.device)
            total = functional.binary_cross_entropy_with_logits(logits, target, pos_weight=weight, reduction="sum")
            norm = float(len(whole) * logits.shape[-1])
        else:
            target = torch.as_tensor(targets, device=logits.device)
            total = functional.cross_entropy(logits, target, weight=weight, reduction="sum")
            norm = float(weight[torch.as_tensor(whole, device=weight.device)].sum()) if weight is not None \
                else float(len(whole))
        share = total * (self.world / norm)
        return share * 0 if len(whole) <= self.rank else share

    def no_sync(self, net, stepping: bool):
        """Accumulation micro-batches skip the gradient all-reduce; the step's last one does it."""
        return contextlib.nullcontext() if stepping else net.no_sync()

    def step(self, share: torch.Tensor, stop: bool) -> tuple[bool, float]:
        """After a batch: (whether any rank asked to stop, the global batch's mean loss)."""
        flags = torch.tensor([float(stop), share.item() / self.world], dtype=torch.float64, device=self.device)
        dist.all_reduce(flags)
        return bool(flags[0].item() > 0), flags[1].item()

    def same(self, value: int, what: str) -> None:
        """Every rank holds the same ``value`` (one that read another checkpoint would train another run)."""
        bounds = torch.tensor([value, -value], dtype=torch.int64, device=self.device)
        dist.all_reduce(bounds, op=dist.ReduceOp.MAX)
        if bounds[0].item() != -bounds[1].item():
            raise RuntimeError(f"the ranks of a training run disagree on the {what}: {-bounds[1].item()} to "
                               f"{bounds[0].item()}")

    def evaluated(self, evaluate: Callable[[Any], dict], model) -> dict:
        """Rank 0 evaluates; every rank gets its metrics (the same epoch choice and early stopping everywhere)."""
        box = [evaluate(model) if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_rng(self, state: dict) -> None:
        """Rank 0 keeps every rank's generator states for the checkpoint."""
        gathered = [None] * self.world if self.main else None
        dist.gather_object(state, gathered, dst=0)
        self.rank_rngs = gathered or []

    def own_rng(self, state: dict) -> dict | None:
        """This rank's generators in a checkpoint; None where it holds none (one saved by fewer ranks)."""
        if "rank_rng" in state:
            saved = state["rank_rng"]
            return saved[self.rank] if self.rank < len(saved) else None
        return state if self.main else None


def serve_store(world: int):
    """Rank 0's rendezvous store on a free loopback port (its ``port`` goes to the other ranks)."""
    return dist.TCPStore(HOST, 0, world, is_master=True, timeout=TIMEOUT, wait_for_workers=False)


def threads_per_rank(world: int) -> int:
    """CPU threads for each of ``world`` processes sharing this machine."""
    return max(1, (os.cpu_count() or 1) // world)
