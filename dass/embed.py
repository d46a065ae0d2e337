"""Functional embeddings on a fixed noise input (SPEC 4).

A fixed Gaussian noise image (seeded, at the task's image size) is fed to the teacher and to each
remapped student; the output map of stage ``embed.stage`` (stage 4: 256 x 8 x 8 at 64 px for the
paper's space) is the network's functional embedding. Networks run in eval mode, so BatchNorm uses the
running statistics the student inherited from the teacher. With ``embed.num_noise > 1`` the maps of
several noise images are averaged.

A student narrower than the teacher at that stage is zero-padded to the teacher's channel count (the
project's choice, SPEC 4): the remapped student's channels are the teacher's *first* channels, so
padding the missing ones with zeros keeps every channel aligned with the teacher channel it came from.

Two paths compute the same numbers:

- :func:`functional_map` runs any ``ResNet`` module (used for the teacher and for random init);
- :func:`remapped_map` computes a remapped student's map straight from the teacher's tensors with
  ``torch.nn.functional`` calls, without building or initialising a student module -- the fast path
  for scoring thousands of search candidates (it is checked against the module path in the tests).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .nets import ResNet, match_channels
from .remap import _BLOCKS, STRATEGIES, _SELECT, check_compatible
from .space import Arch


def noise_input(image_size: int, num_noise: int = 1, seed: int = 0, device="cpu") -> torch.Tensor:
    """The fixed noise batch ``[num_noise, 3, H, W]`` (standard normal, CPU generator => same on any device)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(num_noise, 3, image_size, image_size, generator=g).to(device)


def pad_channels(fmap: torch.Tensor, channels: int) -> torch.Tensor:
    """Zero-pad (never slice) a ``C x h x w`` map to ``channels``."""
    if fmap.shape[0] > channels:
        raise ValueError(f"map has {fmap.shape[0]} channels, more than the teacher's {channels}")
    return match_channels(fmap.unsqueeze(0), channels)[0]


@torch.no_grad()
def functional_map(model: ResNet, noise: torch.Tensor, stage: int = 4, channels: Optional[int] = None) -> torch.Tensor:
    """Stage-``stage`` output of ``model`` on ``noise``, averaged over noise images -> ``C x h x w`` (CPU float)."""
    was_training = model.training
    model.eval()
    try:
        maps = model.features(noise)
    finally:
        model.train(was_training)
    out = maps[stage - 1].float().mean(0).cpu()
    return pad_channels(out, channels) if channels else out


def _bn(x: torch.Tensor, bn, idx: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean.index_select(0, idx), bn.running_var.index_select(0, idx),
                        bn.weight.index_select(0, idx), bn.bias.index_select(0, idx), False, 0.0, bn.eps)


def _conv(x: torch.Tensor, conv, o: torch.Tensor, i: torch.Tensor, stride: int = 1) -> torch.Tensor:
    w = conv.weight.index_select(0, o).index_select(1, i)
    return F.conv2d(x, w, stride=stride, padding=1)


@torch.no_grad()
def remapped_map(teacher: ResNet, arch: Arch, noise: torch.Tensor, strategy: str = "copy_paste_first",
                 stage: int = 4, channels: Optional[int] = None) -> torch.Tensor:
    """The functional map of ``remap(teacher, ResNet(arch), strategy)`` without building the student.

    Equal (to float rounding) to ``functional_map(remapped_student(teacher, arch, strategy), noise)``.
    """
    if strategy not in STRATEGIES or strategy == "random":
        raise ValueError(f"remapped_map needs a copy strategy, got {strategy!r}; use functional_map for random init")
    sel, bsel = _SELECT[strategy], _BLOCKS[strategy]
    ta = teacher.arch
    dev = teacher.conv1.weight.device
    t_layers = teacher.layers

    def idx(total: int, n: int) -> torch.Tensor:
        return sel(total, n).to(dev)

    first_t = t_layers[0][int(bsel(ta.depths[0], arch.depths[0])[0])]
    stem = idx(first_t.conv1.in_channels, arch.widths[0][0])
    x = F.relu(_bn(_conv(noise.to(dev), teacher.conv1, stem, torch.arange(3, device=dev)), teacher.bn1, stem))
    cin = arch.widths[0][0]
    for s in range(min(stage, arch.num_stages)):
        picks = bsel(ta.depths[s], arch.depths[s]).tolist()
        for b, tb in enumerate(picks):
            blk = t_layers[s][tb]
            w = arch.widths[s][b]
            stride = teacher.strides[s] if b == 0 else 1
            i_idx = idx(blk.conv1.in_channels, cin)
            o_idx = idx(blk.conv1.out_channels, w)
            out = F.relu(_bn(_conv(x, blk.conv1, o_idx, i_idx, stride), blk.bn1, o_idx))
            out = _bn(_conv(out, blk.conv2, o_idx, o_idx), blk.bn2, o_idx)
            sc = F.max_pool2d(x, 2) if stride != 1 else x
            x = F.relu(out + match_channels(sc, w))
            cin = w
    out = x.float().mean(0).cpu()
    return pad_channels(out, channels) if channels else out


def student_map(teacher: ResNet, arch: Arch, noise: torch.Tensor, strategy: str = "copy_paste_first",
                stage: int = 4, channels: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    """Functional map of a student initialised by ``strategy`` (random init uses ``seed``)."""
    if strategy == "random":
        torch.manual_seed(seed)
        student = ResNet(arch, teacher.num_classes, teacher.strides).to(noise.device)
        return functional_map(student, noise, stage, channels)
    student_check = ResNet.__new__(ResNet)  # cheap compatibility check without building the student
    student_check.arch, student_check.strides, student_check.num_classes = arch, teacher.strides, teacher.num_classes
    check_compatible(teacher, student_check)
    return remapped_map(teacher, arch, noise, strategy, stage, channels)


def teacher_channels(teacher: ResNet, stage: int = 4) -> int:
    return max(teacher.arch.widths[stage - 1])
