"""Corner strength relative to where corners usually are: kinked tracks, vertices away from the usual place.

A smooth track or trail has one edge orientation. Where a track kinks, or where tracks meet, the structure
tensor (Gaussian-weighted sums of products of the Sobel gradients) has two strong orientations and its
smaller eigenvalue, the Shi-Tomasi corner response, is large. Normal frames have corners too (the primary
vertex of every event, stars in a sky frame), so each frame's response is divided, pixel by pixel, by the
mean response at that pixel over its population (``reference``: averaged over the symmetries the data
allows, ``augment``). The ``corner`` score is the largest of those ratios: a corner counts by how unusual
it is where it is. The VAE cannot give this: trained on a few hundred events it learns where tracks are,
not their shape, and a kink's second segment lies where tracks often are.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np
import pandas as pd
import torch

from .atomic import atomic_path
from .augment import apply, dihedral
from .config import Augment
from .errors import UserError
from .filters import fill_masked, sobel
from .patches import PatchBank
from .population import population
from .shards import iter_batches, shard_number


@lru_cache(maxsize=16)
def blur_matrix(n: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The 1-D Gaussian filter of ``n`` samples with replicated edges as an (n, n) matrix: ``out = M @ x``.

    Row i holds the taps ``k[t]`` at columns ``clip(i + t - r, 0, n - 1)`` (the edge replication folded in),
    so the result equals ``scipy.ndimage.gaussian_filter1d(x, sigma, mode="nearest", truncate=truncate)``.
    """
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    m = np.zeros((n, n))
    rows = np.repeat(np.arange(n), len(k))
    np.add.at(m, (rows, np.clip(rows + np.tile(t.astype(int), n), 0, n - 1)), np.tile(k, n))
    return m


def gaussian_blur(image: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian filter of a (N, H, W) batch, edges replicated: ``scipy.ndimage.gaussian_filter(mode="nearest")``.

    Separable, each pass one matrix product with :func:`blur_matrix` (``M_y @ X @ M_x^T``): a BLAS call
    does the (2r + 1)-tap sums of a whole batch instead of shifted sums that stream every map
    through memory once per tap.
    """
    n, h, w = image.shape
    my = torch.from_numpy(blur_matrix(h, sigma, truncate)).to(image.device, image.dtype)
    mx = torch.from_numpy(blur_matrix(w, sigma, truncate)).to(image.device, image.dtype)
    rows = (image.reshape(n * h, w) @ mx.T).view(n, h, w)   # along the rows: one (N H, W) x (W, W) product
    return torch.matmul(my, rows)                             # down the columns: N products (H, H) x (H, W)


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


def reference_maps(frames_paths: list[str | Path], manifest: pd.DataFrame, sigma: float,
                   symmetries: dict[str, bool], device: torch.device, batch: int = 256
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Mean corner response per pixel of each population over all its frames (streamed, shard by shard).

    Returns the population names, their maps (P, H, W), symmetry-averaged and floored at 1e-3 of the
    population's mean response (so a pixel where no corner was ever seen cannot divide by ~0), and the
    frame counts. Anomalies are a few percent of the frames: averaging dilutes them.
    """
    ok = manifest[manifest.status == "ok"]
    names = sorted(set(population(ok)))
    code = {p: i for i, p in enumerate(names)}
    sums, counts = None, np.zeros(len(names))
    for path in frames_paths:
        rows = ok[ok.shard == shard_number(path)].sort_values("row")
        pops = np.array([code[p] for p in population(rows)], dtype=np.int64)
        start = 0
        for b in iter_batches(path, ["frames"], batch):
            response = shi_tomasi(torch.from_numpy(b["frames"]).to(device).float(), sigma).cpu().double()
            idx = torch.from_numpy(pops[start:start + len(response)])
            if sums is None:
                sums = torch.zeros((len(names), *response.shape[1:]), dtype=torch.float64)
            sums.index_add_(0, idx, response)
            counts += np.bincount(idx.numpy(), minlength=len(names))
            start += len(response)
    if sums is None:
        return names, np.zeros((0, 1, 1)), counts
    means = sums.numpy() / np.maximum(counts, 1)[:, None, None]
    maps = np.stack([symmetry_average(m, **symmetries) for m in means])
    floor = 1e-3 * maps.mean(axis=(1, 2), keepdims=True) + 1e-12
    return names, np.maximum(maps, floor), counts


def write_reference(path: str | Path, names: list[str], maps: np.ndarray, counts: np.ndarray, sigma: float,
                    bank: tuple[np.ndarray, np.ndarray, float, int, int] | None = None) -> None:
    """The corner maps and, when given, the patch bank (patches, owners, eps, patch size, stride) of
    :mod:`cnnpipe.patches`: both are fitted on the whole run."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("population", data=names, dtype=h5py.string_dtype())
        f["corner"] = maps.astype(np.float32)
        f["frames"] = counts.astype(np.int64)
        f.attrs["sigma"] = sigma
        if bank is not None:
            f["patch_bank"], f["patch_owner"] = bank[0], bank[1]
            f.attrs["patch_eps"], f.attrs["patch_size"], f.attrs["patch_stride"] = bank[2:]


def read_reference(path: str | Path) -> tuple[list[str], np.ndarray, float]:
    """The population names, their reference maps (P, H, W) and the sigma they were made with."""
    with h5py.File(path, "r") as f:
        return list(f["population"].asstr()[:]), f["corner"][:], float(f.attrs["sigma"])


class Reference:
    """The reference maps of ``corner_reference.h5`` on a device, looked up by population."""

    def __init__(self, path: str | Path, device: torch.device):
        names, maps, self.sigma = read_reference(path)
        self.path, self.index = path, {n: i for i, n in enumerate(names)}
        self.maps = torch.from_numpy(maps).to(device)
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
