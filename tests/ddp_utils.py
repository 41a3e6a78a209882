"""Run a function on N gloo processes (CPU) and collect what each rank returns."""
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank, world, init_file, fn, args, out_dir):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    # a file store, not a TCP port: parallel test workers cannot collide on it
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_distributed(fn, world: int = 2, args: tuple = ()) -> list:
    """Spawn `world` gloo processes running `fn(rank, world, *args)`; return each rank's result (rank order).

    `fn` must be importable (defined at module level of a test module).
    """
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(world, str(Path(d) / "store"), fn, args, d), nprocs=world, join=True)
        return [torch.load(Path(d) / f"rank{r}.pt", weights_only=False) for r in range(world)]
