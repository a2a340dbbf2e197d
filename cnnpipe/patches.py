"""Local anomaly density: every small patch of a tile against a memory bank of patches from the whole run
(PatchCore / SPADE style, on the ingested pixels), so a small defect (a trail, a hit, a kink) counts in a
tile that is otherwise normal.

A patch is centred (its mean removed) and contrast-normalised, ``p / (|p| + eps)`` with ``eps`` the median
norm of the bank's centred patches: shapes well above the noise are compared by form whatever their
brightness (a faint trail and a bright one look alike, a cosmic ray differs from every star), noise patches
shrink towards 0 and match each other. The bank is a coreset (PatchCore): a uniform sample of the run's
patches, thinned by farthest-point selection so that rare normal shapes keep a representative while the
common noise patches are not stored thousands of times; a tile's own patches never count as its neighbours
(``owner``), so an anomaly in the bank cannot match itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .shards import iter_batches, shard_number


def patch_vectors(frames: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """(N, H, W) tiles -> (N, P, size*size) centred patches (NaN as 0), P = patches per tile."""
    x = torch.nan_to_num(frames.float(), nan=0.0)[:, None]
    p = F.unfold(x, size, stride=stride).transpose(1, 2)
    return p - p.mean(dim=-1, keepdim=True)


def normalise(p: torch.Tensor, eps: float) -> torch.Tensor:
    """Contrast normalisation ``p / (|p| + eps)`` of centred patches."""
    return p / (p.norm(dim=-1, keepdim=True) + eps)


def owner_ids(shard: int, rows: np.ndarray) -> np.ndarray:
    """A tile's id across the run: shard and row in one int64."""
    return (np.int64(shard) << 32) + rows.astype(np.int64)


def coreset(x: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` rows of ``x`` chosen by greedy farthest-point selection (k-centre): each next row is
    the one farthest from all chosen so far, so every region of the sample keeps a representative,
    however few rows it has. Starts from row 0."""
    n = min(n, len(x))
    chosen = torch.zeros(n, dtype=torch.long)
    nearest = (x - x[0]).square().sum(dim=1)
    for i in range(1, n):
        chosen[i] = int(nearest.argmax())
        nearest = torch.minimum(nearest, (x - x[chosen[i]]).square().sum(dim=1))
    return chosen


def sample_bank(frames_paths: list[str | Path], manifest: pd.DataFrame, size: int, stride: int, n: int,
                seed: int, device: torch.device, pool: int = 0,
                batch: int = 256) -> tuple[np.ndarray, np.ndarray, float]:
    """The memory bank: a uniform sample of ``pool`` patches of every tile of the run (streamed shard by
    shard), thinned to ``n`` by :func:`coreset` (``pool`` <= ``n``: the uniform sample of ``n`` is the bank).
    Returns the normalised patches (M, size*size), each one's owner tile id and ``eps``."""
    ok = manifest[manifest.status == "ok"]
    rng = np.random.default_rng(seed)
    picked, filled, before = None, 0, 0  # before: tiles of the shards already read
    for path in frames_paths:
        shard = shard_number(path)
        rows = ok[ok.shard == shard].sort_values("row")["row"].to_numpy()
        start = 0
        for b in iter_batches(path, ["frames"], batch):
            p = patch_vectors(torch.from_numpy(b["frames"]).to(device), size, stride)
            per = p.shape[1]
            if picked is None:  # patches per tile are known once the first batch is cut
                picked = np.sort(rng.choice(len(ok) * per, size=min(max(n, pool), len(ok) * per), replace=False))
                # filled in place: a small tensor kept from every batch, between each batch's large
                # temporaries, fragments the heap (peak RSS grew with the run: 1.25 GB at 57,800 tiles)
                bank, own = torch.empty((len(picked), p.shape[-1])), np.empty(len(picked), np.int64)
            lo = (before + start) * per  # the batch's patches in the run-wide numbering of ``picked``
            sel = picked[(picked >= lo) & (picked < lo + len(p) * per)] - lo
            bank[filled:filled + len(sel)] = p.reshape(-1, p.shape[-1])[torch.from_numpy(sel).to(device)].cpu()
            own[filled:filled + len(sel)] = owner_ids(shard, rows[start:start + len(p)])[sel // per]
            filled += len(sel)
            start += len(p)
        before += start
    if not filled:
        return np.zeros((0, size * size), np.float32), np.zeros(0, np.int64), 1.0
    bank, own = bank[:filled], own[:filled]
    eps = float(bank.norm(dim=-1).median()) + 1e-6
    bank = normalise(bank, eps)
    if len(bank) > n:
        keep = coreset(bank, n)
        bank, own = bank[keep], own[keep.numpy()]
    return bank.numpy().astype(np.float32), own, eps


@torch.no_grad()
def patch_distance(frames: torch.Tensor, owners: torch.Tensor, bank: torch.Tensor, bank_owner: torch.Tensor,
                   eps: float, size: int, stride: int, chunk: int = 1024) -> torch.Tensor:
    """Per tile (N,): the largest distance of any of its patches to the nearest bank patch of another tile.

    Squared distances as ``|q|^2 + |b|^2 - 2 q.b`` (one matrix product); only the few bank columns owned by
    a tile of this batch are masked."""
    p = normalise(patch_vectors(frames, size, stride), eps)
    n, per, d = p.shape
    flat, own = p.reshape(-1, d), owners.repeat_interleave(per)
    mine = torch.isin(bank_owner, owners).nonzero().squeeze(1)
    bank_sq = bank.square().sum(dim=1)
    out = torch.empty(len(flat), device=flat.device)
    for a in range(0, len(flat), chunk):
        q = flat[a:a + chunk]
        d2 = torch.addmm(bank_sq[None, :], q, bank.T, alpha=-2)
        if len(mine):
            d2[:, mine] = d2[:, mine].masked_fill(own[a:a + chunk, None] == bank_owner[mine][None, :], float("inf"))
        out[a:a + chunk] = d2.amin(dim=1) + q.square().sum(dim=1)
    out = out.clamp_min(0).sqrt()
    out = torch.where(torch.isfinite(out), out, torch.zeros_like(out))  # no other tile in the bank
    return out.reshape(n, per).amax(dim=1)


class PatchBank:
    """The bank as written into the reference file (see :func:`cnnpipe.corners.write_reference`), on a device."""

    def __init__(self, f, device: torch.device):
        self.patches = torch.from_numpy(f["patch_bank"][:]).to(device)
        self.owner = torch.from_numpy(f["patch_owner"][:]).to(device)
        self.eps, self.size, self.stride = (float(f.attrs["patch_eps"]), int(f.attrs["patch_size"]),
                                            int(f.attrs["patch_stride"]))

    def distance(self, frames: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        return patch_distance(frames, owners, self.patches, self.owner, self.eps, self.size, self.stride)
