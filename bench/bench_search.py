#!/usr/bin/env python
"""Search throughput: candidates scored per second, and meta-training episodes per second.

A candidate is *scored* when it has been remapped from the teacher and run on the fixed noise (its stage-4
functional map, docs/method.md#embedding), encoded (docs/method.md#space), sized (MACs/params, for the
budget) and given a predicted accuracy by the predictor after teacher-guided adaptation
(``dass.predictor.inference.predict``, docs/method.md#predictor, #meta-learning). Paper scale: the ResNet42 teacher at 64
px, the paper's space, 256 x 8 x 8 maps, the paper's predictor. Weights are seeded random ones (throughput
does not depend on their values).

Embedding paths:

* **per candidate**: ``dass.embed.student_map`` for each candidate (what ``dass.search.candidate_records``
  does today);
* **fastembed**: ``dass.fastembed.remapped_maps`` (shared prefixes, cached slices; bit-identical --
  checked here on the first candidates and in tests/test_fastembed.py);
* **fastembed, warm pool of 2 processes**: the sorted pool split in two halves over a pool of the
  product's workers (``dass.fastembed._worker_init/_worker_chunk``, 1 thread each), started and warmed
  before timing;
* **remapped_maps_parallel(workers=2)**: one call of the product's parallel path (what ``embed.workers``
  selects), process start-up included.

Meta-training: ``MetaTrainer`` episodes (meta-batch of 8 tasks, 50 query students, second order, one
inner step) on a seeded synthetic database of the paper's shapes, with the vmapped meta-batch
(default) and with the per-task loop.

    python bench/bench_search.py --quick     # < 1 min
    python bench/bench_search.py             # 400 candidates x 3 repeats, 20 episodes
"""
from __future__ import annotations

import math
import tempfile
import time

from common import Reporter, base_parser, cpu_cores, measured_matmul_tflops, median, print_header, setup, spread

import torch  # noqa: E402

from dass.config import load_config  # noqa: E402
from dass.embed import noise_input, student_map  # noqa: E402
from dass.fastembed import chain, remapped_maps  # noqa: E402
from dass.predictor.checkpoint import LoadedPredictor, settings_of  # noqa: E402
from dass.predictor.inference import predict  # noqa: E402
from dass.predictor.inner import init_inner_lrs  # noqa: E402
from dass.predictor.trainer import MetaTrainer, build_predictor  # noqa: E402
from dass.nets import ResNet  # noqa: E402
from dass.db.records import TaskRecords, TeacherRecord  # noqa: E402
from dass.space import SearchSpace  # noqa: E402
from dass.testing import make_fixture_task  # noqa: E402

CLASSES = 40


def make_teacher(space: SearchSpace, device="cpu") -> ResNet:
    torch.manual_seed(0)
    return ResNet(space.teacher(), CLASSES, space.stage_strides).to(device).eval()


def to_records(space: SearchSpace, archs, fmaps: torch.Tensor, teacher_rec: TeacherRecord) -> TaskRecords:
    n = len(archs)
    nan = torch.full((n,), math.nan)
    return TaskRecords(task="bench", archs=list(archs), arch_enc=torch.stack([space.encode(a) for a in archs]),
                       fmaps=fmaps, best_acc=nan, final_acc=nan.clone(), final_loss=nan.clone(),
                       macs=torch.tensor([float(space.macs(a, num_classes=CLASSES)) for a in archs]),
                       params=torch.tensor([float(space.params(a, CLASSES)) for a in archs]),
                       net_index=list(range(n)), teacher=teacher_rec, dataset_features=None)


