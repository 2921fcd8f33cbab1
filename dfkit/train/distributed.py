"""Data-parallel training under ``torchrun`` (DistributedDataParallel), and the single-process case as world size 1.

``dfkit train`` started by ``torchrun`` (``torchrun --nproc_per_node=4 -m dfkit train ...``) finds the launcher's
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and:

- joins the process group: ``nccl`` on CUDA (process ``LOCAL_RANK`` uses GPU ``cuda:LOCAL_RANK``, or ``cuda:0`` when
  each process sees one GPU), ``gloo`` on the CPU (``--device cpu``; what the tests use);
- builds the model identically in every process (same seed; DDP also broadcasts rank 0's weights);
- shards every epoch's batches: the samplers draw the same global index list in every process (seeded by
  ``(seed, epoch)``) and process ``r`` takes positions ``r, r + W, r + 2W, ...``, so one step of W processes with
  ``--batch-size B`` sees exactly the crops of one step of a single process with ``--batch-size W*B``, and DDP
  averages the gradients. BatchNorm normalises with per-process batch statistics (no SyncBatchNorm) and each process
  updates its own running statistics during an epoch; they are averaged over the processes after every epoch;
- shards validation and gathers the predictions, so every process takes the same best-epoch decision;
- gathers the SupCon embeddings of all processes (with their gradients), so the contrastive loss sees the global
  batch, as a single process with the larger batch would;
- writes the run folder (config, checkpoints, history) and shows progress from rank 0 only; the folder must be on a
  filesystem all processes read (``--resume`` loads it in every process).

Without ``torchrun`` (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) nothing here does anything: :data:`SINGLE` is the
context and the loop runs as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from dfkit.train.launch import env_int as _env_int, launched, refuse_distributed  # noqa: F401 (re-exported)

__all__ = ["DistContext", "SINGLE", "launched", "init_from_env", "shutdown", "gather_with_grad", "refuse_distributed"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world`` processes, ``local_rank`` on its machine of
    ``local_world`` processes, and whether it initialised the process group (and must destroy it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` in every process (``[obj]`` without distribution)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` in every process."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the processes."""
        if not self.enabled:
            return list(values)
        import torch.distributed as dist

        backend = dist.get_backend()
        dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        t = torch.tensor(values, dtype=torch.float64, device=dev)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def average_buffers(self, module: torch.nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm running statistics) of ``module`` over the processes, so
        that every process validates and rank 0 saves the same model; integer buffers (batch counters) are equal
        already and are left alone."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b.data)
                b.data.div_(self.world)

    def cores(self) -> int:
        """The CPU cores of this machine that are this process's share."""
        return max(1, (os.cpu_count() or 1) // max(1, self.local_world))


SINGLE = DistContext()


def init_from_env(device: str) -> tuple[DistContext, str]:
    """Join the ``torchrun`` process group (when launched by it) and pick this process's device.

    ``device`` is the requested one (``auto``, ``cpu``, ``cuda``, ``cuda:N``). Under torchrun a CUDA device becomes
    ``cuda:LOCAL_RANK`` (one GPU per process) and the backend ``nccl``; ``cpu`` uses ``gloo``. Returns
    ``(context, device)``; without torchrun ``(SINGLE, device)`` unchanged."""
    if not launched():
        return SINGLE, device
    import torch.distributed as dist

    from dfkit.errors import DfkitError

    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank, local_world = _env_int("LOCAL_RANK", 0), _env_int("LOCAL_WORLD_SIZE", world)
    want_cuda = str(device).startswith("cuda") or (str(device) == "auto" and torch.cuda.is_available())
    dev_id = None
    if want_cuda:
        if not torch.cuda.is_available():
            raise DfkitError(f"--device {device} under torchrun: CUDA is not available on this machine")
        n_gpu = torch.cuda.device_count()
        # one visible GPU per process (a scheduler set CUDA_VISIBLE_DEVICES): it is cuda:0 in every process
        index = 0 if n_gpu == 1 else local_rank
        if index >= n_gpu:
            raise DfkitError(f"torchrun started {local_world} processes on this machine but it has {n_gpu} GPU(s): "
                             "use --nproc_per_node <= the GPU count")
        torch.cuda.set_device(index)
        device, backend, dev_id = f"cuda:{index}", "nccl", torch.device("cuda", index)
    else:
        device, backend = "cpu", "gloo"
    owns = False
    if not dist.is_initialized():
        if dev_id is not None:
            dist.init_process_group(backend=backend, device_id=dev_id)
        else:
            dist.init_process_group(backend=backend)
        owns = True
    return DistContext(rank=rank, world=world, local_rank=local_rank, local_world=local_world,
                       owns_group=owns), device


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands every process the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        world = dist.get_world_size()
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
        sizes_l = [int(s.item()) for s in sizes]
        biggest = max(sizes_l)
        pad = x.new_zeros((biggest - x.shape[0], *x.shape[1:]))
        parts = [x.new_empty((biggest, *x.shape[1:])) for _ in range(world)]
        dist.all_gather(parts, torch.cat([x, pad]).contiguous())
        ctx.sizes = sizes_l
        ctx.rank = dist.get_rank()
        return torch.cat([p[:n] for p, n in zip(parts, sizes_l)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]]


def gather_with_grad(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The rows of ``x`` from every process, concatenated in rank order, differentiable.

    Every process computes the same loss on the gathered tensor; the backward sums the processes' gradients of each
    slice, and DDP's averaging then divides by the world size, so the parameter gradient equals that of the loss on
    one process holding the global batch."""
    if not ctx.enabled:
        return x
    return _GatherWithGrad.apply(x)


def gather_plain(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """:func:`gather_with_grad` without the gradient (labels)."""
    if not ctx.enabled:
        return x
    with torch.no_grad():
        return _GatherWithGrad.apply(x.detach())
