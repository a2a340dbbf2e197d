"""Frames/s of cnnpipe's batched Sobel + 2x2 max pooling vs scikit-image on the same frames, same run.

Baseline: ``skimage.filters.sobel`` (magnitude) + ``skimage.measure.block_reduce(..., np.max)`` per frame,
the way one would write it by hand with the field's reference library. Goal: >= 5x.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from skimage.filters import sobel as sk_sobel
from skimage.measure import block_reduce

from common import best_of, report
from cnnpipe.preprocess import features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=512)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    frames = np.random.default_rng(0).random((a.frames, a.size, a.size), dtype=np.float32)
    batch = torch.from_numpy(frames)

    def ours():
        for i in range(0, len(batch), 256):
            features(batch[i:i + 256], pool_levels=1)

    def skimage():
        for f in frames:
            block_reduce(f, (2, 2), np.max)
            block_reduce(sk_sobel(f), (2, 2), np.max)

    report(f"preprocess Sobel+pool {a.size}px", a.frames / best_of(ours), a.frames / best_of(skimage), "frames/s", 5)


if __name__ == "__main__":
    main()
