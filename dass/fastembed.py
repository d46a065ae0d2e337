"""Many remapped students' functional maps at once, bit-identical to :func:`dass.embed.remapped_map`.

Scoring a search pool (docs/method.md#embedding: every candidate is remapped from the teacher and run on the fixed
noise) calls :func:`~dass.embed.remapped_map` once per candidate. Two kinds of work in that loop are
redundant, and this module removes them without changing a single bit of the result:

* **shared prefixes.** A candidate's map is a chain of steps -- the stem at width ``w_00``, then each
  block ``(stage, block, teacher block, width)`` in order. Two candidates whose chains agree up to some
  step have identical activations up to there (the stem and the first block of stage 1 depend only on
  ``w_00``: 9 different values in the paper's space). Candidates are visited in lexicographic order of
  their chains, depth first, keeping the activation after every step of the current chain on a
  stack: a step is computed once for all candidates sharing the prefix, and memory stays at one
  chain of activations.
* **repeated slicing.** Every step slices teacher conv weights and BN vectors with ``index_select``
  (15% of the per-candidate time at paper scale, measured). The slices are kept in a byte-bounded
  LRU cache keyed by (layer, output selection, input selection).

Both paths run the steps of :class:`dass.remap.TeacherSlices` (:func:`dass.remap.remap_steps`), with
the same shapes and the same operands (a cached slice is the very tensor the uncached call returned),
so each map is equal to ``remapped_map``'s bit for bit; the tests check ``torch.equal`` on both spaces.

:func:`remapped_maps_parallel` spreads a large pool over single-threaded CPU processes
(``embed.workers``), each running :func:`remapped_maps` on a contiguous run of the sorted pool.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Hashable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from .embed import pad_channels
from .errors import ConfigError
from .nets import ResNet
from .parallel import process_pool
from .remap import STRATEGIES, Step, TeacherSlices, remap_steps
from .space import Arch


class _SliceCache:
    """``index_select`` results of teacher tensors, least recently used evicted past ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = self.misses = 0
        self._d: "OrderedDict[Hashable, tuple[torch.Tensor, ...]]" = OrderedDict()

    def get(self, key: Hashable, make) -> tuple[torch.Tensor, ...]:
        if key in self._d:
            self._d.move_to_end(key)
            self.hits += 1
            return self._d[key]
        self.misses += 1
        val = make()
        size = sum(t.numel() * t.element_size() for t in val)
        if size <= self.max_bytes:
            self._d[key] = val
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self._d.popitem(last=False)
                self.bytes -= sum(t.numel() * t.element_size() for t in old)
        return val


# the steps a candidate's map is computed by (the module docstring's "chain")
chain = remap_steps


class _CachedSlices(TeacherSlices):
    """:class:`~dass.remap.TeacherSlices` whose slices are kept in a :class:`_SliceCache` (the very tensors
    the parent returns, so every map stays bit-identical)."""

    def __init__(self, teacher: ResNet, strategy: str, cache: _SliceCache):
        super().__init__(teacher, strategy)
        self.cache = cache

    def conv_weight(self, conv, ok, ik):
        make = super().conv_weight
        return self.cache.get(("conv", id(conv), ok, ik), lambda: (make(conv, ok, ik),))[0]

    def bn_params(self, bn, ok):
        make = super().bn_params
        return self.cache.get(("bn", id(bn), ok), lambda: make(bn, ok))


@torch.no_grad()
def remapped_maps(teacher: ResNet, archs: Sequence[Arch], noise: torch.Tensor,
                  strategy: str = "copy_paste_first", stage: int = 4, channels: Optional[int] = None,
                  cache_mb: float = 256.0, stats: Optional[dict] = None) -> torch.Tensor:
    """``torch.stack([remapped_map(teacher, a, noise, strategy, stage, channels) for a in archs])``,
    computed with shared prefixes and cached slices (bit-identical; see the module docstring).

    ``channels`` must be given when the archs' maps differ in width (then every map is zero-padded to
    it, as the database does). ``stats`` (a dict), when given, receives the number of steps computed
    vs the number the per-candidate loop would compute, and the cache's hit count.
    """
    if strategy not in STRATEGIES or strategy == "random":
        raise ValueError(f"remapped_maps needs a copy strategy, got {strategy!r}; random init has no teacher "
                         f"prefix to share (use dass.embed.student_map)")
    archs = list(archs)
    if not archs:
        raise ValueError("remapped_maps needs at least one architecture")
    cache = _SliceCache(int(cache_mb * 2 ** 20))
    step = _CachedSlices(teacher, strategy, cache)
    x0 = noise.to(step.device)
    chains = [chain(teacher, a, strategy, stage) for a in archs]
    order = sorted(range(len(archs)), key=lambda k: chains[k])
    outs: list[Optional[torch.Tensor]] = [None] * len(archs)
    path: list[Step] = []          # the steps of the current chain ...
    acts: list[torch.Tensor] = []  # ... and the activation after each of them
    computed = 0
    for k in order:
        c = chains[k]
        common = 0
        while common < min(len(path), len(c)) and path[common] == c[common]:
            common += 1
        del path[common:], acts[common:]
        for st in c[common:]:
            acts.append(step.stem(x0, st) if st[0] == "stem" else step.block(acts[-1], st))
            path.append(st)
            computed += 1
        out = acts[-1].float().mean(0).cpu()
        outs[k] = pad_channels(out, channels) if channels else out
    if stats is not None:
        stats.update(steps=computed, steps_per_candidate_loop=sum(len(c) for c in chains),
                     cache_hits=cache.hits, cache_misses=cache.misses)
    return torch.stack(outs)


