"""Line score: the Radon transform equals scikit-image's, a trail outscores a far brighter star, and the
background level does not matter."""
import numpy as np
import pytest
import torch

from cnnpipe.lines import difference_noise, line_strength, local_background, radon


@pytest.mark.parametrize("size", [32, 17])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32 on a CPU: the sparse product
def test_radon_equals_scikit_image(size, dtype):
    from skimage.transform import radon as sk_radon

    img = np.random.default_rng(size).random((size, size))
    img[5, 2:-2] += 2.0
    ref = sk_radon(img, np.arange(64) * 180.0 / 64, circle=False)          # (D, angles)
    batch = torch.from_numpy(np.stack([img, img[::-1].copy()])).to(dtype)
    got = radon(batch, 64).numpy()
    np.testing.assert_allclose(got[0], ref.T, atol=1e-5 if dtype == torch.float64 else 1e-4)
    np.testing.assert_allclose(got[1], sk_radon(img[::-1], np.arange(64) * 180.0 / 64, circle=False).T, atol=1e-4)


def test_a_line_sums_to_its_length():
    img = np.zeros((32, 32))
    img[10, 3:29] = 1.0                                   # 26 pixels; at 90 degrees it is one column
    assert line_strength(torch.from_numpy(img[None]))[0].item() == pytest.approx(26.0, abs=1e-4)


def test_a_trail_outscores_a_star_three_times_brighter_and_background_does_not_matter():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:32]
    sky = rng.normal(100.0, 0.05, (2, 32, 32))
    sky[0] += 3.0 * np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 1.5 ** 2))   # star: peak 3, FWHM 3.5 px
    sky[1] += 1.0 * np.exp(-0.5 * ((yy - 0.6 * xx - 8) / 0.8) ** 2)               # trail: peak 1, ~37 px long
    star, trail = line_strength(torch.from_numpy(sky)).numpy()
    assert star == pytest.approx(3.0 * np.sqrt(2 * np.pi) * 1.5, rel=0.1)   # the star summed through its centre
    assert trail > 2 * star
    shifted = line_strength(torch.from_numpy(sky + 1000.0)).numpy()
    np.testing.assert_allclose(shifted, [star, trail], rtol=1e-5)


def test_nan_pixels_count_as_background():
    img = np.zeros((1, 32, 32))
    img[0, 10, 3:29] = 1.0
    img[0, 20:26, 5:11] = np.nan                                   # a masked patch away from the line
    assert line_strength(torch.from_numpy(img))[0].item() == pytest.approx(26.0, abs=1e-4)


def _stars(rng, n_stars: int, side: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    img = rng.normal(0.0, 1.0, (side, side))
    for _ in range(n_stars):
        y, x, peak = rng.uniform(4, side - 4), rng.uniform(4, side - 4), rng.uniform(50, 300)
        img += peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.0 ** 2))       # FWHM 2.4 px
    return img


def test_clipped_in_noise_units_a_faint_trail_outscores_bright_stars():
    """A 5 sigma trail across one of twelve fields of two stars (peaks 50-300 sigma): in raw units a bright
    star wins; clipped at 5 sigma the trail's frame scores highest, by a margin."""
    rng = np.random.default_rng(7)
    fields = np.stack([_stars(rng, n_stars=2) for _ in range(12)])
    yy, xx = np.mgrid[0:32, 0:32]
    fields[5] += 5.0 * np.exp(-0.5 * ((yy - 0.5 * xx - 6) / 0.8) ** 2)     # ~36 px long
    batch = torch.from_numpy(fields).float()
    raw, clipped = line_strength(batch).numpy(), line_strength(batch, clip=5.0).numpy()
    assert raw.argmax() != 5 and raw[5] < 0.8 * raw.max()
    assert clipped.argmax() == 5 and clipped[5] > 1.5 * np.delete(clipped, 5).max()


def test_clipped_line_value_by_hand():
    """No noise at all (median absolute deviation 0): every line pixel is clipped to 5, so 26 pixels sum to
    130, and an isolated bright pixel adds at most 5."""
    img = np.zeros((1, 32, 32))
    img[0, 10, 3:29] = 1.0
    img[0, 25, 20] = 1e6
    assert line_strength(torch.from_numpy(img), clip=5.0)[0].item() == pytest.approx(130.0, abs=1e-3)


def test_against_its_parallel_lines_a_thin_line_keeps_its_sum_and_a_halo_does_not():
    """No noise, no clip. A 1-pixel line of 0.5 over 26 pixels sums to 13, and the lines 2-3 pixels away
    hold nothing, so it keeps 13. A galaxy halo (Gaussian, sigma 6 px, peak 1) sums to sqrt(2 pi) 6 = 15.04
    through its centre, more than the line; its parallel lines at 2 and 3 pixels hold exp(-d^2 / 72) of
    that, 0.946 and 0.882, so it keeps 15.04 (1 - 0.914) = 1.29."""
    yy, xx = np.mgrid[0:64, 0:64]        # wide enough that the halo's median, subtracted first, is ~0
    img = np.zeros((2, 64, 64))
    img[0, 20, 11:37] = 0.5
    img[1] = np.exp(-((yy - 31.5) ** 2 + (xx - 31.5) ** 2) / (2 * 6.0 ** 2))
    batch = torch.from_numpy(img)
    line, halo = line_strength(batch).numpy()
    assert line == pytest.approx(13.0, abs=1e-6) and halo == pytest.approx(np.sqrt(2 * np.pi) * 6, rel=0.01)
    line_bg, halo_bg = line_strength(batch, background=3).numpy()
    assert line_bg == pytest.approx(13.0, abs=1e-6)
    assert halo_bg == pytest.approx(np.sqrt(2 * np.pi) * 6 * (1 - (np.exp(-4 / 72) + np.exp(-9 / 72)) / 2), abs=0.15)
    np.testing.assert_allclose(line_strength(batch, background=1).numpy(), [line, halo])   # 1: no background


