"""Run a function on N local gloo ranks (CPU), collecting each rank's return value or its traceback."""
from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
import warnings
from typing import Any, Callable, Sequence

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port nobody listens on right now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn: Callable, args: tuple, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), FSDP2_DEVICE="cpu")
    torch.set_num_threads(1)
    try:
        queue.put((rank, fn(*args), None))
    except BaseException:  # report the failure to the parent instead of hanging it
        queue.put((rank, None, traceback.format_exc()))


def spawn(world: int, fn: Callable, *args: Any, timeout: float = 240) -> list:
    """Run fn(*args) on `world` gloo ranks; return the results by rank, raising the first rank's error."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, fn, args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in range(world):
            rank, value, err = queue.get(timeout=timeout)
            if err:
                raise RuntimeError(f"rank {rank} failed:\n{err}")
            results[rank] = value
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return [results[r] for r in range(world)]


def _port_for_run(rendezvous: str, index: int, wait_s: float = 900) -> int:
    """Rank 0 picks run `index`'s port when the run starts and leaves it in a file; the other ranks read it.

    Ports picked ahead for a whole sequence could be taken meanwhile as the local end of an earlier run's gloo
    connection (the same ephemeral range), and that run's store then fails to bind while the other ranks wait."""
    path = os.path.join(rendezvous, f"port_{index}")
    if os.environ["RANK"] == "0":
        port = free_port()
        with open(path + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(path + ".tmp", path)  # whole or absent: a reader never sees half a number
        return port
    deadline = time.monotonic() + wait_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 never published the port of run {index} in {rendezvous}")
        time.sleep(0.05)
    with open(path) as f:
        return int(f.read())


def _each_on_its_port(run_one: Callable, runs: Sequence[Any], rendezvous: str) -> list:
    out = []
    for index, run in enumerate(runs):
        os.environ["MASTER_PORT"] = str(_port_for_run(rendezvous, index))  # each run makes its own process group
        out.append(run_one(run))
    return out


def _lost_connection(error: str) -> bool:
    """A rank's error is gloo losing the TCP connection to its peer, with no error of ours behind it."""
    return "gloo/transport/tcp" in error and ("Connection closed by peer" in error
                                              or "Connection reset by peer" in error)


def spawn_runs(world: int, run_one: Callable, runs: Sequence, timeout: float = 600) -> list:
    """Call run_one(run) for each run in order on `world` ranks, each on a fresh port; every rank's list.

    A sequence whose ranks lose their gloo connection to each other (seen now and then on a loaded 2-core
    machine, never with an error of ours behind it) runs once more, with a warning; any other failure raises."""
    for attempt in (1, 2):
        try:
            with tempfile.TemporaryDirectory(prefix="spawn_ports_") as rendezvous:
                return spawn(world, _each_on_its_port, run_one, list(runs), rendezvous, timeout=timeout)
        except RuntimeError as exc:
            if attempt == 2 or not _lost_connection(str(exc)):
                raise
            warnings.warn(f"spawn_runs: the ranks lost their gloo connection ({str(exc).splitlines()[0]}); "
                          "running the sequence once more")
    raise AssertionError("unreachable")
