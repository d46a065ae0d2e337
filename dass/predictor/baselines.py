"""Training-free proxy maths that is more than a one-liner: the DisWOT-style score.

docs/method.md#evaluation. DisWOT (Dong et al., CVPR 2023) compares the *semantic* (channel) and
*relation* similarity matrices of teacher and student features. With one noise input (the stored
functional maps) the sample-relation matrix is trivial, so the spatial analogue is used. For a map ``F``
(C x hw): ``G = n(F) n(F)^T`` (C x C, rows L2-normalised: channel similarity) and ``R = n(F^T) n(F^T)^T``
(hw x hw: spatial relation). Score ``= -(||G_s - G_t||_F / C + ||R_s - R_t||_F / hw)``: 0 for a map
identical to the teacher's, the maximum. A narrower student's zero-padded channels have zero rows in
``G_s``, so missing capacity counts as dissimilarity. Every method, this one included, is registered in
:mod:`dass.predictor.methods`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DataError


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
