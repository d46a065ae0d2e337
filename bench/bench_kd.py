#!/usr/bin/env python
"""KD training throughput: our engine (``dass.train.engine.distill``) vs the authors' recipe, in one run.

Paper scale (docs/method.md#kd): 64x64 images, 40 classes, the ResNet42 teacher, a mid-size student
(depths 3-3-3-3 at multiplier 0.75: widths 24/48/96/192, a third of the teacher's MACs), batch 64,
SGD Nesterov with a per-step cosine schedule, KD loss T=6, alpha=0.5. Data: random uint8 images
(no download), labels cycling over the classes.

* **reference**: the loop as the authors' release runs it (``train_kd_net.py`` + ``get_dataloader.py``):
  a numpy-backed Dataset returning ``PIL.Image.fromarray`` images through torchvision transforms
  (Resize, RandomHorizontalFlip, RandomCrop(64, padding=8), ToTensor, Normalize(0.5, 0.5)) in a
  ``DataLoader(num_workers=1, drop_last=True)``, fp32, and ``loss.item()`` plus top-1/top-5
  accuracy read back every step. Written here from that description, not copied.
* **engine**: ``dass.train.engine.distill`` with the config's defaults (channels_last, batched tensor
  augmentation; on CUDA also bf16 autocast, the dataset preloaded on the GPU, no per-step host sync),
  the teacher run on every batch: the cost of distilling one student.
* **engine, shared teacher logits**: the same, for a student whose teacher logits another student of
  the task already computed (``dass.train.logit_cache``): every database student after the first of its
  task (they all share ``db.kd_seed``, hence the same augmented batches). ``--no-cache`` skips it.

Both train on the same images for the same number of steps per epoch; each side runs one untimed
warm-up epoch, then ``--epochs`` timed epochs; the figure is the median epoch. The engine's run is
stopped after its last timed epoch (before its final evaluation), so only training is timed.

    python bench/bench_kd.py --quick          # < 1 min: 32 px, batch 16, 2 steps per epoch
    python bench/bench_kd.py                  # paper scale (CPU: 3 steps x 2 epochs per side)
    python bench/bench_kd.py --steps 31       # whole 2,000-image epochs (the default on CUDA)
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from common import Reporter, base_parser, gpu_peak, median, print_header, setup, spread

import torch  # noqa: E402  (after common sets OMP_WAIT_POLICY)

from dass.config import load_config  # noqa: E402
from dass.data.tasks import TaskData  # noqa: E402
from dass.train.logit_cache import TeacherLogitCache  # noqa: E402
from dass.train.losses import kd_loss  # noqa: E402
from dass.nets import ResNet  # noqa: E402
from dass.remap import remapped_student  # noqa: E402
from dass.space import Arch, SearchSpace  # noqa: E402
from dass.train.checkpoints import freeze  # noqa: E402
from dass.train.engine import distill  # noqa: E402


def mid_student(space: SearchSpace) -> Arch:
    """Depth 3 per stage, the 0.75 multiplier everywhere (a third of the teacher's MACs at 64 px)."""
    k = min(range(len(space.width_multipliers)), key=lambda i: abs(space.width_multipliers[i] - 0.75))
    return Arch([3] * space.num_stages, [[c[k]] * 3 for c in space.choices])


def random_images(n: int, size: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    return (g.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8),
            (np.arange(n) % classes).astype(np.int64))


# --------------------------------------------------------------------------------------------- #
# the authors' recipe
# --------------------------------------------------------------------------------------------- #

class PILImages(torch.utils.data.Dataset):
    """uint8 arrays served as PIL images through a torchvision transform, one image per call."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def authors_transform(size: int, padding: int):
    from torchvision import transforms as T

    return T.Compose([T.Resize((size, size)), T.RandomHorizontalFlip(), T.RandomCrop(size, padding=padding),
                      T.ToTensor(), T.Normalize((0.5,), (0.5,))])


def _topk_correct(logits: torch.Tensor, y: torch.Tensor, ks=(1, 5)) -> list[float]:
    top = logits.topk(max(ks), dim=1).indices
    hit = top == y[:, None]
    return [hit[:, :k].any(dim=1).float().sum().item() for k in ks]   # .item(): a host sync, as theirs


def reference_epochs(teacher: ResNet, student: ResNet, images, labels, *, batch: int, size: int, padding: int,
                     epochs: int, device: torch.device, lr: float = 0.05) -> list[float]:
    """Seconds per epoch of the authors'-style loop (the first epoch is the warm-up)."""
    loader = torch.utils.data.DataLoader(PILImages(images, labels, authors_transform(size, padding)),
                                         batch_size=batch, shuffle=True, num_workers=1, drop_last=True,
                                         pin_memory=device.type == "cuda")
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=3e-5, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    times = []
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        teacher.eval()
        student.train()
        loss_sum = 0.0
        for x, y in loader:            # a fresh iterator: the worker process starts again every epoch
            y = y.to(device, non_blocking=True)
            x = x.to(device)
            with torch.no_grad():
                t_out = teacher(x)
            s_out = student(x)
            loss = kd_loss(s_out, t_out, y, 6.0, 0.5)
            loss.backward()
            opt.step()
            sched.step()
            student.zero_grad()
            with torch.no_grad():
                _topk_correct(s_out, y)
                loss_sum += loss.item() * x.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------------------------- #
# the engine
# --------------------------------------------------------------------------------------------- #

class _Stop(Exception):
    pass


def engine_epochs(teacher: ResNet, student: ResNet, images, labels, *, batch: int, size: int, padding: int,
                  epochs: int, device: torch.device, compile_: bool = False,
                  logit_cache: Optional[TeacherLogitCache] = None) -> list[float]:
    """Seconds per epoch of ``dass.train.engine.distill`` (epoch_time of its metrics; first = warm-up)."""
    cfg = load_config(None, [f"space.image_size={size}", f"data.crop_padding={padding}", f"kd.batch_size={batch}",
                             f"kd.epochs={epochs + 1}", "kd.eval_every=1000000", f"run.device={device.type}",
                             f"train.compile={str(compile_).lower()}", "train.amp=auto", "train.channels_last=true",
                             "train.cudnn_benchmark=true"])
    test_x, test_y = images[:batch], labels[:batch]
    task = TaskData("bench", images, labels, test_x, test_y, teacher.num_classes)
    times: list[float] = []

    def on_epoch_end(epoch: int, rec: dict) -> None:
        times.append(rec["epoch_time"])
        if epoch == epochs:
            raise _Stop()   # stop before the final epoch's evaluation: only training is timed

    try:
        distill(teacher, student, task, cfg, seed=0, device=device, out_dir=None, progress=False,
                on_epoch_end=on_epoch_end, logit_cache=logit_cache)
    except _Stop:
        pass
    return times


# --------------------------------------------------------------------------------------------- #

def main() -> None:
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=0, help="steps per epoch (default: 3 on CPU, 31 on CUDA; quick 2)")
    p.add_argument("--epochs", type=int, default=0, help="timed epochs per side (default 2 on CPU, 3 on CUDA; quick 1)")
    p.add_argument("--images", type=int, default=2000, help="size of the random image pool (default 2000)")
    p.add_argument("--batch", type=int, default=0, help="batch size (default 64; quick 16)")
    p.add_argument("--size", type=int, default=0, help="image size (default 64; quick 32)")
    p.add_argument("--classes", type=int, default=40)
    p.add_argument("--repeats", type=int, default=1, help="alternate the two sides this many times")
    p.add_argument("--compile", action="store_true", help="also time the engine with train.compile=true")
    p.add_argument("--no-cache", action="store_true", help="skip the side with shared teacher logits")
    p.add_argument("--no-peak", action="store_true", help="CUDA: skip the measured matmul peak")
    args = p.parse_args()
    device = setup(args)
    cuda = device.type == "cuda"
    size = args.size or (32 if args.quick else 64)
    batch = args.batch or (16 if args.quick else 64)
    steps = args.steps or (2 if args.quick else (31 if cuda else 3))
    epochs = args.epochs or (1 if args.quick else (3 if cuda else 2))
    padding = 4 if size == 32 else 8      # the authors: padding 4 at 32 px, 8 otherwise

    info = print_header("KD training throughput: dass engine vs the authors' recipe", args)
    rep = Reporter(info, args.json)
    space = SearchSpace(image_size=size)
    arch = mid_student(space)
    m_t = space.macs(space.teacher(), size, args.classes)
    m_s = space.macs(arch, size, args.classes)
    flops_per_image = 2 * m_t + 3 * 2 * m_s     # teacher forward + student forward and backward (~2x)
    print(f"# setup: {size}x{size}, {args.classes} classes, batch {batch}, {steps} steps/epoch, 1 warm-up + "
          f"{epochs} timed epochs per side, x{args.repeats}; device {device}")
    print(f"# teacher {space.teacher()} {m_t / 1e9:.2f} GMACs/img; student {arch} {m_s / 1e9:.2f} GMACs/img; "
          f"{flops_per_image / 1e9:.2f} GFLOP per trained image")

    images, labels = random_images(max(args.images, steps * batch), size, args.classes)
    images, labels = images[:steps * batch], labels[:steps * batch]
    torch.manual_seed(0)
    teacher = freeze(ResNet(space.teacher(), args.classes, space.stage_strides).to(device))

    sides = {"reference": reference_epochs, "engine": engine_epochs}
    if not args.no_cache:
        # The database builder's steady state: every student of a task after the first reads the teacher's
        # logits from the shared cache (dass.train.logit_cache). Filled once here by an untimed run of another
        # student; the timed runs then never call the teacher.
        cache = TeacherLogitCache(2 ** 40)
        filler = remapped_student(teacher, space.smallest(), "copy_paste_first").to(device)
        t0 = time.perf_counter()
        engine_epochs(teacher, filler, images, labels, batch=batch, size=size, padding=padding, epochs=epochs + 1,
                      device=device, logit_cache=cache)
        print(f"# teacher-logit cache filled by an untimed run of {space.smallest()} in "
              f"{time.perf_counter() - t0:.1f} s ({cache.nbytes / 2 ** 20:.2f} MB)", flush=True)
        sides["engine, shared teacher logits"] = lambda *a, **k: engine_epochs(*a, logit_cache=cache, **k)
    if args.compile:
        sides["engine+compile"] = lambda *a, **k: engine_epochs(*a, compile_=True, **k)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(args.repeats):
        for name, fn in (sides.items() if r % 2 == 0 else reversed(list(sides.items()))):
            student = remapped_student(teacher, arch, "copy_paste_first").to(device)
            t = fn(teacher, student, images, labels, batch=batch, size=size, padding=padding, epochs=epochs + 1,
                   device=device)
            times[name] += t[1:]   # drop the warm-up epoch
            print(f"#   {name} run {r + 1}: epoch seconds {[round(x, 3) for x in t]} (first = warm-up)", flush=True)

    def side_flops(k: str) -> float:   # FLOPs a side executes per trained image
        return 3 * 2 * m_s if "shared" in k else flops_per_image

    n_img = steps * batch
    ips = {k: [n_img / t for t in v] for k, v in times.items()}
    for k in sides:
        rep.figure(f"{k} images/s", median(ips[k]), "img/s", f"median of {len(ips[k])} epochs: {spread(ips[k])}")
        rep.figure(f"{k} achieved", median(ips[k]) * side_flops(k) / 1e9, "GFLOP/s",
                   "student only: the teacher is not run" if "shared" in k else "")
    goal = f"goal: >= {3 if cuda else 1.5}x on {'CUDA' if cuda else 'CPU'}"
    for k in sides:
        if k != "reference":
            rep.figure(f"speed-up {k} / reference", median(times["reference"]) / median(times[k]), "x", goal)
    if cuda:
        peak = gpu_peak(device, measure=not args.no_peak)
        for k in sides:
            achieved = median(ips[k]) * side_flops(k) / 1e12
            if peak["table_tflops"]:
                rep.figure(f"{k} fraction of {peak['name']} bf16 datasheet peak ({peak['table_tflops']:.0f} TFLOP/s)",
                           achieved / peak["table_tflops"], "")
            if peak["measured_tflops"]:
                rep.figure(f"{k} fraction of measured bf16 matmul peak ({peak['measured_tflops']:.0f} TFLOP/s)",
                           achieved / peak["measured_tflops"], "")
    rep.close()


if __name__ == "__main__":
    main()
