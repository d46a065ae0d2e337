"""The ResNet of docs/method.md#space for teachers and students, and strict state-dict loading.

Layout (torchvision style, the authors' exact key names): ``conv1``/``bn1`` stem (3x3, stride 1, no
max-pool), ``layer{1..4}.{b}.conv1/bn1/conv2/bn2`` BasicBlocks, global average pool, ``fc``.
Shortcuts have no parameters: a stride-2 block max-pools the input 2x2, and a width change keeps the
first channels (narrower block) or zero-pads extra channels (wider block), as the authors'
``IdentityShortCut`` does (docs/method.md#space). Files are read by :mod:`dass.train.checkpoints`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CheckpointError
from .space import Arch


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Parameter-free channel change: zero-pad new channels or keep the first ``channels``."""
    c = x.shape[1]
    if c == channels:
        return x
    if c > channels:
        return x[:, :channels]
    return F.pad(x, (0, 0, 0, 0, 0, channels - c))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.stride = stride
        self.width = width

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = F.max_pool2d(x, 2)
        return match_channels(x, self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Teacher or student ResNet for an :class:`~dass.space.Arch`.

    ``forward(x)`` returns logits; ``forward(x, return_features=True)`` returns ``(logits, maps)``
    with the per-stage output maps; ``features(x)`` returns only the maps (no classifier work).
    """

    def __init__(self, arch: Arch, num_classes: int, strides: Sequence[int] = (1, 2, 2, 2)):
        super().__init__()
        if len(strides) != arch.num_stages:
            raise ValueError(f"ResNet needs one stride per stage ({arch.num_stages}), got {list(strides)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.arch = arch
        self.num_classes = int(num_classes)
        self.strides = tuple(int(s) for s in strides)
        stem = arch.widths[0][0]
        self.conv1 = conv3x3(3, stem)
        self.bn1 = nn.BatchNorm2d(stem)
        cin = stem
        for s, ws in enumerate(arch.widths):
            blocks = []
            for b, w in enumerate(ws):
                blocks.append(BasicBlock(cin, w, self.strides[s] if b == 0 else 1))
                cin = w
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)
        self.reset_parameters()

    @property
    def layers(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{s + 1}") for s in range(self.arch.num_stages)]

    def reset_parameters(self) -> None:
        """Init of docs/method.md#space: Kaiming-normal (fan_out, relu) convs; BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # nn.Linear keeps PyTorch's default init (the paper is silent on the classifier).

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        maps = []
        for layer in self.layers:
            x = layer(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor, return_features: bool = False):
        maps = self.features(x)
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(maps[-1], 1), 1))
        return (logits, maps) if return_features else logits


# --------------------------------------------------------------------------------------------- #
# state dicts and checkpoints
# --------------------------------------------------------------------------------------------- #

def strip_module_prefix(state_dict: dict) -> "OrderedDict[str, torch.Tensor]":
    """Remove DataParallel/DDP ``module.`` prefixes (and torch.compile's ``_orig_mod.``)."""
    out = OrderedDict()
    for k, v in state_dict.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def check_state_dict(model: nn.Module, state_dict: dict, source: str) -> None:
    """Strict key and shape check with a one-line error naming the first mismatch."""
    own = model.state_dict()
    for k, v in own.items():
        if k not in state_dict:
            if k.endswith("num_batches_tracked"):
                continue
            raise CheckpointError(f"{source}: missing key '{k}'; the checkpoint is for another architecture "
                                  f"(check the architecture/space it was trained with)")
        got = state_dict[k]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{source}: key '{k}' is not a tensor; the file is not a ResNet state dict")
        if tuple(got.shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(got.shape)} but the model expects "
                                  f"{tuple(v.shape)}; the checkpoint is for another architecture or class count")
    extra = [k for k in state_dict if k not in own]
    if extra:
        raise CheckpointError(f"{source}: unexpected key '{extra[0]}'; the checkpoint is for another architecture")


def load_state_dict_strict(model: nn.Module, state_dict: dict, source: str) -> nn.Module:
    sd = strip_module_prefix(state_dict)
    check_state_dict(model, sd, source)
    sd = {k: v for k, v in sd.items() if k in model.state_dict()}
    model.load_state_dict(sd, strict=False)
    return model


def extract_state_dict(obj, source: str) -> dict:
    """Accept ``{'state_dict': sd, ...}`` (the authors' layout), ``{'model': sd}`` or a bare state dict."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise CheckpointError(f"{source}: not a model checkpoint (expected a dict with key 'state_dict'); "
                          f"check that the path points at model_best.pth.tar")
