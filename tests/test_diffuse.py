"""The diffuse score: faint extended light between the sources (optical ghosts, scattered light)."""
import numpy as np
import torch

from cnnpipe.components.batch import ShardBatch
from cnnpipe.components.features import diffuse
from cnnpipe.config import Normalise
from cnnpipe.diffuse import background_excess, band_noise, diffuse_area, largest_region
from cnnpipe.filters import level_noise
from cnnpipe.normalise import apply_scales, frame_scales

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
    """A ring of 2 noise units per pixel, far fainter than the stars, is found; unmasked, the stars'
    wings would outscore it."""
    rng = np.random.default_rng(0)
    normal = [star_field(rng) for _ in range(40)]
    ghosts = [star_field(rng) + ring() for _ in range(5)]
    s = score(normal + ghosts)
    assert s[40:].min() > s[:40].max()
    assert s[40:].min() > 100                         # most of the ring's ~260-pixel annulus


def test_band_passed_noise_is_in_its_own_units():
    """Pure noise, band-passed: the map's spread is 1, so the threshold is in units of the noise left after
    the band-pass (a Gaussian average over 2 px keeps 1 / (2 sqrt(pi) 2) of it; less one over 8 px, 0.91 of that)."""
    x = torch.from_numpy(np.random.default_rng(1).normal(5.0, 3.0, (4, 128, 128))).float()
    assert np.isclose(band_noise(2.0, 0.0), 1 / (4 * np.sqrt(np.pi)))
    assert np.isclose(band_noise(2.0, 8.0) / band_noise(2.0, 0.0), 0.909, atol=0.001)
    for sigmas in ((2.0, 0.0), (2.0, 8.0)):
        band = background_excess(x, sigmas, clip=50.0, grow=0.0)[:, 32:-32, 32:-32]
        assert abs(float(band.std()) - 1.0) < 0.05, sigmas


def test_masked_pixels_neither_shrink_the_noise_nor_count_as_light():
    """The noise is measured on the unmasked pixels: a third or two thirds of a pure-noise tile masked, the
    rest is still in units of 1 and scores like a clean tile, not higher."""
    rng = np.random.default_rng(4)
    clean = rng.normal(0.0, 1.0, (8, 64, 64))
    holed = clean.copy()
    holed[:4, :, :21] = np.nan
    holed[4:, :, :42] = np.nan
    band = background_excess(torch.from_numpy(holed).float(), (2.0, 0.0), clip=50.0, grow=0.0)
    kept = band[:, 8:-8][torch.from_numpy(~np.isnan(holed[:, 8:-8]))]
    kept = kept[kept != 0]                                   # 0: windows mostly masked
    assert abs(float(kept.std()) - 1.0) < 0.1
    assert score(holed).max() <= score(clean).max() + 10


def test_dead_columns_are_masked_not_light():
    """A column 100 noise units below the sky is masked like a star: its Gaussian averages would otherwise
    leave strong side lobes on both sides."""
    rng = np.random.default_rng(5)
    sky = rng.normal(100.0, 1.0, (6, 64, 64))
    dead = sky.copy()
    dead[:, :, 30] = 0.0
    assert score(dead).max() <= score(sky).max() + 10 < 100


def test_level_and_noise_are_the_median_and_scaled_mad():
    x = torch.tensor([[[0.0, 1.0], [2.0, 10.0]]])
    level, noise = level_noise(x)
    assert float(level) == 1.0                       # torch.median: the lower middle value of 0, 1, 2, 10
    assert abs(float(noise) - 1.4826 * 1.0) < 1e-5   # |x - 1| = 1, 0, 1, 9: median 1


def test_largest_region_counts_four_connected_pixels():
    m = torch.zeros(1, 8, 8)
    m[0, 0, 0:3] = 2.0          # 3 pixels in a row
    m[0, 1, 0] = 2.0            # + 1 below its first: a region of 4
    for i in range(3, 8):
        m[0, i, i] = 2.0        # a diagonal of 5: 5 regions of 1 (8-connected it would be the largest)
    assert largest_region(m, 1.5).tolist() == [4.0]
    assert largest_region(torch.zeros(2, 6, 6), 1.5).tolist() == [0.0, 0.0]
    pair = torch.zeros(3, 6, 6)
    pair[0, 2, 1:4] = pair[1, 2, 1:4] = 2.0     # the same region in two tiles: not one region across them
    assert largest_region(pair, 1.5).tolist() == [3.0, 3.0, 0.0]


def test_a_gradient_across_the_tile_is_taken_off_by_the_band_pass():
    rng = np.random.default_rng(2)
    ramp = np.linspace(0, 6, 64)[None, :] * np.ones((64, 1))     # 6 noise units across the tile
    frames = [star_field(rng) + ramp for _ in range(4)]
    with_band = score(frames)
    no_large = diffuse_area(torch.as_tensor(np.asarray(frames), dtype=torch.float32), (2.0, 0.0), CLIP, GROW, THRESHOLD)
    assert with_band.max() < 100 < no_large.min()


def test_the_component_gives_the_score_of_the_raw_frames_from_the_stored_tiles():
    """Ingestion stores asinh-stretched tiles and each frame's scale; through a ShardBatch the component
    scores them as the raw frames score (the stretch undone, the settings' defaults)."""
    rng = np.random.default_rng(3)
    raw = np.stack([star_field(rng) + ring() for _ in range(3)] + [star_field(rng) for _ in range(3)])
    offset, scale, _ = frame_scales(raw.astype(np.float32), "asinh", (0.5, 99.5))
    tiles = apply_scales(raw.astype(np.float32), offset, scale, "asinh", 0.1)
    b = ShardBatch(x=torch.zeros(6, 2, 64, 64), valid=torch.ones(6, 64, 64), stats={"intensity_scale": scale},
                   frames=torch.from_numpy(tiles), stretch=Normalise("asinh", [0.5, 99.5], 0.1))
    on_raw = score(raw)
    assert np.allclose(diffuse(b), on_raw, atol=3)
    assert on_raw[:3].min() > on_raw[3:].max()
