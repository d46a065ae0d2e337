"""Parameter remapping teacher -> student (SPEC 3).

Strategies (``kd.remap``):

- ``copy_paste_first`` (default, the paper's): student block ``d`` of stage ``s`` takes teacher block
  ``d`` of stage ``s``; every tensor is sliced to its first channels.
- ``copy_paste_last``: student block ``d`` of a depth-``D`` stage takes teacher block ``T - D + d``
  (the last blocks); tensors are sliced to their last channels.
- ``uniform``: blocks and channels are subsampled at evenly spaced (rounded) positions, e.g. a
  student stage of depth 2 under a teacher of depth 5 takes teacher blocks 0 and 4.
- ``copy_paste_uniform`` / ``copy_paste_uniform_last`` (the authors' ablations): the first / last blocks
  of each stage, every tensor sliced to every ``total // n``-th channel (the first ``n`` of them).
- ``random``: no remapping; the student keeps its own Kaiming initialisation.

The stem follows the first block's channel selection, BN running statistics are sliced with the
affine parameters, and the classifier is the teacher's, sliced on its input dimension. Remapping the
teacher into a teacher-shaped student is exact under every copy strategy.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .errors import ArchError
from .nets import ResNet

STRATEGIES = ("copy_paste_first", "copy_paste_last", "uniform", "copy_paste_uniform", "copy_paste_uniform_last",
              "random")


def _first(total: int, n: int) -> torch.Tensor:
    return torch.arange(n)


def _last(total: int, n: int) -> torch.Tensor:
    return torch.arange(total - n, total)


def _uniform(total: int, n: int) -> torch.Tensor:
    if n == 1:
        return torch.zeros(1, dtype=torch.long)
    return torch.round(torch.linspace(0, total - 1, n)).long()


def _strided(total: int, n: int) -> torch.Tensor:
    """Every ``total // n``-th channel, the first ``n`` of them (the authors' ``[::s][:n]``)."""
    return torch.arange(0, total, total // n)[:n]


# strategy -> channel selector (the stem follows the first picked block's channels) ...
_SELECT: dict[str, Callable[[int, int], torch.Tensor]] = {
    "copy_paste_first": _first, "copy_paste_last": _last, "uniform": _uniform,
    "copy_paste_uniform": _strided, "copy_paste_uniform_last": _strided}
# ... and block selector, the same unless the authors' variants pair strided channels with first/last blocks
_BLOCKS: dict[str, Callable[[int, int], torch.Tensor]] = {
    **_SELECT, "copy_paste_uniform": _first, "copy_paste_uniform_last": _last}


def _copy_conv(dst: nn.Conv2d, src: nn.Conv2d, o: torch.Tensor, i: torch.Tensor) -> None:
    dev = src.weight.device
    dst.weight.copy_(src.weight.index_select(0, o.to(dev)).index_select(1, i.to(dev)))


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, c: torch.Tensor) -> None:
    c = c.to(src.weight.device)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name).index_select(0, c))
    if dst.num_batches_tracked is not None and src.num_batches_tracked is not None:
        dst.num_batches_tracked.copy_(src.num_batches_tracked)


def check_compatible(teacher: ResNet, student: ResNet) -> None:
    ta, sa = teacher.arch, student.arch
    if ta.num_stages != sa.num_stages:
        raise ArchError(f"cannot remap: teacher has {ta.num_stages} stages, student {sa.num_stages}")
    if teacher.strides != student.strides:
        raise ArchError(f"cannot remap: teacher strides {teacher.strides} differ from student strides {student.strides}")
    for s in range(ta.num_stages):
        if sa.depths[s] > ta.depths[s]:
            raise ArchError(f"cannot remap: student stage {s + 1} is deeper ({sa.depths[s]}) than the teacher's "
                            f"({ta.depths[s]})")
        if max(sa.widths[s]) > max(ta.widths[s]):
            raise ArchError(f"cannot remap: student stage {s + 1} is wider ({max(sa.widths[s])}) than the "
                            f"teacher's ({max(ta.widths[s])})")
    if teacher.num_classes != student.num_classes:
        raise ArchError(f"cannot remap: teacher has {teacher.num_classes} classes, student {student.num_classes}")


@torch.no_grad()
def remap(teacher: ResNet, student: ResNet, strategy: str = "copy_paste_first") -> ResNet:
    """Initialise ``student`` in place from ``teacher``'s weights; returns ``student``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown remap strategy {strategy!r}; use one of {list(STRATEGIES)}")
    check_compatible(teacher, student)
    if strategy == "random":
        return student
    sel, bsel = _SELECT[strategy], _BLOCKS[strategy]
    ta, sa = teacher.arch, student.arch

    # Teacher blocks picked for each student block, and the channel index of every feature map.
    t_layers, s_layers = teacher.layers, student.layers
    first_t_block = t_layers[0][int(bsel(ta.depths[0], sa.depths[0])[0])]
    stem_idx = sel(first_t_block.conv1.in_channels, sa.widths[0][0])
    _copy_conv(student.conv1, teacher.conv1, stem_idx, torch.arange(3))
    _copy_bn(student.bn1, teacher.bn1, stem_idx)

    for s in range(sa.num_stages):
        picks = bsel(ta.depths[s], sa.depths[s])
        for b, tb in enumerate(picks.tolist()):
            t_blk, s_blk = t_layers[s][tb], s_layers[s][b]
            i_idx = sel(t_blk.conv1.in_channels, s_blk.conv1.in_channels)
            o_idx = sel(t_blk.conv1.out_channels, s_blk.conv1.out_channels)
            _copy_conv(s_blk.conv1, t_blk.conv1, o_idx, i_idx)
            _copy_bn(s_blk.bn1, t_blk.bn1, o_idx)
            _copy_conv(s_blk.conv2, t_blk.conv2, o_idx, o_idx)
            _copy_bn(s_blk.bn2, t_blk.bn2, o_idx)

    f_idx = sel(teacher.fc.in_features, student.fc.in_features)
    student.fc.weight.copy_(teacher.fc.weight.index_select(1, f_idx.to(teacher.fc.weight.device)))
    student.fc.bias.copy_(teacher.fc.bias)
    return student


def remapped_student(teacher: ResNet, arch, strategy: str = "copy_paste_first") -> ResNet:
    """Build a student for ``arch`` with the teacher's strides and class count, then remap it."""
    student = ResNet(arch, teacher.num_classes, teacher.strides).to(next(teacher.parameters()).device)
    return remap(teacher, student, strategy)
