"""Corner strength relative to where corners usually are: kinked tracks, vertices away from the usual place.

A smooth track or trail has one edge orientation. Where a track kinks, or where tracks meet, the structure
tensor (Gaussian-weighted sums of products of the Sobel gradients) has two strong orientations and its
smaller eigenvalue, the Shi-Tomasi corner response, is large. Normal frames have corners too (the primary
vertex of every event, stars in a sky frame), so each frame's response is divided, pixel by pixel, by the
mean response at that pixel over its population (``reference``: averaged over the symmetries the data
allows, ``augment``). The ``corner`` score is the largest of those ratios: a corner counts by how unusual
it is where it is. The VAE cannot give this: trained on a few hundred events it learns where tracks are,
not their shape, and a kink's second segment lies where tracks often are. The reference file also holds
each population's usual edge directions (:mod:`cnnpipe.orientation`) and the patch bank (:mod:`cnnpipe.patches`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import h5py
import numpy as np
import pandas as pd
import torch

from .atomic import atomic_path
from .augment import apply, dihedral
from .config import Augment, Normalise
from .errors import UserError
from .filters import fill_masked, gaussian_blur, sobel
from .normalise import RAW_SCALE
from .orientation import (linear, misfit, orientation_field, strength, usual_direction,
                          vector_symmetry_average)
from .patches import PatchBank
from .population import population
from .shards import iter_batches, shard_number


def shi_tomasi(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """Smaller eigenvalue of the structure tensor of every pixel of a (N, H, W) batch.

    Equals ``skimage.feature.structure_tensor_eigenvalues(structure_tensor(img, sigma, mode="nearest"))[1]``.
    NaN pixels are filled with the frame's median before filtering and score 0 themselves.
    """
    frames, mask = fill_masked(frames)
    gx, gy = sobel(frames)
    a, b, c = gaussian_blur(torch.cat([gy * gy, gy * gx, gx * gx]), sigma).chunk(3)
    smaller = (a + c) / 2 - torch.sqrt(((a - c) / 2) ** 2 + b * b)
    return smaller.clamp(min=0.0).masked_fill(mask, 0.0)


def symmetry_average(image: np.ndarray, hflip: bool, vflip: bool, rot90: bool) -> np.ndarray:
    """Mean of a square (H, W) map over the orientation changes the data allows: exactly the set
    :func:`cnnpipe.augment.dihedral` gives the CNN and the VAE (identity alone: the map itself).

    The reference of a few hundred frames is noisy; where the data has no preferred orientation, averaging
    over the 8 rotations and mirror images is the same as having 8 times as many frames.
    """
    t = torch.from_numpy(np.asarray(image, dtype=np.float64))
    views = [apply(t, d).numpy() for d in dihedral(Augment(hflip, vflip, rot90, translate=0))]
    return np.mean(views, axis=0)


class ReferenceMaps(NamedTuple):
    """What a run's frames are measured against, per population (``names``): the mean corner response
    (P, H, W), the usual edge direction (P, 2, H, W) and misfit (P, H, W) of :mod:`cnnpipe.orientation`,
    and the frame counts."""
    names: list[str]
    corner: np.ndarray
    direction: np.ndarray
    usual_misfit: np.ndarray
    counts: np.ndarray


def frame_columns(path: str | Path) -> list[str]:
    """What to read of a frames shard: the tiles and, where ingestion stored them, each one's frame
    ``intensity_scale`` and ``intensity_offset`` (a shard written before it did lacks them:
    :func:`with_scale` gives 1 and 0)."""
    with h5py.File(path, "r") as f:
        return [n for n in ("frames", *RAW_SCALE) if n in f]


def with_scale(tiles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``tiles`` read by :func:`frame_columns`, with an ``intensity_scale`` of 1 and an ``intensity_offset``
    of 0 where the shard had none."""
    n = len(tiles["frames"])
    return {"intensity_scale": np.ones(n, np.float32), "intensity_offset": np.zeros(n, np.float32), **tiles}


