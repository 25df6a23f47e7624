"""torchrun DDP: the process group from torchrun's environment, gathers for losses that need the global batch.

``torchrun --nproc-per-node N -m qdrant_compat.cli.main train ...`` (or ``--nnodes``/``--rdzv-endpoint`` for
several machines) starts N copies; each reads its rank from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``. NCCL on
GPUs, gloo on CPUs. Every rank trains on its share of each step's global batch; the contrastive and
distillation terms see the whole global batch through :meth:`Dist.gather_grad` (an autograd-aware all-gather:
each rank's embeddings keep their gradient), so the loss is the same as one process on the same batch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process created the process group (and destroys it)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> Dist:
        """The torchrun environment, or a single process when ``WORLD_SIZE`` is unset or 1."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            if device.startswith("cuda"):
                torch.cuda.set_device(local)
            dist.init_process_group(backend=backend)
            owns = True
        log.info("DDP rank %d/%d (local %d) on %s", rank, world, local, device)
        return cls(rank=rank, world=world, local_rank=local, owns_group=owns)

    def device(self, device: str) -> str:
        """``cuda`` becomes this rank's GPU ``cuda:LOCAL_RANK``."""
        if self.enabled and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def gather_grad(self, t: torch.Tensor) -> torch.Tensor:
        """All ranks' rows in rank order, with gradients flowing back to each rank's own rows."""
        if not self.enabled:
            return t
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(t.contiguous()))

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """All ranks' rows in rank order (no gradient)."""
        if not self.enabled:
            return t
        import torch.distributed as dist

        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def min_int(self, value: int, device: str) -> int:
        """The smallest ``value`` over ranks (e.g. the batch size after unreadable images were dropped)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(t)
        return t

    def broadcast_array(self, arr: Any) -> Any:
        """Rank 0's float32 numpy array on every rank (e.g. the old model's targets, computed once); other
        ranks pass None. Sent as tensors: nothing is pickled."""
        if not self.enabled:
            return arr
        import numpy as np
        import torch.distributed as dist

        dev = "cuda" if dist.get_backend() == "nccl" else "cpu"
        shape = torch.zeros(2, dtype=torch.int64, device=dev)
        if self.is_main:
            shape[:] = torch.tensor(arr.shape, dtype=torch.int64)
        dist.broadcast(shape, src=0)
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(dev) if self.is_main else \
            torch.empty(tuple(int(v) for v in shape.tolist()), dtype=torch.float32, device=dev)
        dist.broadcast(t, src=0)
        return t.cpu().numpy()

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False

