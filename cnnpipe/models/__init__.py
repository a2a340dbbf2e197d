"""Models: a LeNet/AlexNet-style CNN (``cnn.CNN``) and a convolutional VAE (``vae.ConvVAE``).

``build(config)`` makes either from the plain dict stored in a checkpoint (see ``cnnpipe.checkpoint``).
"""
from __future__ import annotations

from torch import nn

from .cnn import CNN
from .vae import ConvVAE

ARCH_KEYS = {"cnn": ("in_channels", "size", "channels", "hidden", "n_classes"),
             "vae": ("in_channels", "size", "channels", "latent_dim", "upsample", "encoder_slope")}
# Keys added after checkpoints were first written, with the value every older checkpoint was trained with
# (cnnpipe.checkpoint.load fills them in, so the config check compares them).
LEGACY_DEFAULTS = {"cnn": {}, "vae": {"upsample": "transpose", "encoder_slope": 0.0}}


def build(config: dict) -> nn.Module:
    """A fresh model from a model-config dict ``{"kind": "cnn"|"vae", <constructor arguments>}``."""
    kind = config.get("kind")
    if kind not in ARCH_KEYS:
        raise ValueError(f"unknown model kind {kind!r}")
    args = {k: config[k] for k in ARCH_KEYS[kind] if k in config}  # a key left out: the constructor's default
    return CNN(**args) if kind == "cnn" else ConvVAE(**args)


__all__ = ["CNN", "ConvVAE", "build", "ARCH_KEYS", "LEGACY_DEFAULTS"]
