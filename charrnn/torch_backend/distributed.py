"""Data-parallel training under torchrun: the processes of a run, set up and kept in step.

torchrun starts one process per GPU (or CPU share) on every machine and tells each its RANK,
WORLD_SIZE and LOCAL_RANK; torch.distributed connects them (gloo on CPUs, NCCL on GPUs). Each
process trains B / N of the run's B streams (the rows [rank * B/N, (rank + 1) * B/N) of every
window), DDP averages the gradients, and since every process then holds the same parameters and
makes the same decisions (the loss and stopping are agreed), one run goes on in N places.

Rank 0 alone writes the run directory: it sets the run up (fresh or resumed) while the others
wait, then they read the checkpoint it wrote, so that every process starts from the very same
file. A run resumes with any N that divides B; other Ns are refused by name.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..settings import BY_NAME, TrainConfig
from ..errors import CharRNNError, ConfigError
from . import import_torch, resolve_device

# How long a process waits for the others in one collective before giving up (a checkpoint of a
# large model, or the first validation, can keep rank 0 away for a while).
TIMEOUT = datetime.timedelta(minutes=30)


class PeerLost(CharRNNError):
    """Another process of the run failed or was stopped; this one stops without writing."""


@dataclass
class World:
    rank: int
    size: int
    local_rank: int
    device: Any = None  # this process's torch.device, once joined
    comm_device: Any = None  # where collectives' tensors live: the GPU under NCCL, else the CPU

    @classmethod
    def from_env(cls) -> "World":
        try:
            return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
        except (KeyError, ValueError):
            raise ConfigError("WORLD_SIZE is set but RANK is not: start data-parallel runs with torchrun") from None

    def uneven_message(self, batch_size: int) -> str:
        return (f"the batch of {batch_size} streams (--batch-size) does not split evenly among {self.size} processes: "
                f"each trains B/{self.size} of the streams; use a batch size that is a multiple of {self.size}, "
                f"or a number of processes that divides {batch_size}")

    def join(self, device: str) -> None:
        """Connect to the other processes: NCCL between GPUs, gloo between CPUs."""
        torch = import_torch()
        import torch.distributed as dist

        self.device = resolve_device(device, self.local_rank)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if not dist.is_available():
            raise ConfigError("this PyTorch has no torch.distributed: data-parallel training needs it")
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=TIMEOUT)
        self.comm_device = self.device if backend == "nccl" else torch.device("cpu")

    def set_up(self, given: dict[str, Any], run_dir: Path, resume: bool, force: bool, say: Callable[[str], None],
               out: Path | None = None) -> Any:
        """The run in every process: rank 0 makes (or resumes) it and writes its checkpoint, then
        the others resume from that checkpoint. An error of rank 0's stops every process. With
        `out`, a resume continues in that directory (resume_run), which the others then read."""
        from ..settings import requested_train
        from ..train.lm import fresh_run, resume_run

        backend, device = _launch_settings(given, run_dir, resume)
        if backend != "torch":
            raise ConfigError("torchrun trains with the torch backend: add --backend torch")
        self.join(device)
        run, failure = None, None
        if self.rank == 0:
            try:
                if not resume and requested_train(given).batch_size % self.size:
                    raise ConfigError(self.uneven_message(requested_train(given).batch_size))
                run = resume_run(given, run_dir, say, out, force) if resume else fresh_run(given, run_dir, force, say)
                if run.batch_size % self.size:
                    raise ConfigError(self.uneven_message(run.batch_size))
            except CharRNNError as e:
                failure = e
        shared = self.broadcast([str(run.run_dir) if run else None, str(failure) if failure else None])
        if failure is not None:
            raise failure
        if shared[1] is not None:
            raise _Quiet(shared[1])
        if self.rank != 0:
            # rank 0's checkpoint, with the settings a resume may change given as rank 0 had them
            resumable = {k: v for k, v in given.items() if BY_NAME[k].resumable} if resume else {}
            run = resume_run(resumable, Path(shared[0]), lambda message: None, reader=True)
        self.barrier()  # nobody trains (or writes) before everybody has read the checkpoint
        return run

    # -- collectives, each turning a lost peer into one clear line ------------------------------

    def broadcast(self, objects: list) -> list:
        import torch.distributed as dist

        with self.guard("the set-up of the run"):
            dist.broadcast_object_list(objects, src=0)
        return objects

    def barrier(self) -> None:
        import torch.distributed as dist

        with self.guard("the set-up of the run"):
            dist.barrier()

    def all_reduce(self, tensor: Any, op: str = "sum") -> None:
        import torch.distributed as dist

        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])

    def all_gather(self, tensor: Any) -> list:
        import torch.distributed as dist

        parts = [tensor.new_empty(tensor.shape) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return parts

    def guard(self, what: str) -> "_Guard":
        return _Guard(self, what)


def leave() -> None:
    """Close the process group, if this process joined one (its sockets, its threads)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except RuntimeError:
            pass  # a group whose peers are gone: the process is ending anyway


def _launch_settings(given: dict[str, Any], run_dir: Path, resume: bool) -> tuple[str, str]:
    """The backend and device the run will have, known before it is set up (the process group
    depends on them): the settings given, or for a resume the saved configuration's unless given."""
    default = TrainConfig()
    saved: dict[str, Any] = {}
    if resume:
        from ..io import checkpoint as ckpt
        from ..io.arrays import read_header

        try:
            meta, _ = read_header(run_dir / ckpt.LATEST if run_dir.is_dir() else run_dir)
            saved = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        except CharRNNError:
            saved = {}  # the resume itself will say what is wrong with the file
    pick = {k: given.get(k, saved.get(k, getattr(default, k))) for k in ("backend", "device")}
    return str(pick["backend"]), str(pick["device"])


class _Quiet(CharRNNError):
    """Rank 0's error, raised again by the other processes so that they stop too; the command line
    prints it once, from rank 0."""


class _Guard:
    """A collective's failure (a peer died, its connection closed) as a one-line PeerLost."""

    def __init__(self, world: World, what: str) -> None:
        self.world, self.what = world, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, tb: Any) -> bool:
        if kind is not None and issubclass(kind, RuntimeError) and not isinstance(error, CharRNNError):
            reason = (str(error).strip().splitlines() or [kind.__name__])[0]
            reason = re.sub(r"^\[[^\]]*\]\s*", "", reason)[:160]  # gloo's source location first
            raise PeerLost(
                f"rank {self.world.rank} of {self.world.size}: another process of this run stopped, during "
                f"{self.what} ({reason}); stopping too: the last checkpoint stands, continue with --resume"
            ) from None
        return False
