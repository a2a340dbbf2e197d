"""What a component function is given: one batch of one shard's tiles, or every ranked frame's latent."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import Normalise, Score, parse
from ..filters import level_noise
from ..orientation import linear


@dataclass
class ShardBatch:
    """A batch of tiles of one shard and the fitted things components are measured against.

    ``x`` (N, C, H, W) feature maps (intensity, Sobel magnitude...), ``valid`` (N, H, W) the unmasked
    fraction of each pixel, ``stats`` per-tile measurements made at ingestion (``sharpness``, ``coldness``;
    with the frames, ``intensity_scale`` and ``intensity_offset``), ``frames`` (N, T, T) the ingested tiles,
    normalised by ``stretch``, and ``codes`` each tile's row in the corner ``reference`` (None when no active
    component needs them). The VAE's forward pass is run once, on first use.
    """
    x: torch.Tensor
    valid: torch.Tensor
    stats: dict[str, np.ndarray]
    vae: torch.nn.Module | None = None
    cnn: torch.nn.Module | None = None
    cnn_meta: dict = field(default_factory=dict)
    frames: torch.Tensor | None = None
    reference: object | None = None   # cnnpipe.corners.Reference
    codes: torch.Tensor | None = None
    owners: torch.Tensor | None = None   # each tile's id across the run (cnnpipe.patches.owner_ids)
    settings: Score = field(default_factory=lambda: parse({}).score)   # score.* of the config
    stretch: Normalise | None = None     # ingest.normalise: how the frames were normalised
    _latent: tuple | None = None
    _vae_out: tuple | None = None
    _linear: torch.Tensor | None = None
    _raw_level: tuple | None = None

    @property
    def mask(self) -> torch.Tensor:
        return self.valid >= 0.5

    def linear_frames(self) -> torch.Tensor:
        """The tiles on their frame's raw intensity scale less its offset (:func:`cnnpipe.orientation.linear`),
        computed once per batch."""
        if self._linear is None:
            scale = torch.as_tensor(self.stats["intensity_scale"], device=self.frames.device)
            self._linear = linear(self.frames.float(), scale, self.stretch)
        return self._linear

    def raw_level_noise(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each tile's median level and robust noise (N,) on its frame's raw scale (the units of the input
        file: ADU, counts), from :func:`cnnpipe.filters.level_noise`; computed once per batch. A tile with no
        finite pixel gets the batch's median values: no level is not an unusual level."""
        if self._raw_level is None:
            level, noise = (v.flatten() for v in level_noise(self.linear_frames()))
            offset = torch.as_tensor(self.stats["intensity_offset"], device=self.frames.device)
            self._raw_level = (_neutral(level) + offset, _neutral(noise))
        return self._raw_level

    def latent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of the VAE's encoder on ``x``, computed once per batch: scoring without a
        reconstruction component never runs the decoder (half the VAE's cost)."""
        if self._latent is None:
            self._latent = self.vae.encode(self.x)
        return self._latent

    def vae_out(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(recon, mu, logvar)`` of the VAE on ``x`` (eval mode: z = mu), computed once per batch."""
        if self._vae_out is None:
            mu, logvar = self.latent()
            self._vae_out = (self.vae.decode(mu), mu, logvar)
        return self._vae_out


@dataclass
class LatentSpace:
    """Every ranked tile's latent mean over the active dimensions (N, D), whole-tile statistics, CNN
    features and thumbnails, in the order of the gathered table;
    ``k`` kNN neighbours, sought among a sample of ``knn_sample`` tiles (0 = all)."""
    z: np.ndarray
    k: int
    knn_sample: int = 0
    moments: np.ndarray | None = None     # (N, M) whole-tile statistics, same order
    cnn_features: np.ndarray | None = None   # (N, H) the CNN's penultimate activations, same order
    layout: np.ndarray | None = None      # (N, S*S) thumbnails of the intensity, same order


def _neutral(v: torch.Tensor) -> torch.Tensor:
    """``v`` with NaN replaced by the median of its other values (0 where all are NaN)."""
    nan = torch.isnan(v)
    if not bool(nan.any()):
        return v
    return torch.where(nan, torch.nanmedian(v).nan_to_num(0.0), v)
