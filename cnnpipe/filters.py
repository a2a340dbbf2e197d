"""Image filters of the lecture, batched in PyTorch: convolution, Sobel, max pooling, Gaussian blur; and each
tile's level and noise.

All functions take ``torch.Tensor`` batches shaped (N, H, W) or (N, C, H, W), so they run on
whatever device the tensors live on.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .pixel_outliers import NOISE_SAMPLE

#: The lecture's Sobel kernels (true convolution kernels, see :func:`sobel`).
SOBEL_GX = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
SOBEL_GY = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def conv2d(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid, stride-1 2-D convolution in the deep-learning convention (cross-correlation, no kernel flip).

    ``out[i, j] = sum_{u,v} image[i+u, j+v] * kernel[u, v]``, exactly ``torch.nn.Conv2d`` and the lecture's
    worked example: the 4x4 input [[0,1,2,3],[5,6,7,8],[3,2,1,0],[1,2,3,4]] with kernel [[3,5],[2,2]]
    gives [[27,39,51],[55,59,63],[25,21,17]]. ``image`` is (N, H, W); the result is (N, H-kh+1, W-kw+1).
    """
    weight = kernel.to(image.dtype).to(image.device)[None, None]
    return F.conv2d(image[:, None], weight)[:, 0]


def sobel(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel gradients (Gx, Gy) of a (N, H, W) batch, same size as the input, edges replicated.

    Gx and Gy are the lecture's kernels applied as *true* convolutions (kernel flipped), so
    ``Gx = I(x+1) - I(x-1)`` smoothed [1, 2, 1] across: positive where brightness grows with column x
    (and Gy with row y). Unnormalised: this equals ``scipy.ndimage.sobel(img, axis=1)`` (Gx) and
    ``axis=0`` (Gy); scikit-image's ``filters.sobel`` is the same divided by 4 (and by sqrt(2) for the
    magnitude). Computed separably (each kernel is [1, 2, 1] outer [1, 0, -1]) with shifted sums, exactly
    equal to ``conv2d(image, flip(G))`` (benchmarks/preprocess.py measures its speed).
    """
    p = F.pad(image[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    rows = p[:, :-2] + p[:, 2:]            # [1, 2, 1] down the columns ...
    rows.add_(p[:, 1:-1], alpha=2.0)
    gx = rows[:, :, 2:] - rows[:, :, :-2]  # ... then the difference across: I(x+1) - I(x-1)
    cols = p[:, :, :-2] + p[:, :, 2:]      # [1, 2, 1] along the rows ...
    cols.add_(p[:, :, 1:-1], alpha=2.0)
    gy = cols[:, 2:] - cols[:, :-2]        # ... then the difference down: I(y+1) - I(y-1)
    return gx, gy


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """Magnitude ``G = sqrt(Gx^2 + Gy^2)`` of a (N, H, W) batch."""
    gx, gy = sobel(image)
    return torch.sqrt(gx * gx + gy * gy)


def sobel_magnitude_direction(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude ``G = sqrt(Gx^2 + Gy^2)`` and direction ``theta = atan2(Gy, Gx)`` (radians) of a batch."""
    gx, gy = sobel(image)
    return torch.sqrt(gx * gx + gy * gy), torch.atan2(gy, gx)


def max_pool(image: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Max pooling with a 2x2 window and stride 2, ``levels`` times (each halves H and W, odd edges dropped).

    Works on (N, H, W) or (N, C, H, W); equals ``skimage.measure.block_reduce(img, (2, 2), np.max)``
    for even sizes.
    """
    x = image
    for _ in range(levels):
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
        rows = torch.maximum(x[..., ::2, :], x[..., 1::2, :])  # max of each row pair, then of each
        x = torch.maximum(rows[..., ::2], rows[..., 1::2])      # column pair
    return x


def max_pool_by(values: torch.Tensor, key: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Pool ``values`` by taking, in each 2x2 window, the value where ``key`` is largest.

    Used for the Sobel direction: an angle cannot be max-pooled, but the angle of the strongest edge can.
    """
    v, k = values[:, None], key[:, None]
    for _ in range(levels):
        k, idx = F.max_pool2d(k, kernel_size=2, stride=2, return_indices=True)
        v = torch.gather(v.flatten(2), 2, idx.flatten(2)).view_as(k)
    return v[:, 0]


def fill_masked(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(filled, mask)``: NaN pixels of a (N, H, W) batch replaced by their frame's median (0 when the
    whole frame is NaN), so a filter's response to a masked pixel stays local. Clean batches come back
    as they are, with no copy."""
    mask = torch.isnan(frames)
    if not mask.any():
        return frames, mask
    median = torch.nanmedian(frames.flatten(1), dim=1).values.nan_to_num(0.0)[:, None, None]
    return torch.where(mask, median, frames), mask


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


def level_noise(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Median and robust noise (1.4826 x MAD) of each tile of a (N, H, W) batch, (N, 1, 1) each, from a
    regular sample of ~``NOISE_SAMPLE`` pixels (NaN left out): on every pixel the two medians cost as much
    as the VAE's forward pass."""
    f = frames.float().flatten(1)
    median = torch.nanmedian if bool(torch.isnan(f).any()) else torch.median
    sample = f[:, ::max(1, f.shape[1] // NOISE_SAMPLE)].contiguous()
    level = median(sample, dim=1, keepdim=True).values
    noise = 1.4826 * median((sample - level).abs(), dim=1, keepdim=True).values
    return level[:, :, None], noise[:, :, None]
