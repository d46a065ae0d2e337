"""The one process pool of the project: spawned CPU workers of one thread each.

The database build, the meta-trainings of meta-test and the candidate embedding all spread
independent jobs over a few processes. They share one recipe, written once here: a ``spawn`` context
(a forked torch process can deadlock on its thread pools), one intra-op thread per worker (the workers
already share the cores; more threads per process oversubscribe them), and a clean shutdown (``close``
then ``join``: the context manager's ``terminate`` leaks the workers' semaphores).
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
from typing import Any, Callable, Iterator, Optional, Sequence


def _init(initializer: Optional[Callable], initargs: tuple) -> None:
    import torch

    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def process_pool(workers: int, initializer: Optional[Callable] = None, initargs: tuple = ()) -> Iterator[Any]:
    """A pool of ``workers`` spawned single-threaded processes; ``initializer(*initargs)`` runs in each."""
    pool = mp.get_context("spawn").Pool(int(workers), initializer=_init, initargs=(initializer, initargs))
    try:
        yield pool
    except BaseException:   # a failed job or a Ctrl-C: stop the workers now
        pool.terminate()
        raise
    pool.close()
    pool.join()


def map_processes(fn: Callable, jobs: Sequence, workers: int) -> list:
    """``[fn(job) for job in jobs]`` over at most ``workers`` processes, results in job order."""
    if not jobs:
        return []
    with process_pool(min(int(workers), len(jobs))) as pool:
        return pool.map(fn, jobs, chunksize=1)
