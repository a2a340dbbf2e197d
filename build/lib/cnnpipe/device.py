"""Pick the compute device from config: ``auto`` = CUDA when present, else CPU."""
from __future__ import annotations

import torch

from .errors import UserError


class DeviceError(UserError):
    pass


def select(name: str = "auto", threads: int | None = None) -> torch.device:
    """Return the torch device for ``name`` (auto|cpu|cuda); set CPU threads when given."""
    if threads:
        torch.set_num_threads(threads)
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device: cuda was requested but no CUDA GPU is visible; set device: auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
