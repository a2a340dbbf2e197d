"""Frames/s of cnnpipe's per-shard scoring vs a bare forward pass of the same model(s), same run, interleaved.

cnnpipe: ``cnnpipe.score.score_shard`` on a features shard (HDF5 in the page cache): batched reads, the
VAE forward, masked worst-fraction residuals in intensity and Sobel, KL, latent means, the corner score
(structure tensor of the full-size frame from the frames shard, against a reference map), the line score
(Radon transform of the intensity), the result table. First line: the default weights (the CNN's is 0, so
it is not run) against the bare VAE forward on the same features already in memory; goal >= 0.8x. Second
line: every component, the self-supervised CNN score included (one CNN forward per allowed transform),
against the bare VAE + CNN forwards. The models are freshly initialised (weights do not change the
arithmetic).
Second line: the corner response alone (``cnnpipe.corners.shi_tomasi``, batched) vs scikit-image's
``structure_tensor`` + ``structure_tensor_eigenvalues`` frame by frame (the reference it equals). Goal: >= 1x.
"""
from __future__ import annotations

import argparse
import dataclasses

import h5py
import numpy as np
import torch

from common import best_of, interleaved, report
from train import write_shard
from cnnpipe import components
from cnnpipe.augment import apply, cnn_has_task, pretext_transforms
from cnnpipe.config import parse
from cnnpipe.corners import ReferenceMaps, shi_tomasi, write_reference
from cnnpipe.tables import read_manifest as read_csv
from cnnpipe.models import build
from cnnpipe.patches import sample_bank
from cnnpipe.score import score_shard
from cnnpipe.train import model_config


def tiles_and_reference(d, cfg, man_path, n: int, device: torch.device):
    """Beside a features shard (``write_shard``): ``n`` random ingested tiles (the frames shard), the manifest
    with the columns scoring reads, and the reference file with the corner map and the patch bank (without
    the bank patch_knn is all zeros and costs nothing). Returns (frames path, manifest, reference path)."""
    tile, s = cfg.ingest.tile_size, cfg.score
    frames = d / "frames" / "shard-0.h5"
    frames.parent.mkdir(exist_ok=True)
    with h5py.File(frames, "w") as f:
        f["frames"] = np.random.default_rng(1).random((n, tile, tile), dtype=np.float32)
        f["intensity_scale"], f["intensity_offset"] = np.ones(n, np.float32), np.zeros(n, np.float32)
    man = read_csv(man_path).assign(y0=0, x0=0, population="bench.h5:/x")
    bank = sample_bank([frames], man, s.patch_size, s.patch_stride, s.patch_bank, cfg.seed, device, pool=s.patch_pool)
    reference = d / "reference.h5"
    maps = ReferenceMaps(["bench.h5:/x"], np.ones((1, tile, tile)), np.zeros((1, 2, tile, tile)),
                         np.ones((1, tile, tile)), np.array([n]))
    write_reference(reference, maps, s.corner_sigma, (s.orientation_sigma, s.orientation_derivative_sigma),
                    (*bank, s.patch_size, s.patch_stride))
    return frames, man, reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = parse({"device": "cpu"})
    shape = (cfg.channels, cfg.feature_size, cfg.feature_size)
    x = np.random.default_rng(0).random((a.samples, *shape), dtype=np.float32)
    # the CNN has a task only on data with an orientation: time it with every symmetry off (8 pretext classes)
    transforms = pretext_transforms(parse({"augment": {"hflip": False, "vflip": False, "rot90": False}}).augment)
    torch.manual_seed(0)
    vae = build(model_config(cfg, "vae", shape)).eval()
    cnn = build(model_config(cfg, "cnn", shape, n_classes=len(transforms))).eval()
    meta = {"kind": "cnn", "mode": "self-supervised", "transforms": [[t.k, int(t.flip), t.dy, t.dx] for t in transforms]}
    xt = torch.from_numpy(x)

    @torch.no_grad()
    def bare_vae():
        for i in range(0, len(xt), a.batch):
            vae(xt[i:i + a.batch])

    @torch.no_grad()
    def bare_both():
        for i in range(0, len(xt), a.batch):
            b = xt[i:i + a.batch]
            vae(b)
            for t in transforms:
                cnn(apply(b, t))

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        feats, man_path = write_shard(Path(tmp), x)
        frames, man, reference = tiles_and_reference(Path(tmp), cfg, man_path, a.samples, torch.device("cpu"))
        def ours(comps):
            return lambda: score_shard(feats[0], frames, man, 0, vae, cnn, meta, reference, torch.device("cpu"),
                                       dataclasses.replace(cfg.score, batch_size=a.batch), comps=comps)

        # the default run (every symmetry on) trains no CNN, so `cnnpipe score` drops its component
        assert "cnn" not in components.models_needed(cfg.score.weights, cnn_has_task(cfg.augment, None))
        default = [c for c in components.per_shard(cfg.score.weights) if c.name != "cnn"]
        every = components.per_shard()
        assert len(ours(default)()) == a.samples
        t = interleaved({"default": ours(default), "vae": bare_vae, "every": ours(every), "both": bare_both}, 3)
    print(f"VAE {cfg.train.vae.channels} + CNN {cfg.train.cnn.channels} ({len(transforms)} transforms) on "
          f"{a.samples} frames {shape}, batch {a.batch}, {a.threads} threads")
    report("score shard (default) vs bare VAE", a.samples / t["default"], a.samples / t["vae"], "frames/s", 0.8)
    report("score shard (every component)", a.samples / t["every"], a.samples / t["both"], "frames/s", 0.8)

    from skimage.feature import structure_tensor, structure_tensor_eigenvalues

    sigma = cfg.score.corner_sigma
    imgs = np.random.default_rng(2).random((min(a.samples, 512), cfg.ingest.tile_size, cfg.ingest.tile_size), dtype=np.float32)
    batched = lambda: [shi_tomasi(torch.from_numpy(imgs[i:i + a.batch]), sigma)  # noqa: E731
                       for i in range(0, len(imgs), a.batch)]
    skimage = lambda: [structure_tensor_eigenvalues(structure_tensor(im, sigma, mode="nearest"))[1]  # noqa: E731
                       for im in imgs]
    report("corner response vs scikit-image", len(imgs) / best_of(batched, 3), len(imgs) / best_of(skimage, 2),
           "frames/s", 1.0)


if __name__ == "__main__":
    main()
