"""The diffuse score: faint extended light between the sources (optical ghosts, scattered light)."""
import numpy as np
import torch

from cnnpipe.components.batch import ShardBatch
from cnnpipe.components.features import diffuse
from cnnpipe.diffuse import background_excess, diffuse_area, largest_region, level_noise

SIGMAS, CLIP, GROW, THRESHOLD = (2.0, 8.0), 3.0, 1.0, 1.5


def star_field(rng: np.random.Generator, size: int = 64, stars: int = 25) -> np.ndarray:
    """Sky of noise 1 with Gaussian stars (PSF sigma 1.2 px) of 20-500 noise units at their peak."""
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(0.0, 1.0, (size, size)) + 100.0
    for _ in range(stars):
        cy, cx = rng.uniform(0, size, 2)
        img += rng.uniform(20, 500) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.2 ** 2))
    return img


def ring(size: int = 64, amplitude: float = 2.0, radius: float = 14.0, width: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    return amplitude * np.exp(-0.5 * ((r - radius) / width) ** 2)


def score(frames) -> np.ndarray:
    return diffuse_area(torch.as_tensor(np.asarray(frames), dtype=torch.float32), SIGMAS, CLIP, GROW, THRESHOLD)


def test_a_faint_ring_among_stars_outscores_every_star_field():
    """A ring of 2 noise units per pixel, no pixel of it above the noise of the stars' frames, is found."""
    rng = np.random.default_rng(0)
    normal = [star_field(rng) for _ in range(40)]
    ghosts = [star_field(rng) + ring() for _ in range(5)]
    s = score(normal + ghosts)
    assert s[40:].min() > s[:40].max()
    assert s[40:].min() > 100                         # most of the ring's ~260-pixel annulus


def test_band_passed_noise_is_in_its_own_units():
    """Pure noise, band-passed with no large scale: the map's spread is 1 (the 1 / (2 sqrt(pi) sigma)
    of a Gaussian average), so the threshold is in units of the noise left after smoothing."""
    x = torch.from_numpy(np.random.default_rng(1).normal(5.0, 3.0, (4, 128, 128))).float()
    band = background_excess(x, (2.0, 0.0), clip=50.0, grow=0.0)[:, 16:-16, 16:-16]
    assert abs(float(band.std()) - 1.0) < 0.1


def test_level_and_noise_are_the_median_and_scaled_mad():
    x = torch.tensor([[[0.0, 1.0], [2.0, 10.0]]])
    level, noise = level_noise(x)
    assert float(level) == 1.0                       # torch.median: the lower middle value of 0, 1, 2, 10
    assert abs(float(noise) - 1.4826 * 1.0) < 1e-5   # |x - 1| = 1, 0, 1, 9: median 1


def test_largest_region_counts_four_connected_pixels():
    m = torch.zeros(1, 6, 6)
    m[0, 0, 0:3] = 2.0          # 3 pixels in a row
    m[0, 1, 0] = 2.0            # + 1 below its first: a region of 4
    m[0, 3, 3] = m[0, 4, 4] = m[0, 5, 5] = 2.0     # a diagonal: 3 regions of 1
    assert largest_region(m, 1.5).tolist() == [4.0]
    assert largest_region(torch.zeros(2, 6, 6), 1.5).tolist() == [0.0, 0.0]


def test_a_gradient_across_the_tile_is_taken_off_by_the_band_pass():
    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 6, 64)[None, :] * np.ones((64, 1))     # 6 noise units across the tile
    frames = [star_field(rng) + ramp for _ in range(4)]
    with_band = score(frames)
    no_large = diffuse_area(torch.as_tensor(np.asarray(frames), dtype=torch.float32), (2.0, 0.0), CLIP, GROW, THRESHOLD)
    assert with_band.max() < 100 < no_large.min()


def test_masked_pixels_are_not_light_and_the_component_reads_the_raw_scale():
    rng = np.random.default_rng(3)
    x = star_field(rng) + ring()
    holed = x.copy()
    holed[:, :20] = np.nan
    s = score([x, holed])
    assert np.isfinite(s).all() and 0 < s[1] < s[0]
    # through a ShardBatch: the tiles are unstretched and times their frame's scale before the score
    b = ShardBatch(x=torch.zeros(1, 2, 64, 64), valid=torch.ones(1, 64, 64),
                   stats={"intensity_scale": np.array([7.0], np.float32)},
                   frames=torch.as_tensor(x[None] / 7.0, dtype=torch.float32))
    assert np.isclose(diffuse(b)[0], s[0], atol=2)
