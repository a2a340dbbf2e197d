"""Filters against hand-computed values, scipy.ndimage.sobel and skimage's block_reduce."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from skimage.measure import block_reduce

from cnnpipe.filters import conv2d, max_pool, max_pool_by, sobel, sobel_magnitude_direction

LECTURE_INPUT = [[0, 1, 2, 3], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]
LECTURE_KERNEL = [[3, 5], [2, 2]]
LECTURE_OUTPUT = [[27, 39, 51], [55, 59, 63], [25, 21, 17]]


def test_lecture_worked_convolution():
    out = conv2d(torch.tensor([LECTURE_INPUT], dtype=torch.float32), torch.tensor(LECTURE_KERNEL, dtype=torch.float32))
    assert out[0].tolist() == LECTURE_OUTPUT


def test_sobel_hand_computed_on_a_vertical_step():
    # Columns 0-1 are 0, columns 2-4 are 10: a vertical edge between x=1 and x=2.
    img = torch.zeros(1, 5, 5)
    img[:, :, 2:] = 10.0
    gx, gy = sobel(img)
    # At x=1 and x=2 the window straddles the step: (1+2+1) * (10 - 0) = 40; elsewhere 0.
    expected_gx = torch.zeros(5, 5)
    expected_gx[:, 1:3] = 40.0
    assert torch.equal(gx[0], expected_gx)
    assert torch.equal(gy[0], torch.zeros(5, 5))
    mag, theta = sobel_magnitude_direction(img)
    assert torch.equal(mag[0], expected_gx)
    assert theta[0, 2, 1].item() == 0.0  # brightness grows along +x: direction 0


def test_sobel_hand_computed_diagonal_pixel():
    # A single bright pixel at (2, 2): at (1, 1) the window sees it at its bottom-right corner.
    img = torch.zeros(1, 5, 5)
    img[0, 2, 2] = 1.0
    gx, gy = sobel(img)
    # Gx(1,1) = I(x+1) - I(x-1) weighted by the kernel corner = 1; Gy(1,1) likewise 1.
    assert gx[0, 1, 1].item() == 1.0 and gy[0, 1, 1].item() == 1.0
    assert gx[0, 2, 1].item() == 2.0 and gy[0, 2, 1].item() == 0.0
    assert gx[0, 2, 3].item() == -2.0
    mag, theta = sobel_magnitude_direction(img)
    assert mag[0, 1, 1].item() == pytest.approx(np.sqrt(2.0))
    assert theta[0, 1, 1].item() == pytest.approx(np.pi / 4)
    assert theta[0, 3, 3].item() == pytest.approx(-3 * np.pi / 4)


def test_sobel_equals_scipy_unnormalised():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(3, 40, 33)).astype(np.float32)
    gx, gy = sobel(torch.from_numpy(img))
    for i in range(3):
        np.testing.assert_allclose(gx[i].numpy()[1:-1, 1:-1], ndi.sobel(img[i], axis=1)[1:-1, 1:-1], atol=1e-5)
        np.testing.assert_allclose(gy[i].numpy()[1:-1, 1:-1], ndi.sobel(img[i], axis=0)[1:-1, 1:-1], atol=1e-5)
        # replicate padding equals scipy's default 'reflect' for a 3x3 kernel, so borders agree too
        np.testing.assert_allclose(gx[i].numpy(), ndi.sobel(img[i], axis=1), atol=1e-5)


def test_max_pool_equals_block_reduce():
    rng = np.random.default_rng(2)
    img = rng.normal(size=(4, 32, 48)).astype(np.float32)
    for levels in (1, 2):
        pooled = max_pool(torch.from_numpy(img), levels).numpy()
        expected = img
        for _ in range(levels):
            expected = block_reduce(expected, (1, 2, 2), np.max)
        np.testing.assert_array_equal(pooled, expected)
    assert max_pool(torch.from_numpy(img), 1).shape == (4, 16, 24)


def test_max_pool_by_takes_value_at_strongest_key():
    key = torch.tensor([[[1.0, 5.0], [2.0, 3.0]]])
    values = torch.tensor([[[10.0, 20.0], [30.0, 40.0]]])
    assert max_pool_by(values, key, 1).item() == 20.0


def test_separable_sobel_equals_conv2d_with_flipped_lecture_kernels():
    from cnnpipe.filters import SOBEL_GX, SOBEL_GY

    img = torch.from_numpy(np.random.default_rng(3).normal(size=(2, 12, 9)).astype(np.float32))
    gx, gy = sobel(img)
    padded = torch.nn.functional.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    torch.testing.assert_close(gx, conv2d(padded, torch.flip(SOBEL_GX, (0, 1))))
    torch.testing.assert_close(gy, conv2d(padded, torch.flip(SOBEL_GY, (0, 1))))


def test_max_pool_odd_sides_drop_the_last_row_and_column_like_max_pool2d():
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(3, 2, 9, 7)).astype(np.float32))
    expected = torch.nn.functional.max_pool2d(x, 2)
    assert max_pool(x, 1).shape == (3, 2, 4, 3) and torch.equal(max_pool(x, 1), expected)