def test_against_its_parallel_lines_a_faint_trail_outscores_a_clusters_light():
    """Twelve fields of noise, each under a cluster's smooth light (10 sigma at its peak, sigma 8 px,
    somewhere near the middle), one with a 2 sigma trail. Clipped at 3 sigma, the light fills whole lines
    and the plain line sum ranks another field first; against its parallel lines the trail's frame is first;
    with each pixel's local background subtracted as well, by 2x."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    fields = np.stack([rng.normal(0.0, 1.0, (32, 32)) + 10.0 * np.exp(
        -((yy - rng.uniform(8, 24)) ** 2 + (xx - rng.uniform(8, 24)) ** 2) / (2 * 8.0 ** 2)) for _ in range(12)])
    fields[5] += 2.0 * np.exp(-0.5 * ((yy - 0.5 * xx - 6) / 0.8) ** 2)
    batch = torch.from_numpy(fields).float()
    plain, against = line_strength(batch, clip=3.0).numpy(), line_strength(batch, clip=3.0, background=3).numpy()
    assert plain[5] < np.delete(plain, 5).max()
    assert against.argmax() == 5
    local = line_strength(batch, clip=3.0, background=3, local=9).numpy()
    assert local.argmax() == 5 and local[5] > 2 * np.delete(local, 5).max()


def test_the_noise_is_measured_between_neighbours_not_about_the_median():
    """Gaussian noise of sigma 2 on a galaxy's light (peak 200, sigma 10 px): neighbouring pixels share the
    light, so their differences give the noise within 5%, while the spread of the pixels about the frame's
    median is many times it. Masked (NaN) pixels are left out."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64]
    galaxy = 200.0 * np.exp(-((yy - 30) ** 2 + (xx - 36) ** 2) / (2 * 10.0 ** 2))
    frames = np.stack([rng.normal(0, 2.0, (64, 64)), galaxy + rng.normal(0, 2.0, (64, 64))])
    frames[1, 5:20, 5:20] = np.nan
    noise = difference_noise(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(noise, [2.0, 2.0], rtol=0.05)
    spread = 1.4826 * np.nanmedian(np.abs(frames[1] - np.nanmedian(frames[1])))
    assert spread > 5 * noise[1]


def test_a_faint_trail_across_a_bright_galaxy_ranks_first_against_the_local_background():
    """Twelve fields of noise, each with a bright galaxy (peak 30 sigma, sigma 8 px) somewhere near the
    middle; one with a 2 sigma trail across it. Less the frame's median and clipped at 3, the galaxy's body
    is a plateau at the clip and the trail on it is gone: another frame ranks first. Less each pixel's local
    background (9 x 9 median), the trail stands on zero: its frame is first by 2x."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:32]
    fields = np.stack([rng.normal(0.0, 1.0, (32, 32)) + 30.0 * np.exp(
        -((yy - rng.uniform(10, 22)) ** 2 + (xx - rng.uniform(10, 22)) ** 2) / (2 * 8.0 ** 2)) for _ in range(12)])
    fields[5] += 2.0 * np.exp(-0.5 * ((yy - 0.5 * xx - 8) / 0.8) ** 2)
    batch = torch.from_numpy(fields).float()
    global_median = line_strength(batch, clip=3.0, background=3).numpy()
    assert global_median.argmax() != 5
    local = line_strength(batch, clip=3.0, background=3, local=9).numpy()
    assert local.argmax() == 5 and local[5] > 2 * np.delete(local, 5).max()


def test_local_background_is_the_median_filter_at_step_1_and_keeps_a_plane_at_step_3():
    from scipy.ndimage import median_filter

    img = np.random.default_rng(5).random((3, 20, 17)).astype(np.float32)
    got = local_background(torch.from_numpy(img), 5, 1).numpy()
    np.testing.assert_allclose(got, np.stack([median_filter(i, 5, mode="nearest") for i in img]))
    plane = (np.arange(20)[:, None] * 0.5 + np.arange(17)[None] * 2.0).astype(np.float32)
    mesh = local_background(torch.from_numpy(plane[None]), 5, 3).numpy()[0]
    # a window's median on a plane is its centre's value, and bilinear interpolation keeps a plane; only the
    # windows that reach past the edge (replicated there) differ
    np.testing.assert_allclose(mesh[3:-4, 3:-4], plane[3:-4, 3:-4], atol=1e-4)
