"""What a training run optimises and where: the recipe, the device, precision and distributed set-up.

docs/method.md#teachers and #kd give the recipes; the precision switches (``train.amp``,
``train.cudnn_benchmark``) are opt-in and part of the database fingerprint.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, fields
from typing import Optional

import torch
import torch.distributed as dist

from ..config import SGDConfig, resolve_device
from ..errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """What a run optimises; stored in checkpoints so a resume with other settings is refused."""

    kind: str                   # "teacher" or "kd"
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    eval_every: int
    label_smoothing: float = 0.0
    temperature: float = 0.0
    alpha: float = 0.0
    heavy_aug: bool = False

    @classmethod
    def _from(cls, kind: str, section, **extra) -> "Recipe":
        """The shared optimiser fields (:class:`dass.config.SGDConfig`) of ``section``, by name."""
        sgd = {f.name: getattr(section, f.name) for f in fields(SGDConfig)}
        return cls(kind=kind, **{**sgd, **extra})

    @classmethod
    def teacher(cls, cfg, meta_test: bool = False) -> "Recipe":
        t = cfg.teacher
        return cls._from("teacher", t, lr=t.lr_meta_test if meta_test else t.lr, label_smoothing=t.label_smoothing,
                         heavy_aug=t.heavy_aug)

    @classmethod
    def kd(cls, cfg) -> "Recipe":
        k = cfg.kd
        return cls._from("kd", k, temperature=k.temperature, alpha=k.alpha)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- #
# device, precision, distributed
# --------------------------------------------------------------------------------------------- #

def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; ``(0, 1, 0)`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, 0
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def setup_device(cfg) -> torch.device:
    """The device of this process: ``run.device``, or ``cuda:LOCAL_RANK`` under torchrun.

    Under torchrun the process group is initialised here (NCCL on CUDA, gloo on CPU), once.
    """
    device = resolve_device(cfg.run.device)
    rank, world, local = dist_env()
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def amp_dtype(cfg, device: torch.device) -> Optional[torch.dtype]:
    """``train.amp``: auto = bf16 on CUDA (fp16 on GPUs without bf16), full precision on CPU."""
    mode = cfg.train.amp
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16":
        if device.type != "cuda":
            raise ConfigError("config key 'train.amp' = fp16 needs a CUDA device; use bf16, auto or off")
        return torch.float16
    return torch.bfloat16


def set_cudnn(cfg, device: torch.device) -> None:
    """Deterministic cuDNN kernels, as the authors train (docs/method.md#kd), unless
    ``train.cudnn_benchmark`` asks for autotuned ones (faster, not bit-reproducible)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.train.cudnn_benchmark)
        torch.backends.cudnn.deterministic = not cfg.train.cudnn_benchmark


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
