"""The dataset encoder (docs/method.md#predictor, input D): a Set Transformer over image features.

Set Transformer blocks (Lee et al., ICML 2019) as MetaD2A/HELP use them to encode a dataset:

* ``MAB(Q, K)``: multi-head attention block. Queries, keys and values are linear projections to
  ``dim``; per head ``O_h = Q_h + softmax(Q_h K_h^T / s) V_h``; then ``O = O + relu(fc_o(O))``
  (no layer norm, as in the reference code MetaD2A and DaSS ship).
* ``SAB(X) = MAB(X, X)``; ``ISAB(X) = MAB(X, MAB(I, X))`` with ``m`` learned inducing points ``I``
  (linear rather than quadratic in the set size); ``PMA(X) = MAB(S, X)`` with ``k`` learned seeds.

Attention scaling ``s``: the reference implementation divides by ``sqrt(dim)``, the *full* model
width, not by ``sqrt(dim / heads)`` (the per-head width of the Transformer paper). We keep the
reference scaling by default (``predictor.attention_scale=reference``) so trained behaviour matches
MetaD2A/DaSS, and offer ``textbook`` (``sqrt(dim / heads)``) as an option.

:class:`DatasetEncoder` is MetaD2A's two-level set pooling: an *intra-class* set pool turns each
class's sample of image features into a class prototype, then an *inter-class* set pool turns the set
of prototypes into one dataset vector. Each set pool is two SAB (or ISAB, ``predictor.dataset_block``)
blocks, then PMA with one seed, then a linear layer (MetaD2A's ``sabPF`` mode).

The image features it reads come from :func:`dass.data.features.dataset_features` (the data layer
computes them; the database stores them).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError

SCALES = ("reference", "textbook")


class MAB(nn.Module):
    """Multi-head attention block (see module docstring for the scaling choice)."""

    def __init__(self, dim_q: int, dim_k: int, dim: int, heads: int, scale: str = "reference"):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"set-encoder width {dim} is not divisible by predictor.dataset_heads={heads}; "
                              f"choose predictor.dataset_dim as a multiple of the head count")
        if scale not in SCALES:
            raise ConfigError(f"config key 'predictor.attention_scale' must be one of {list(SCALES)}, got {scale!r}")
        self.dim, self.heads = dim, heads
        self.fc_q = nn.Linear(dim_q, dim)
        self.fc_k = nn.Linear(dim_k, dim)
        self.fc_v = nn.Linear(dim_k, dim)
        self.fc_o = nn.Linear(dim, dim)
        self.scale = math.sqrt(dim if scale == "reference" else dim // heads)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # q: B x n x dim_q, k: B x m x dim_k -> B x n x dim
        b, n, _ = q.shape
        m = k.shape[1]
        hd = self.dim // self.heads
        qp = self.fc_q(q)
        qh = qp.view(b, n, self.heads, hd).transpose(1, 2)              # B x H x n x hd
        kh = self.fc_k(k).view(b, m, self.heads, hd).transpose(1, 2)    # B x H x m x hd
        vh = self.fc_v(k).view(b, m, self.heads, hd).transpose(1, 2)
        att = torch.softmax(qh @ kh.transpose(-1, -2) / self.scale, dim=-1)
        o = (qh + att @ vh).transpose(1, 2).reshape(b, n, self.dim)
        return o + F.relu(self.fc_o(o))


class SAB(nn.Module):
    def __init__(self, dim_in: int, dim: int, heads: int, scale: str = "reference"):
        super().__init__()
        self.mab = MAB(dim_in, dim_in, dim, heads, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mab(x, x)


class ISAB(nn.Module):
    def __init__(self, dim_in: int, dim: int, heads: int, num_inducing: int, scale: str = "reference"):
        super().__init__()
        self.inducing = nn.Parameter(torch.empty(1, num_inducing, dim))
        nn.init.xavier_uniform_(self.inducing)
        self.mab0 = MAB(dim, dim_in, dim, heads, scale)
        self.mab1 = MAB(dim_in, dim, dim, heads, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mab0(self.inducing.expand(x.shape[0], -1, -1), x)
        return self.mab1(x, h)


class PMA(nn.Module):
    def __init__(self, dim: int, heads: int, num_seeds: int = 1, scale: str = "reference"):
        super().__init__()
        self.seeds = nn.Parameter(torch.empty(1, num_seeds, dim))
        nn.init.xavier_uniform_(self.seeds)
        self.mab = MAB(dim, dim, dim, heads, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mab(self.seeds.expand(x.shape[0], -1, -1), x)


class SetPool(nn.Module):
    """Two SAB/ISAB blocks, PMA with one seed, linear: a set of vectors -> one vector."""

    def __init__(self, dim_in: int, dim: int, heads: int, block: str = "sab", num_inducing: int = 32,
                 scale: str = "reference"):
        super().__init__()
        if block == "sab":
            self.enc = nn.Sequential(SAB(dim_in, dim, heads, scale), SAB(dim, dim, heads, scale))
        elif block == "isab":
            self.enc = nn.Sequential(ISAB(dim_in, dim, heads, num_inducing, scale),
                                     ISAB(dim, dim, heads, num_inducing, scale))
        else:
            raise ConfigError(f"config key 'predictor.dataset_block' must be 'sab' or 'isab', got {block!r}")
        self.pma = PMA(dim, heads, 1, scale)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: B x n x dim_in -> B x dim
        return self.out(self.pma(self.enc(x)))[:, 0]


class DatasetEncoder(nn.Module):
    """MetaD2A's dataset encoding: intra-class pooling to prototypes, then inter-class pooling."""

    def __init__(self, feature_dim: int, dim: int, heads: int = 4, num_inducing: int = 32,
                 block: str = "sab", scale: str = "reference"):
        super().__init__()
        self.feature_dim, self.dim = feature_dim, dim
        self.intra = SetPool(feature_dim, dim, heads, block, num_inducing, scale)
        self.inter = SetPool(dim, dim, heads, block, num_inducing, scale)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``classes x samples x F`` -> ``dim`` (or ``B x classes x samples x F`` -> ``B x dim``)."""
        single = feats.dim() == 3
        if single:
            feats = feats.unsqueeze(0)
        if feats.dim() != 4 or feats.shape[-1] != self.feature_dim:
            raise DataError(f"dataset features must be classes x samples x {self.feature_dim}, got "
                            f"{tuple(feats.shape[-3:])}; rebuild them with predictor.dataset_feature_dim="
                            f"{self.feature_dim}")
        b, c, s, f = feats.shape
        protos = self.intra(feats.reshape(b * c, s, f)).view(b, c, self.dim)
        out = self.inter(protos)
        return out[0] if single else out
