"""Components from the VAE: reconstruction errors (intensity, Sobel) and the KL term."""
from __future__ import annotations

import torch

from ..models.vae import vae_terms
from .batch import ShardBatch


def top_mean(values: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per-sample mean of the largest ``fraction`` of the unmasked values of (N, H, W) maps.

    A satellite trail or a dead column touches a few percent of the pixels: averaging the whole frame
    would drown it in noise, the worst few percent keep it.
    """
    flat = values.masked_fill(~mask, float("-inf")).flatten(1)
    k = max(1, int(round(fraction * flat.shape[1])))
    top = flat.topk(k, dim=1).values
    return torch.where(torch.isfinite(top), top, torch.zeros_like(top)).mean(dim=1)


def _residual(b: ShardBatch, channel: int) -> torch.Tensor:
    """Squared VAE residual of every pixel of one channel over the mean squared residual of that pixel on
    the training frames (``vae.residual_scale``): a track far from where tracks usually are counts, a
    bright star core the model always blurs does not."""
    recon = b.vae_out()[0]
    return (b.x[:, channel].float() - recon[:, channel].float()) ** 2 / b.vae.residual_scale[channel]


def recon(b: ShardBatch) -> torch.Tensor:
    return top_mean(_residual(b, 0), b.mask, b.settings.top_fraction)


def recon_sobel(b: ShardBatch) -> torch.Tensor:
    return top_mean(_residual(b, 1), b.mask, b.settings.top_fraction)


def kl(b: ShardBatch) -> torch.Tensor:
    recon_, mu, logvar = b.vae_out()
    return vae_terms(b.x, recon_, b.valid, mu, logvar)["kl"]