def frame_batches(path: str | Path, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches of a frames shard: the tiles and each one's frame ``intensity_scale`` and ``intensity_offset``."""
    for b in iter_batches(path, frame_columns(path), batch):
        yield with_scale(b)


def reference_maps(frames_paths: list[str | Path], manifest: pd.DataFrame, sigma: float,
                   symmetries: dict[str, bool], device: torch.device, batch: int = 256,
                   orientation_sigmas: tuple[float, float] = (1.5, 1.0), stretch: Normalise | None = None
                   ) -> ReferenceMaps:
    """Per population, over all its frames (streamed, shard by shard): the mean corner response per pixel
    (window ``sigma``), symmetry-averaged and floored at 1e-3 of the population's mean response (so a pixel
    where no corner was ever seen cannot divide by ~0), and the usual edge direction and misfit of
    :mod:`cnnpipe.orientation` (``orientation_sigmas``: window and derivative smoothing; measured on the
    tiles put back on their raw scale, ``stretch`` the ingest normalisation). Anomalies are a few percent of
    the frames: averaging dilutes them.
    """
    ok = manifest[manifest.status == "ok"]
    names = sorted(set(population(ok)))
    code = {p: i for i, p in enumerate(names)}
    sums: dict[str, torch.Tensor] = {}
    counts = np.zeros(len(names))
    for path in frames_paths:
        rows = ok[ok.shard == shard_number(path)].sort_values("row")
        pops = np.array([code[p] for p in population(rows)], dtype=np.int64)
        start = 0
        for b in frame_batches(path, batch):
            frames = torch.from_numpy(b["frames"]).to(device).float()
            field = orientation_field(linear(frames, torch.from_numpy(b["intensity_scale"]).to(device), stretch),
                                      *orientation_sigmas)
            maps = {"corner": shi_tomasi(frames, sigma), "field": field, "strength": strength(field)}
            idx = torch.from_numpy(pops[start:start + len(frames)])
            for k, v in maps.items():
                v = v.cpu().double()
                sums.setdefault(k, torch.zeros((len(names), *v.shape[1:]), dtype=torch.float64)).index_add_(0, idx, v)
            counts += np.bincount(idx.numpy(), minlength=len(names))
            start += len(frames)
    if not sums:
        return ReferenceMaps(names, np.zeros((0, 1, 1)), np.zeros((0, 2, 1, 1)), np.zeros((0, 1, 1)), counts)
    means = {k: v.numpy() / np.maximum(counts, 1).reshape(-1, *[1] * (v.dim() - 1)) for k, v in sums.items()}
    corner = np.stack([symmetry_average(m, **symmetries) for m in means["corner"]])
    floor = 1e-3 * corner.mean(axis=(1, 2), keepdims=True) + 1e-12
    direction, usual = zip(*(usual_direction(vector_symmetry_average(f, **symmetries),
                                             symmetry_average(s, **symmetries))
                             for f, s in zip(means["field"], means["strength"])))
    return ReferenceMaps(names, np.maximum(corner, floor), np.stack(direction), np.stack(usual), counts)


def write_reference(path: str | Path, maps: ReferenceMaps, sigma: float, orientation_sigmas: tuple[float, float],
                    bank: tuple[np.ndarray, np.ndarray, float, int, int] | None = None) -> None:
    """The reference maps (made with corner window ``sigma`` and ``orientation_sigmas``) and, when given, the
    patch bank (patches, owners, eps, patch size, stride) of :mod:`cnnpipe.patches`: all fitted on the whole run."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("population", data=maps.names, dtype=h5py.string_dtype())
        f["corner"] = maps.corner.astype(np.float32)
        f["direction"] = maps.direction.astype(np.float32)
        f["usual_misfit"] = maps.usual_misfit.astype(np.float32)
        f["frames"] = maps.counts.astype(np.int64)
        f.attrs["sigma"] = sigma
        f.attrs["orientation_sigmas"] = orientation_sigmas
        if bank is not None:
            f["patch_bank"], f["patch_owner"] = bank[0], bank[1]
            f.attrs["patch_eps"], f.attrs["patch_size"], f.attrs["patch_stride"] = bank[2:]


def read_reference(path: str | Path) -> tuple[ReferenceMaps, float, tuple[float, float]]:
    """The reference maps, the corner window and the orientation sigmas they were made with."""
    with h5py.File(path, "r") as f:
        maps = ReferenceMaps(list(f["population"].asstr()[:]), f["corner"][:], f["direction"][:],
                             f["usual_misfit"][:], f["frames"][:])
        return maps, float(f.attrs["sigma"]), tuple(float(s) for s in f.attrs["orientation_sigmas"])


class Reference:
    """The reference maps of ``corner_reference.h5`` on a device, looked up by population."""

    def __init__(self, path: str | Path, device: torch.device):
        maps, self.sigma, self.orientation_sigmas = read_reference(path)
        self.path, self.index = path, {n: i for i, n in enumerate(maps.names)}
        self.maps = torch.from_numpy(maps.corner).to(device)
        self.direction = torch.from_numpy(maps.direction).to(device)
        self.usual_misfit = torch.from_numpy(maps.usual_misfit).to(device)
        with h5py.File(path, "r") as f:
            self.bank = PatchBank(f, device) if "patch_bank" in f else None

    def codes(self, populations: Iterable[str]) -> torch.Tensor:
        """Row of :attr:`maps` for each population; one the reference lacks is a one-line error."""
        try:
            return torch.tensor([self.index[p] for p in populations], dtype=torch.long, device=self.maps.device)
        except KeyError as e:
            raise UserError(f"{self.path}: no corner reference for {e.args[0]}; it was made for other inputs") from None

    def ratio(self, frames: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Corner response of (N, H, W) frames divided by the reference map of each one's population: the
        ``corner`` score is its maximum, the report shows it as a map."""
        return shi_tomasi(frames.float(), self.sigma) / self.maps[codes]

    def misfit_ratio(self, linear_frames: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Edge misfit (:mod:`cnnpipe.orientation`) of (N, H, W) frames on their raw intensity scale against
        the usual direction of each one's population, over the usual misfit there: the ``orientation``
        score is its maximum."""
        field = orientation_field(linear_frames.float(), *self.orientation_sigmas)
        return misfit(field, self.direction[codes]) / self.usual_misfit[codes]
