"""The student search space (docs/method.md#space): architectures, sampling, encoding, MACs and parameters.

An architecture is a ResNet skeleton with ``S`` stages (4 in the paper). Stage ``s`` has
``depths[s]`` BasicBlocks (``min_depth..max_depth``); block ``b`` of stage ``s`` has width
``widths[s][b] = round(m * stage_widths[s])`` for a multiplier ``m`` of the space. The teacher is the
largest member (every depth ``max_depth``, every multiplier 1.0).

Architecture encoding (the project's layout, docs/method.md#space; the authors' release does not give one).
For every stage ``s`` and every block *slot* ``b < max_depth`` a one-hot over the ``len(width_multipliers)``
width choices, all zero when the block is absent; slots are ordered stage-major. One extra final entry holds
the architecture's MACs relative to the teacher's (a compute summary that a linear encoder cannot derive
from the one-hots). Length = ``S * max_depth * len(width_multipliers) + 1`` = 4*5*9+1 = 181 for the paper's
space.

MACs (multiply-accumulates) count convolutions and the classifier, as ``torch.utils.flop_counter``
does (BN, ReLU, pooling and shortcut additions are not counted). The stem's output width equals the
first block's width (the stem is sliced with that block, docs/method.md#remap).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .errors import ArchError

RNG = Union[int, np.random.Generator, random.Random, None]


@dataclass(frozen=True)
class Arch:
    """A student architecture: depth per stage and width per block.

    ``Arch(depths=(2, 1, 3, 1), widths=((16, 18), (64,), ...))``. Immutable and hashable, so it can
    be a dict key; lists are converted to tuples.
    """

    depths: tuple
    widths: tuple

    def __init__(self, depths: Sequence[int], widths: Sequence[Sequence[int]]):
        try:
            d = tuple(int(x) for x in depths)
            w = tuple(tuple(int(x) for x in stage) for stage in widths)
        except (TypeError, ValueError):
            raise ArchError(f"Arch needs depths as a list of ints and widths as a list of lists of ints, "
                            f"got depths={depths!r} widths={widths!r}") from None
        object.__setattr__(self, "depths", d)
        object.__setattr__(self, "widths", w)
        if len(d) != len(w):
            raise ArchError(f"Arch has {len(d)} depths but {len(w)} width lists; give one width list per stage")
        for s, (n, ws) in enumerate(zip(d, w)):
            if n != len(ws):
                raise ArchError(f"Arch stage {s + 1} has depth {n} but {len(ws)} block widths; "
                                f"give one width per block")

    @classmethod
    def from_authors(cls, depth_config: Sequence[int], channel_widths: Sequence[Sequence[int]]) -> "Arch":
        """The authors' ``(depth_config, channel_widths)``; width lists longer than the depth are
        trimmed (their files may list widths for absent blocks)."""
        depth_config = [int(x) for x in depth_config]
        return cls(depth_config, [list(ws)[:d] for d, ws in zip(depth_config, channel_widths)])

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def out_channels(self) -> int:
        return self.widths[-1][-1]

    def blocks(self):
        """Yield ``(stage, block, in_channels, width)`` in forward order."""
        cin = self.widths[0][0]  # stem width
        for s, ws in enumerate(self.widths):
            for b, w in enumerate(ws):
                yield s, b, cin, w
                cin = w

    def to_dict(self) -> dict:
        return {"depth_config": list(self.depths), "channel_widths": [list(w) for w in self.widths]}

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        return cls.from_authors(d["depth_config"], d["channel_widths"])

    def __str__(self) -> str:
        return "|".join("-".join(str(x) for x in ws) for ws in self.widths)


def _as_rng(rng: RNG) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, random.Random):
        return np.random.default_rng(rng.getrandbits(63))
    return np.random.default_rng(rng)


class SearchSpace:
    """A configurable ResNet student space (docs/method.md#space).

    ``SearchSpace()`` has the paper's widths, depths, multipliers and image size with every block free; the
    paper's students also end at full width (``last_block_full_width=True``, as ``SearchSpace.from_config``
    of the built-in defaults gives)."""

    def __init__(self, stage_widths: Sequence[int] = (32, 64, 128, 256),
                 stage_strides: Sequence[int] = (1, 2, 2, 2), max_depth: int = 5, min_depth: int = 1,
                 width_multipliers: Optional[Sequence[float]] = None, image_size: int = 64,
                 last_block_full_width: bool = False):
        self.stage_widths = tuple(int(w) for w in stage_widths)
        self.stage_strides = tuple(int(s) for s in stage_strides)
        self.max_depth = int(max_depth)
        self.min_depth = int(min_depth)
        mult = width_multipliers if width_multipliers is not None else [0.5 + 0.0625 * i for i in range(9)]
        self.width_multipliers = tuple(float(m) for m in mult)
        self.image_size = int(image_size)
        # docs/method.md#space: the authors' KD copies the teacher's classifier unsliced and their student
        # encoder takes exactly the teacher's last-stage channels, so their students end at full width.
        self.last_block_full_width = bool(last_block_full_width)
        if len(self.stage_strides) != len(self.stage_widths):
            raise ArchError("SearchSpace needs one stride per stage")
        # choices[s] = the allowed widths of any block in stage s, in multiplier order
        self.choices = tuple(tuple(int(round(m * w)) for m in self.width_multipliers) for w in self.stage_widths)
        self._choice_index = [{w: i for i, w in enumerate(c)} for c in self.choices]

    @classmethod
    def from_config(cls, cfg) -> "SearchSpace":
        """From a :class:`dass.config.SpaceConfig` (or a full Config, whose ``.space`` is used)."""
        sc = getattr(cfg, "space", cfg)
        return cls(sc.stage_widths, sc.stage_strides, sc.max_depth, sc.min_depth, sc.width_multipliers,
                   sc.image_size, getattr(sc, "last_block_full_width", False))

    def __repr__(self) -> str:
        return (f"SearchSpace(stage_widths={list(self.stage_widths)}, max_depth={self.max_depth}, "
                f"min_depth={self.min_depth}, width_multipliers={list(self.width_multipliers)}, "
                f"image_size={self.image_size}, last_block_full_width={self.last_block_full_width})")

    # --- membership --------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stage_widths)

    def validate(self, arch: Arch) -> Arch:
        """Raise :class:`ArchError` (one line, saying what is wrong) unless ``arch`` is in the space."""
        if not isinstance(arch, Arch):
            raise ArchError(f"expected an Arch, got {type(arch).__name__}")
        if arch.num_stages != self.num_stages:
            raise ArchError(f"architecture {arch} has {arch.num_stages} stages; this space has {self.num_stages}")
        for s, (d, ws) in enumerate(zip(arch.depths, arch.widths)):
            if not self.min_depth <= d <= self.max_depth:
                raise ArchError(f"architecture {arch}: stage {s + 1} depth {d} is outside "
                                f"[{self.min_depth}, {self.max_depth}]")
            for b, w in enumerate(ws):
                if w not in self._choice_index[s]:
                    raise ArchError(f"architecture {arch}: stage {s + 1} block {b + 1} width {w} is not one of "
                                    f"{list(self.choices[s])}")
        if self.last_block_full_width and arch.out_channels != self.stage_widths[-1]:
            raise ArchError(f"architecture {arch}: its last block has width {arch.out_channels}, but this space "
                            f"(space.last_block_full_width=true) fixes it at the teacher's {self.stage_widths[-1]}")
        return arch

    def teacher(self) -> Arch:
        return Arch([self.max_depth] * self.num_stages, [[w] * self.max_depth for w in self.stage_widths])

    def smallest(self) -> Arch:
        widths = [[c[0]] * self.min_depth for c in self.choices]
        if self.last_block_full_width:
            widths[-1][-1] = self.stage_widths[-1]
        return Arch([self.min_depth] * self.num_stages, widths)

    def sample(self, rng: RNG = None) -> Arch:
        """Uniform sample: depth uniform per stage, then each block's width uniform over the choices; with
        ``last_block_full_width`` the last block's drawn width is replaced by the teacher's (same draws)."""
        g = _as_rng(rng)
        depths = [int(g.integers(self.min_depth, self.max_depth + 1)) for _ in range(self.num_stages)]
        widths = [[int(c[g.integers(len(c))]) for _ in range(d)] for d, c in zip(depths, self.choices)]
        if self.last_block_full_width:
            widths[-1][-1] = self.stage_widths[-1]
        return Arch(depths, widths)

    def sample_many(self, n: int, rng: RNG = None, unique: bool = True, exclude_teacher: bool = False) -> list[Arch]:
        """``n`` samples (distinct when ``unique``), deterministic for a seed."""
        g = _as_rng(rng)
        out, seen = [], set()
        teacher = self.teacher()
        tries = 0
        while len(out) < n:
            a = self.sample(g)
            tries += 1
            if (unique and a in seen) or (exclude_teacher and a == teacher):
                if tries > 1000 * max(n, 1):
                    raise ArchError(f"could not draw {n} distinct architectures; the space is too small")
                continue
            seen.add(a)
            out.append(a)
        return out

    # --- encoding ----------------------------------------------------------------------------
    @property
    def encoding_dim(self) -> int:
        return self.num_stages * self.max_depth * len(self.width_multipliers) + 1

    def encode(self, arch: Arch) -> torch.Tensor:
        """Fixed-length float32 encoding (layout in the module docstring)."""
        self.validate(arch)
        k = len(self.width_multipliers)
        enc = torch.zeros(self.encoding_dim)
        for s, ws in enumerate(arch.widths):
            for b, w in enumerate(ws):
                enc[(s * self.max_depth + b) * k + self._choice_index[s][w]] = 1.0
        enc[-1] = self.macs(arch) / self.macs(self.teacher())
        return enc

    def decode(self, enc: torch.Tensor) -> Arch:
        """Inverse of :meth:`encode` (the one-hot part)."""
        enc = torch.as_tensor(enc).flatten()
        if enc.numel() != self.encoding_dim:
            raise ArchError(f"encoding has {enc.numel()} entries; this space's encoding has {self.encoding_dim}")
        k = len(self.width_multipliers)
        oh = enc[:-1].reshape(self.num_stages, self.max_depth, k)
        depths, widths = [], []
        for s in range(self.num_stages):
            ws = []
            for b in range(self.max_depth):
                if oh[s, b].sum() > 0:
                    ws.append(self.choices[s][int(oh[s, b].argmax())])
            depths.append(len(ws))
            widths.append(ws)
        return Arch(depths, widths)

    # --- cost --------------------------------------------------------------------------------
    def feature_sizes(self, image_size: Optional[int] = None) -> list[int]:
        """Spatial side of each stage's output map."""
        h = int(image_size or self.image_size)
        out = []
        for st in self.stage_strides:
            if st == 2:
                h = (h - 1) // 2 + 1
            out.append(h)
        return out

    def macs(self, arch: Arch, image_size: Optional[int] = None, num_classes: int = 0) -> int:
        """Multiply-accumulates of one forward pass at ``image_size`` (convs + classifier)."""
        self.validate(arch)
        h = int(image_size or self.image_size)
        stem = arch.widths[0][0]
        total = h * h * 9 * 3 * stem
        for s, b, cin, w in arch.blocks():
            if b == 0 and self.stage_strides[s] == 2:
                h = (h - 1) // 2 + 1
            total += h * h * 9 * cin * w      # conv1 (stride applied)
            total += h * h * 9 * w * w        # conv2
        total += arch.out_channels * num_classes
        return int(total)

    def params(self, arch: Arch, num_classes: int = 0) -> int:
        """Trainable parameters (conv weights, BN affine, classifier weight+bias when num_classes>0)."""
        self.validate(arch)
        stem = arch.widths[0][0]
        total = 27 * stem + 2 * stem
        for _, _, cin, w in arch.blocks():
            total += 9 * cin * w + 2 * w + 9 * w * w + 2 * w
        if num_classes:
            total += arch.out_channels * num_classes + num_classes
        return int(total)
