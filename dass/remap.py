"""Parameter remapping teacher -> student (docs/method.md#remap).

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

The stem's output channels are the first ones under ``copy_paste_first`` and the authors' ablations
(``copy_paste_last``, ``copy_paste_uniform[_last]``: their KD code always takes the stem's first channels,
whatever the first block takes), and follow the first block's selection under ``uniform``. BN running
statistics are sliced with the affine parameters, and the classifier is the teacher's, sliced on its
input dimension. Remapping the teacher into a teacher-shaped student is exact under every copy strategy.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ArchError
from .nets import ResNet, match_channels

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
# the strategies whose stem takes its first output channels whatever the blocks take (the authors' KD code)
_STEM_FIRST = ("copy_paste_first", "copy_paste_last", "copy_paste_uniform", "copy_paste_uniform_last")


Step = tuple   # ("stem", width, teacher_block) or (stage, block, teacher_block, width)


def remap_steps(teacher: ResNet, arch, strategy: str, stage: Optional[int] = None) -> tuple[Step, ...]:
    """How ``arch`` is cut out of ``teacher`` under a copy ``strategy``, up to stage ``stage`` (all: None).

    ``("stem", w, tb)``: the stem at width ``w`` (its channels: the module docstring), ``tb`` being the first
    teacher block of stage 1 the student takes; then ``(s, b, tb, w)``: student block ``b`` of stage
    ``s`` is teacher block ``tb`` sliced to width ``w``. Remapping, the functional embedding and the
    prefix-shared search path all follow these steps (docs/method.md#remap).
    """
    sel = _BLOCKS[strategy]   # which teacher blocks; their channels follow _SELECT (TeacherSlices)
    first = int(sel(teacher.arch.depths[0], arch.depths[0])[0])
    steps: list[Step] = [("stem", int(arch.widths[0][0]), first)]
    for s in range(arch.num_stages if stage is None else min(stage, arch.num_stages)):
        for b, tb in enumerate(sel(teacher.arch.depths[s], arch.depths[s]).tolist()):
            steps.append((s, b, int(tb), int(arch.widths[s][b])))
    return tuple(steps)


def _span(idx: torch.Tensor):
    """``(start, stop)`` when ``idx`` is a run of consecutive indices (copy-paste first/last), else None."""
    n = idx.numel()
    if n and int(idx[-1]) - int(idx[0]) == n - 1 and bool((idx.diff() == 1).all()):
        return int(idx[0]), int(idx[-1]) + 1
    return None


def _take2(w: torch.Tensor, o: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """``w.index_select(0, o).index_select(1, i)`` as a contiguous copy -- the same values (a copy does
    no arithmetic), much faster: index_select on dim 1 of a 4-d tensor runs at a few hundred MB/s on
    CPU (3-4 ms per 256x256x3x3 slice, measured), a strided copy at memory speed."""
    so, si = _span(o), _span(i)
    if so is not None and si is not None:
        return w[so[0]:so[1], si[0]:si[1]].contiguous()
    return w.index_select(0, o)[:, i].contiguous()


class TeacherSlices:
    """A teacher's tensors sliced for its students under one copy strategy, and the remapped student's
    forward computed from them (eval mode) without building the student.

    The one definition of a remapped student: :func:`remap` copies these slices into a student module,
    :func:`dass.embed.remapped_map` and :mod:`dass.fastembed` run :meth:`stem` / :meth:`block` on them.
    A channel selection is keyed by ``(teacher channels, student channels)``, plus ``True`` for the stem's
    own selection (:meth:`idx`); subclasses may cache the slices (:mod:`dass.fastembed`) as long as they
    return the same tensors.
    """

    def __init__(self, teacher: ResNet, strategy: str):
        if strategy not in _SELECT:
            raise ValueError(f"remapped slices need a copy strategy, got {strategy!r}; use one of {list(_SELECT)}")
        self.teacher, self.sel = teacher, _SELECT[strategy]
        self.stem_sel = _first if strategy in _STEM_FIRST else self.sel
        self.device = teacher.conv1.weight.device
        self._idx: dict[tuple, torch.Tensor] = {}

    def idx(self, total: int, n: int, stem: bool = False) -> torch.Tensor:
        """The ``n`` channels of ``total`` a student keeps (the stem's output with ``stem``)."""
        key = (int(total), int(n), bool(stem))
        if key not in self._idx:
            self._idx[key] = (self.stem_sel if stem else self.sel)(total, n).to(self.device)
        return self._idx[key]

    def conv_weight(self, conv: nn.Conv2d, ok: tuple, ik: tuple) -> torch.Tensor:
        return _take2(conv.weight, self.idx(*ok), self.idx(*ik))

    def bn_params(self, bn: nn.BatchNorm2d, ok: tuple) -> tuple[torch.Tensor, ...]:
        """``(running_mean, running_var, weight, bias)`` sliced to the selected channels."""
        o = self.idx(*ok)
        return tuple(getattr(bn, k).index_select(0, o) for k in ("running_mean", "running_var", "weight", "bias"))

    def _conv_bn(self, x, conv, bn, ok, ik, stride: int = 1) -> torch.Tensor:
        x = F.conv2d(x, self.conv_weight(conv, ok, ik), stride=stride, padding=1)
        return F.batch_norm(x, *self.bn_params(bn, ok), False, 0.0, bn.eps)

    def stem_keys(self, step: Step) -> tuple[tuple, tuple]:
        _, width, first = step
        return (self.teacher.layers[0][first].conv1.in_channels, width, True), (3, 3)

    def block_keys(self, step: Step, cin: int) -> tuple[tuple, tuple]:
        s, _, tb, width = step
        conv1 = self.teacher.layers[s][tb].conv1
        return (conv1.out_channels, width), (conv1.in_channels, cin)

    def stem(self, noise: torch.Tensor, step: Step) -> torch.Tensor:
        ok, ik = self.stem_keys(step)
        return F.relu(self._conv_bn(noise, self.teacher.conv1, self.teacher.bn1, ok, ik))

    def block(self, x: torch.Tensor, step: Step) -> torch.Tensor:
        """One remapped BasicBlock in eval mode; the shortcut is :class:`dass.nets.BasicBlock`'s."""
        s, b, tb, width = step
        blk = self.teacher.layers[s][tb]
        stride = self.teacher.strides[s] if b == 0 else 1
        ok, ik = self.block_keys(step, x.shape[1])
        out = F.relu(self._conv_bn(x, blk.conv1, blk.bn1, ok, ik, stride))
        out = self._conv_bn(out, blk.conv2, blk.bn2, ok, ok)
        sc = F.max_pool2d(x, 2) if stride != 1 else x
        return F.relu(out + match_channels(sc, width))


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, params: tuple[torch.Tensor, ...]) -> None:
    for name, value in zip(("running_mean", "running_var", "weight", "bias"), params):
        getattr(dst, name).copy_(value)
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
    slices = TeacherSlices(teacher, strategy)
    steps = remap_steps(teacher, student.arch, strategy)
    ok, ik = slices.stem_keys(steps[0])
    student.conv1.weight.copy_(slices.conv_weight(teacher.conv1, ok, ik))
    _copy_bn(student.bn1, teacher.bn1, slices.bn_params(teacher.bn1, ok))
    for step in steps[1:]:
        s, b, tb, _ = step
        t_blk, s_blk = teacher.layers[s][tb], student.layers[s][b]
        ok, ik = slices.block_keys(step, s_blk.conv1.in_channels)
        s_blk.conv1.weight.copy_(slices.conv_weight(t_blk.conv1, ok, ik))
        _copy_bn(s_blk.bn1, t_blk.bn1, slices.bn_params(t_blk.bn1, ok))
        s_blk.conv2.weight.copy_(slices.conv_weight(t_blk.conv2, ok, ok))
        _copy_bn(s_blk.bn2, t_blk.bn2, slices.bn_params(t_blk.bn2, ok))
    f_idx = slices.idx(teacher.fc.in_features, student.fc.in_features)
    student.fc.weight.copy_(teacher.fc.weight.index_select(1, f_idx))
    student.fc.bias.copy_(teacher.fc.bias)
    return student


def remapped_student(teacher: ResNet, arch, strategy: str = "copy_paste_first") -> ResNet:
    """Build a student for ``arch`` with the teacher's strides and class count, then remap it."""
    student = ResNet(arch, teacher.num_classes, teacher.strides).to(next(teacher.parameters()).device)
    return remap(teacher, student, strategy)