def shared_embedding_macs(teacher: ResNet, archs, size: int) -> int:
    """Convolution MACs fastembed executes for ``archs``: every distinct chain prefix once
    (the maps of docs/method.md#embedding)."""
    seen, total = set(), 0
    for a in archs:
        c = chain(teacher, a, "copy_paste_first", 4)
        cin, hw = None, size
        for j, st in enumerate(c):
            if st[0] == "stem":
                w = st[1]
                macs = size * size * 3 * 9 * w
            else:
                s, b, _, w = st
                if b == 0:
                    hw //= teacher.strides[s]
                macs = hw * hw * 9 * (cin * w + w * w)
            if c[:j + 1] not in seen:
                seen.add(c[:j + 1])
                total += macs
            cin = w
    return total


# --------------------------------------------------------------------------------------------- #

def main() -> None:
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--candidates", type=int, default=0, help="pool size (default 400; quick 40)")
    p.add_argument("--repeats", type=int, default=0, help="timed passes per path (default 3; quick 1)")
    p.add_argument("--episodes", type=int, default=0, help="timed meta-training episodes (default 20; quick 3)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--no-processes", action="store_true", help="skip the 2-process figure")
    args = p.parse_args()
    device = setup(args)
    n = args.candidates or (40 if args.quick else 400)
    repeats = args.repeats or (1 if args.quick else 3)
    episodes = args.episodes or (3 if args.quick else 20)
    info = print_header("Search throughput (candidates scored/s) and meta-training episodes/s", args)
    rep = Reporter(info, args.json)

    cfg = load_config(None, [f"space.image_size={args.size}", "run.device=cpu"])
    space = SearchSpace.from_config(cfg)
    teacher = make_teacher(space, device)
    noise = noise_input(args.size, cfg.embed.num_noise, cfg.embed.noise_seed, device)
    C = space.stage_widths[-1]
    archs = space.sample_many(n, rng=1, unique=True)
    mean_macs = sum(space.macs(a) for a in archs) / n
    print(f"# {n} candidates, mean {mean_macs / 1e9:.3f} GMACs each at {args.size} px; embedding on {device}; "
          f"{repeats} timed passes per path after a warm-up on 8 candidates")
    t_rec = TeacherRecord(space.teacher(), space.encode(space.teacher()),
                          remapped_maps(teacher, [space.teacher()], noise, channels=C)[0], 60.0)
    model = build_predictor(cfg, to_records(space, archs[:2], torch.zeros(2, C, *t_rec.fmap.shape[1:]), t_rec))
    lrs = init_inner_lrs(model, cfg.meta.inner_lr_init)

    def per_candidate():
        return torch.stack([student_map(teacher, a, noise, "copy_paste_first", 4, C) for a in archs])

    def fast():
        return remapped_maps(teacher, archs, noise, channels=C)

    k = min(8, n)
    assert torch.equal(remapped_maps(teacher, archs[:k], noise, channels=C),
                       torch.stack([student_map(teacher, a, noise, "copy_paste_first", 4, C) for a in archs[:k]]))
    st: dict = {}
    remapped_maps(teacher, archs, noise, channels=C, stats=st)
    print(f"# fastembed computes {st['steps']} block steps where the per-candidate loop computes "
          f"{st['steps_per_candidate_loop']} ({1 - st['steps'] / st['steps_per_candidate_loop']:.1%} shared)")

    # Roofline: the convolution work fastembed must do per candidate against this machine's best fp32 matmul.
    gflop = 2 * shared_embedding_macs(teacher, archs, args.size) / n / 1e9
    peak = measured_matmul_tflops(device, n=2048, dtype=torch.float32, iters=5) * 1e3
    rep.figure("embedding work per candidate after prefix sharing", gflop, "GFLOP")
    rep.figure(f"fp32 matmul peak (2048^3, {torch.get_num_threads()} thread(s))", peak, "GFLOP/s")
    rep.figure("upper bound at that peak (embedding only)", peak / gflop, "cand/s",
               f"200 cand/s needs {200 * gflop:.0f} GFLOP/s = {200 * gflop / peak:.0%} of the peak")

    times = {"embed per candidate": [], "embed fastembed": [], "encode+size": [], "predict": []}
    for r in range(repeats):
        for name, fn in (("embed per candidate", per_candidate), ("embed fastembed", fast)):
            t0 = time.perf_counter()
            fmaps = fn()
            times[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        recs = to_records(space, archs, fmaps, t_rec)
        times["encode+size"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scores = predict(LoadedPredictor(model, lrs, settings_of(cfg)), recs)
        times["predict"].append(time.perf_counter() - t0)
        assert scores.shape == (n,) and torch.isfinite(scores).all()

    rest = median(times["encode+size"]) + median(times["predict"])
    for name in ("embed per candidate", "embed fastembed"):
        rate = [n / t for t in times[name]]
        rep.figure(f"{name}: maps/s", median(rate), "cand/s", spread(rate))
    rep.figure("encode + MACs/params: cand/s", n / median(times["encode+size"]), "cand/s")
    rep.figure("predict (adapt on teacher + score): cand/s", n / median(times["predict"]), "cand/s")
    for name in ("embed per candidate", "embed fastembed"):
        rep.figure(f"scored end to end ({name.split(' ', 1)[1]}, 1 process, {torch.get_num_threads()} thread(s))",
                   n / (median(times[name]) + rest), "cand/s", "goal: >= 200/s on 2 CPU cores")

    if not args.no_processes and device.type == "cpu" and cpu_cores() >= 2:
        from dass import fastembed
        from dass.parallel import process_pool

        # A warm pool of the product's workers (fastembed._worker_init/_worker_chunk): embedding only.
        jobs = fastembed.chunk_jobs(teacher, archs, 2, channels=C)   # one half of the sorted pool each
        init = fastembed.worker_initargs(teacher, noise)
        with process_pool(2, fastembed._worker_init, init) as pool:
            pool.map(fastembed._worker_chunk, [(ids[:2], d[:2], *rest) for ids, d, *rest in jobs])   # warm-up
            tp = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                parts = pool.map(fastembed._worker_chunk, jobs)
                tp.append(time.perf_counter() - t0)
        got = torch.zeros_like(fmaps)
        for ids, maps in parts:
            got[ids] = maps
        assert torch.equal(got, fast())
        rate = [n / t for t in tp]
        rep.figure("embed fastembed, warm pool of 2 processes x 1 thread: maps/s", median(rate), "cand/s",
                   spread(rate))
        rep.figure("scored end to end (fastembed, warm pool of 2 processes)", n / (median(tp) + rest), "cand/s",
                   "goal: >= 200/s on 2 CPU cores")
        # What one call of the product's parallel path costs, process start-up included.
        t0 = time.perf_counter()
        fastembed.remapped_maps_parallel(teacher, archs, noise, channels=C, workers=2)
        dt = time.perf_counter() - t0
        rep.figure("embed remapped_maps_parallel(workers=2), one call, start-up included", n / dt, "cand/s",
                   f"{dt:.1f} s for {n}; start-up ~{dt - n / median(rate):.1f} s")

    # ---------------------------------------------------------------- meta-training episodes
    for vmap in (True, False):
        mcfg = load_config(None, [f"space.image_size={args.size}", f"meta.vmap_tasks={str(vmap).lower()}",
                                  "run.device=cpu"])
        recs = [make_fixture_task(space, f"t{i}", i, n_students=50, seed=0, with_dataset=False) for i in range(10)]
        with tempfile.TemporaryDirectory() as d:
            tr = MetaTrainer(mcfg, recs[:8], recs[8:], [], d, device, progress=False)
            tr._train_episode()                       # warm-up (vmap traces on first use)
            ts = []
            for _ in range(episodes):
                t0 = time.perf_counter()
                tr._train_episode()
                ts.append(time.perf_counter() - t0)
        rate = [1 / t for t in ts]
        rep.figure(f"meta-training episodes/s ({'vmapped meta-batch' if vmap else 'per-task loop'}, 8 tasks x 50 "
                   f"query, 2nd order)", median(rate), "ep/s", spread(rate))
    rep.close()


if __name__ == "__main__":
    main()
