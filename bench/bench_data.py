#!/usr/bin/env python
"""Data loading throughput: our batched loader vs the authors' per-image PIL path.

The training transforms of docs/method.md#benchmark.

Training split, random crop (padding 8 at 64 px) + horizontal flip + normalisation, batch 64, one
full epoch per repeat over random uint8 images (no download); batches are consumed on the target
device and nothing else is done with them.

* **dass loader**: ``dass.data.tasks.make_loader`` (a :class:`dass.data.loader.BatchLoader`): a uint8 batch is
  gathered and augmented as one tensor. On CUDA the dataset is preloaded on the GPU and iterated
  as the training engine does (one transfer of the epoch's draws, ``dass.data.loader.BatchLoader``).
* **PIL, 1 worker**: ``PIL.Image.fromarray`` + torchvision transforms per image in a
  ``DataLoader(num_workers=1)``, as the authors' ``get_dataloader.py`` configures it.
* **PIL, in process**: the same with ``num_workers=0`` (the per-image cost without a helper process).

    python bench/bench_data.py --quick     # < 1 min
    python bench/bench_data.py             # 2,000 images, 3 epochs per loader
"""
from __future__ import annotations

import time

from common import Reporter, base_parser, median, print_header, setup, spread

import torch  # noqa: E402

from bench_kd import PILImages, authors_transform, random_images  # noqa: E402
from dass.config import load_config  # noqa: E402
from dass.data.tasks import TaskData, make_loader  # noqa: E402


def epoch_seconds(make_iter, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    last = None
    for x, y in make_iter():
        last = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert last is not None
    return time.perf_counter() - t0


def main() -> None:
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=0, help="dataset size (default 2000; quick 512)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=0, help="timed epochs per loader (default 3; quick 2)")
    args = p.parse_args()
    device = setup(args)
    n = args.images or (512 if args.quick else 2000)
    repeats = args.repeats or (2 if args.quick else 3)
    padding = 4 if args.size == 32 else 8
    info = print_header("Data loading: dass batched loader vs per-image PIL + torchvision", args)
    rep = Reporter(info, args.json)
    print(f"# {n} images {args.size}x{args.size}, batch {args.batch}, train transforms, {repeats} timed epochs "
          f"after 1 warm-up, device {device}")
    images, labels = random_images(n, args.size, 40)

    cfg = load_config(None, [f"space.image_size={args.size}", f"data.crop_padding={padding}"])
    task = TaskData("bench", images, labels, images[:args.batch], labels[:args.batch], 40)
    ours = make_loader(task, cfg, "train", args.batch, seed=0, device=device)
    epoch = [0]

    def ours_iter():
        epoch[0] += 1
        ours.set_epoch(epoch[0])
        return iter(ours)

    ds = PILImages(images, labels, authors_transform(args.size, padding))
    pil1 = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=1, drop_last=True,
                                       pin_memory=device.type == "cuda")
    pil0 = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=0, drop_last=True)
    loaders = {"dass loader": ours_iter, "PIL, 1 worker (authors)": lambda: iter(pil1),
               "PIL, in process": lambda: iter(pil0)}
    times = {k: [] for k in loaders}
    for k, make in loaders.items():
        epoch_seconds(make, device)                          # warm-up
    for r in range(repeats):                                 # interleaved: load changes hit all alike
        for k, make in loaders.items():
            times[k].append(epoch_seconds(make, device))
    used = (n // args.batch) * args.batch
    rates = {k: [used / t for t in v] for k, v in times.items()}
    for k in loaders:
        rep.figure(f"{k}", median(rates[k]), "samples/s", f"{spread(rates[k])}")
    rep.figure("dass loader / PIL 1 worker", median(rates["dass loader"]) / median(rates["PIL, 1 worker (authors)"]),
               "x")
    rep.close()


if __name__ == "__main__":
    main()
