"""Baselines and ablations, all scored through one function so every comparison is side by side.

``score(method, records, **kw) -> Tensor [N]`` (higher = predicted better) for

* ``random``: a seeded uniform draw (``seed=``) -- the chance level;
* ``macs`` / ``params``: bigger is better (the usual zero-cost proxies);
* ``diswot``: a training-free teacher-student similarity in the style of DisWOT (Dong et al., CVPR
  2023), computed from the functional maps already in the database (one noise input, docs/method.md#embedding). DisWOT
  compares the *semantic* (channel) and *relation* similarity matrices of teacher and student
  features. With one input image the sample-relation matrix is trivial, so we use its spatial
  analogue. For a map ``F`` (C x hw): ``G = n(F) n(F)^T`` (C x C, rows L2-normalised: channel
  similarity) and ``R = n(F^T) n(F^T)^T`` (hw x hw: spatial relation). Score
  ``= -(||G_s - G_t||_F / C + ||R_s - R_t||_F / hw)``: 0 for a map identical to the teacher's, the
  maximum. A narrower student's zero-padded channels have zero rows in ``G_s``, so missing
  capacity counts as dissimilarity;
* trained predictors -- ``dass`` (the meta-trained DaSS checkpoint), ``metad2a`` (a MetaD2A/HELP-style
  predictor: inputs D + A, trained across the meta-train tasks without teacher-guided adaptation and
  without functional embeddings) and the DaSS ablations ``dass-no-S`` / ``-no-T`` / ``-no-A`` /
  ``-no-D`` (one input removed), ``dass-no-adapt`` (meta.adapt=false) and ``dass-first-order``
  (meta.second_order=false) -- scored with ``checkpoint=PATH`` or ``model=..., inner_lrs=...``.

:func:`variant_config` turns the DaSS config into the config of a trained baseline/ablation (its own
``meta.out`` sub-directory ``<meta.out>/baselines/<name>``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from .errors import ConfigError, DataError
from .meta import load_predictor, predict
from .records import TaskRecords

STATIC = ("random", "macs", "params", "diswot")


def trained_variants(cfg) -> list[str]:
    """The trained baselines/ablations that make sense for this DaSS config, in report order."""
    names = ["metad2a"]
    inputs = list(cfg.predictor.inputs)
    for x in ("S", "T", "A", "D"):
        if x in inputs and len(inputs) > 1:
            names.append(f"dass-no-{x}")
    if cfg.meta.adapt:
        names.append("dass-no-adapt")
        if cfg.meta.second_order:
            names.append("dass-first-order")
    return names


def all_methods(cfg) -> list[str]:
    return ["dass", *STATIC, *trained_variants(cfg)]


def variant_config(cfg, name: str):
    """A deep copy of ``cfg`` changed into trained baseline/ablation ``name``."""
    if name not in trained_variants(cfg):
        raise ConfigError(f"unknown trained baseline '{name}'; known for this config: {', '.join(trained_variants(cfg))}")
    c = copy.deepcopy(cfg)
    if name == "metad2a":
        c.predictor.inputs = ["D", "A"]
        c.meta.adapt = False
    elif name.startswith("dass-no-") and len(name) == len("dass-no-") + 1:
        c.predictor.inputs = [x for x in c.predictor.inputs if x != name[-1]]
    elif name == "dass-no-adapt":
        c.meta.adapt = False
    elif name == "dass-first-order":
        c.meta.second_order = False
    c.meta.out = str(Path(cfg.meta.out) / "baselines" / name)
    return c


def needs_dataset_features(cfg, name: str) -> bool:
    c = cfg if name == "dass" else variant_config(cfg, name)
    return "D" in c.predictor.inputs


# --------------------------------------------------------------------------------------------- #
# training-free scores
# --------------------------------------------------------------------------------------------- #

def _similarities(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``N x C x h x w`` -> channel similarity ``N x C x C`` and spatial relation ``N x hw x hw``."""
    f = maps.flatten(2).double()                          # N x C x hw
    fc = F.normalize(f, dim=2, eps=1e-12)
    fs = F.normalize(f.transpose(1, 2), dim=2, eps=1e-12)
    return fc @ fc.transpose(1, 2), fs @ fs.transpose(1, 2)


def diswot_score(student_maps: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """DisWOT-style similarity of each student map to the teacher map (see module docstring)."""
    t = teacher_map if teacher_map.dim() == 4 else teacher_map.unsqueeze(0)
    if student_maps.dim() != 4 or t.shape[1:] != student_maps.shape[1:]:
        raise DataError(f"diswot needs student maps N x C x h x w matching the teacher map, got "
                        f"{tuple(student_maps.shape)} and {tuple(teacher_map.shape)}")
    gs, rs = _similarities(student_maps)
    gt, rt = _similarities(t)
    c, hw = gs.shape[-1], rs.shape[-1]
    d = torch.linalg.matrix_norm(gs - gt) / c + torch.linalg.matrix_norm(rs - rt) / hw
    return (-d).float()


# --------------------------------------------------------------------------------------------- #
# one entry point
# --------------------------------------------------------------------------------------------- #

def score(method: str, records: TaskRecords, **kw) -> torch.Tensor:
    """Scores of every student of ``records`` under ``method`` (higher = predicted more accurate)."""
    if method == "random":
        g = torch.Generator().manual_seed(int(kw.get("seed", 0)))
        return torch.rand(len(records), generator=g)
    if method == "macs":
        return records.macs.double().clone()
    if method == "params":
        return records.params.double().clone()
    if method == "diswot":
        if records.teacher is None:
            raise DataError(f"task {records.task}: the diswot baseline needs the teacher's functional map "
                            f"(teacher record)")
        return diswot_score(records.fmaps, records.teacher.fmap)
    if method == "dass" or method == "metad2a" or method.startswith("dass-"):
        model, lrs, info = kw.get("model"), kw.get("inner_lrs"), kw.get("meta_info") or {}
        if model is None:
            ckpt: Optional[str | Path] = kw.get("checkpoint")
            if ckpt is None:
                raise ConfigError(f"baseline '{method}' is a trained predictor: pass checkpoint=PATH or model=...")
            model, lrs, info = load_predictor(ckpt, kw.get("device", "cpu"))
        return predict(model, lrs, records, adapt=bool(info.get("adapt", True)), cfg=kw.get("cfg"))
    raise ConfigError(f"unknown method '{method}'; known: dass, {', '.join(STATIC)}, metad2a, "
                      f"dass-no-S/T/A/D, dass-no-adapt, dass-first-order")