# --------------------------------------------------------------------------------------------- #
# several CPU processes
# --------------------------------------------------------------------------------------------- #

_WORKER: dict = {}


def _worker_init(arch: dict, num_classes: int, strides: list, state: dict, noise: torch.Tensor) -> None:
    teacher = ResNet(Arch.from_dict(arch), num_classes, strides)
    teacher.load_state_dict(state)
    _WORKER.update(teacher=teacher.eval(), noise=noise)


def _worker_chunk(job: tuple) -> tuple:
    ids, arch_dicts, strategy, stage, channels = job
    maps = remapped_maps(_WORKER["teacher"], [Arch.from_dict(d) for d in arch_dicts], _WORKER["noise"], strategy,
                         stage, channels)
    return ids, maps


def worker_initargs(teacher: ResNet, noise: torch.Tensor) -> tuple:
    """What :func:`_worker_init` needs to rebuild ``teacher`` and the noise in a spawned process."""
    state = {k: v.detach().cpu() for k, v in teacher.state_dict().items()}
    return teacher.arch.to_dict(), teacher.num_classes, list(teacher.strides), state, noise.detach().cpu()


def chunk_jobs(teacher: ResNet, archs: Sequence[Arch], n_chunks: int, strategy: str = "copy_paste_first",
               stage: int = 4, channels: Optional[int] = None) -> list[tuple]:
    """:func:`_worker_chunk` jobs: the pool sorted by chain, cut into ``n_chunks`` contiguous runs (candidates
    sharing a prefix mostly stay together); each job carries its candidates' input positions."""
    order = sorted(range(len(archs)), key=lambda k: chain(teacher, archs[k], strategy, stage))
    bounds = [round(j * len(order) / n_chunks) for j in range(n_chunks + 1)]
    return [(order[a:b], [archs[k].to_dict() for k in order[a:b]], strategy, stage, channels)
            for a, b in zip(bounds, bounds[1:]) if b > a]


def auto_workers(requested: int, n_archs: int, device) -> int:
    """``embed.workers``: >= 1 as given; 0 = one process per CPU core (at most 8) on CPUs with 4 or more
    cores and pools of 512 or more candidates, else 1. Why: starting the processes costs ~5.6 s (spawn,
    imports, shipping the teacher), and on 2 cores two processes embed 80 candidates/s against 55 in one,
    so they only break even at ~1,000 candidates there (bench/RESULTS.md section 2)."""
    if requested < 0:
        raise ConfigError(f"embed.workers={requested}: give 0 (auto) or a number of processes >= 1")
    if requested > 0:
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.device(device).type != "cpu" or n_archs < 512 or cores < 4:
        return 1
    return min(8, cores)


def remapped_maps_parallel(teacher: ResNet, archs: Sequence[Arch], noise: torch.Tensor,
                           strategy: str = "copy_paste_first", stage: int = 4, channels: Optional[int] = None,
                           workers: int = 2, progress: bool = False, desc: str = "embed") -> torch.Tensor:
    """:func:`remapped_maps` spread over ``workers`` spawned CPU processes of one thread each.

    Why: these batch-1 convolutions use two cores better as two single-threaded processes than as one
    process with two threads (bench/RESULTS.md section 2: 80 vs 52 candidates/s). The pool is sorted by
    chain and cut into contiguous chunks (so candidates sharing a prefix mostly stay together); every
    map is computed by :func:`remapped_maps`, so the result equals the one-process call
    (``tests/test_fastembed.py``). ``workers <= 1`` or a CUDA teacher runs in this process.
    """
    archs = list(archs)
    if workers <= 1 or teacher.conv1.weight.device.type != "cpu" or len(archs) < 2 * workers:
        return remapped_maps(teacher, archs, noise, strategy, stage, channels)
    if strategy not in STRATEGIES or strategy == "random":
        raise ValueError(f"remapped_maps_parallel needs a copy strategy, got {strategy!r}")
    # a few chunks per process: balance and a moving progress bar
    jobs = chunk_jobs(teacher, archs, min(len(archs), 4 * workers), strategy, stage, channels)
    outs: list[Optional[torch.Tensor]] = [None] * len(archs)
    with process_pool(workers, _worker_init, worker_initargs(teacher, noise)) as pool, \
            tqdm(total=len(archs), desc=desc, unit="cand", disable=not progress, dynamic_ncols=True) as bar:
        for ids, maps in pool.imap_unordered(_worker_chunk, jobs):
            for k, m in zip(ids, maps):
                outs[k] = m
            bar.update(len(ids))
    return torch.stack(outs)
