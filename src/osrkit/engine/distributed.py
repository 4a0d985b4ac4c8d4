"""Data-parallel training with PyTorch DDP: `torchrun --nproc-per-node N -m osrkit train ...`, or
`osrkit train --nproc N`, which launches exactly that.

Every rank draws the same permutation each epoch and takes its own slice of each global batch (rank r takes
samples r, r + N, ...), so the N ranks together see the single-process batch and DDP's averaged gradient is
that batch's gradient. Parameters of the loss (e.g. the rotation head) are averaged the same way. What
differs from one process, and why results are close but not bit-identical: BatchNorm normalises each rank's
slice with that slice's statistics (unless --sync-bn, CUDA only) and keeps rank 0's running statistics;
augmentation draws from a per-rank generator; all-reduce sums in another order. Rank 0 alone validates,
writes the atomic checkpoints, fits the scorer and evaluates; `--resume` loads the checkpoint on every rank.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterable, Sequence

import torch

__all__ = ["rank_and_world", "active", "is_main", "setup", "wrap", "average_gradients", "shard", "launch", "teardown"]


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def active() -> tuple[int, int]:
    """(rank, world size) of the process group this process joined (`setup`); (0, 1) when it joined none, even
    under a launcher that exports RANK/WORLD_SIZE for something else (`osrkit run`, `bench`: one process each)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return active()[0] == 0


def setup(device: str) -> str:
    """Join the process group torchrun prepared (gloo on CPU, nccl on CUDA); returns this rank's device."""
    rank, world = rank_and_world()
    if world <= 1:
        return device
    import torch.distributed as dist

    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def teardown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: str, sync_bn: bool = False) -> torch.nn.Module:
    """`model` inside DistributedDataParallel (it stays the module whose state is saved)."""
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        if not device.startswith("cuda"):
            raise ValueError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only); leave it out on CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    # some outputs feed no loss for some methods (DHRNet's decoders under plain cross-entropy): allow unused
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce-mean the gradients of parameters DDP does not own (those of the loss module)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def shard(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's slice of a global batch: positions rank, rank + world, ... A last batch with fewer samples
    than ranks gives each rank one of them (some twice), so every rank steps and the number of steps per epoch,
    and with it the learning-rate schedule, is the single-process one whatever the world size."""
    if 0 < len(indices) < world:
        return indices[rank % len(indices):rank % len(indices) + 1]
    return indices[rank::world]


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `python -m osrkit <argv>` on `nproc` local ranks through torchrun; returns its exit status."""
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "osrkit", *argv]
    return subprocess.call(cmd)
