"""The DaSS meta-predictor (docs/method.md#predictor): switchable inputs S, T, A, D and a tanh head.

* S  student functional encoder: conv3x3(C -> hidden, stride 2, no bias) -> ReLU ->
  conv3x3(hidden -> func_dim, stride 2, no bias) -> ReLU -> global average pool (docs/method.md#predictor; bias-free
  as in the authors' release).
* T  teacher functional encoder: the same structure with its own weights, applied to the teacher's
  map once and *repeated* for every student of the task (the authors encode the single teacher map and
  repeat the vector n times; passing one ``C x h x w`` map does exactly that, passing ``N x C x h x w``
  encodes one teacher per row).
* A  architecture encoder: one linear layer, encoding -> ``arch_dim``.
* D  dataset encoder: :class:`dass.predictor.set_encoder.DatasetEncoder` over ``classes x samples x F`` image
  features of the task, repeated for every student (MetaD2A/HELP's dataset input).
* head: concat in the authors' order S | A | T (then D) -> linear(head_hidden) -> tanh -> linear(1) =
  predicted accuracy in percent.

Output units. The authors' head regresses accuracy in percent directly (``predictor.target_norm=none``,
the paper default). With raw targets of 40-90 and a tanh hidden layer, short runs push the hidden
units into saturation before the ranking is learned; ``target_norm=meta_train`` makes the head
regress ``(acc - shift) / scale`` with shift/scale the mean/std of the meta-train accuracies (set by
the trainer through :meth:`Predictor.set_output_norm`, stored in the checkpoint), and
``forward`` still returns percent. The training losses are then measured in the same units
(:attr:`Predictor.loss_scale`), which keeps the paper's inner learning rate meaningful.

The enabled inputs come from ``predictor.inputs`` (paper default S+T+A); a disabled input builds no
module, so it owns no parameter (and no inner learning rate). Parameters are plain ``nn.Module``
parameters: meta-learning evaluates the model at adapted parameters with
``torch.func.functional_call`` (see :mod:`dass.predictor.inner`), so no special "meta module" hierarchy exists.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from ..errors import DataError
from .set_encoder import DatasetEncoder

INPUTS = ("S", "T", "A", "D")            # the order the encoders are built in (and their parameters drawn)
CONCAT_ORDER = ("S", "A", "T", "D")      # the order the head reads them: the authors' S | A | T


class FuncEncoder(nn.Module):
    """Functional-map encoder (docs/method.md#predictor, S and T): C x h x w maps -> ``out`` vectors."""

    def __init__(self, in_channels: int, hidden: int, out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv2d(hidden, out, 3, stride=2, padding=1, bias=False)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return x.mean(dim=(2, 3))


class ArchEncoder(nn.Module):
    """Architecture encoder (docs/method.md#predictor, A): one linear layer."""

    def __init__(self, enc_dim: int, out: int):
        super().__init__()
        self.fc = nn.Linear(enc_dim, out)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc(a)


class Predictor(nn.Module):
    """``Predictor(cfg.predictor, enc_dim, func_channels)``; ``forward(...) -> [N]`` accuracy (percent)."""

    def __init__(self, cfg_predictor, enc_dim: int, func_channels: int):
        super().__init__()
        c = cfg_predictor
        self.inputs = tuple(x for x in INPUTS if x in c.inputs)
        if not self.inputs:
            raise DataError("config key 'predictor.inputs' must name at least one of S, T, A, D")
        self.pcfg = c
        self.enc_dim, self.func_channels = int(enc_dim), int(func_channels)
        # Everything needed to rebuild this exact module from a checkpoint (dass.predictor.checkpoint.load_predictor).
        self.spec = {"predictor": dataclasses.asdict(c), "enc_dim": self.enc_dim,
                     "func_channels": self.func_channels}
        width = 0
        if "S" in self.inputs:
            self.student_encoder = FuncEncoder(self.func_channels, c.func_hidden, c.func_dim)
            width += c.func_dim
        if "T" in self.inputs:
            self.teacher_encoder = FuncEncoder(self.func_channels, c.func_hidden, c.func_dim)
            width += c.func_dim
        if "A" in self.inputs:
            self.arch_encoder = ArchEncoder(self.enc_dim, c.arch_dim)
            width += c.arch_dim
        if "D" in self.inputs:
            self.dataset_encoder = DatasetEncoder(c.dataset_feature_dim, c.dataset_dim, c.dataset_heads,
                                                  c.dataset_num_inducing, c.dataset_block, c.attention_scale)
            width += c.dataset_dim
        self.head = nn.Sequential(nn.Linear(width, c.head_hidden), nn.Tanh(), nn.Linear(c.head_hidden, 1))
        self.set_output_norm(0.0, 1.0)

    def set_output_norm(self, shift: float, scale: float) -> None:
        """Predicted percent = ``shift + scale * head(...)`` (see module docstring)."""
        if not scale > 0:
            raise DataError(f"output scale must be positive, got {scale}")
        self.out_shift, self.out_scale = float(shift), float(scale)
        self.spec["output_norm"] = [self.out_shift, self.out_scale]

    @property
    def loss_scale(self) -> float:
        """Divide a squared error in percent by this to measure it in the head's units."""
        return self.out_scale ** 2

    # ------------------------------------------------------------------------------------------
    def _check_maps(self, x: torch.Tensor, what: str) -> None:
        if x.dim() != 4 or x.shape[1] != self.func_channels:
            raise DataError(f"{what} must be N x {self.func_channels} x h x w functional maps, got shape "
                            f"{tuple(x.shape)}; the database and the predictor must come from one search space")

    def forward(self, fmaps: Optional[torch.Tensor], teacher_fmap: Optional[torch.Tensor],
                arch_enc: Optional[torch.Tensor], dataset_feats: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = None
        for t in (arch_enc, fmaps):
            if t is not None:
                n = t.shape[0]
                break
        if n is None:
            raise DataError("the predictor needs the students' maps or architecture encodings")
        parts = {}
        if "S" in self.inputs:
            if fmaps is None:
                raise DataError("predictor input S needs the students' functional maps")
            self._check_maps(fmaps, "student maps")
            parts["S"] = self.student_encoder(fmaps)
        if "T" in self.inputs:
            if teacher_fmap is None:
                raise DataError("predictor input T needs the teacher's functional map (teacher record)")
            t = teacher_fmap if teacher_fmap.dim() == 4 else teacher_fmap.unsqueeze(0)
            self._check_maps(t, "teacher map")
            z = self.teacher_encoder(t)
            if z.shape[0] == 1:
                z = z.expand(n, -1)            # one teacher, repeated for every student of the task
            elif z.shape[0] != n:
                raise DataError(f"got {z.shape[0]} teacher maps for {n} students; pass one map or one per student")
            parts["T"] = z
        if "A" in self.inputs:
            if arch_enc is None or arch_enc.dim() != 2 or arch_enc.shape[1] != self.enc_dim:
                got = None if arch_enc is None else tuple(arch_enc.shape)
                raise DataError(f"architecture encodings must be N x {self.enc_dim}, got {got}; the database and "
                                f"the predictor must come from one search space")
            parts["A"] = self.arch_encoder(arch_enc)
        if "D" in self.inputs:
            if dataset_feats is None:
                raise DataError("predictor input D needs the task's dataset features (records.dataset_features); "
                                "rebuild the database with dataset features or drop D from predictor.inputs")
            parts["D"] = self.dataset_encoder(dataset_feats).reshape(1, -1).expand(n, -1)
        x = torch.cat([parts[k] for k in CONCAT_ORDER if k in parts], dim=1)
        return self.out_shift + self.out_scale * self.head(x).squeeze(-1)
