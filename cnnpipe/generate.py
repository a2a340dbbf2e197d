"""``cnnpipe generate``: frames sampled from the VAE's latent prior, and a walk between two frames.

Samples: z ~ N(0, I) (seeded), decoded. Interpolation: the posterior means of two frames, mixed linearly
in ``steps`` stages and decoded; the two input frames are shown at the ends. Both are PNG grids of the
intensity channel (matplotlib), used by the report.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .checkpoint import load_vae  # noqa: E402
from .denoise import read_frames  # noqa: E402
from .errors import UserError  # noqa: E402
from .tables import read_manifest  # noqa: E402


def parse_frame_id(text: str) -> tuple[str, str, int]:
    """``SOURCE:KEY:INDEX`` -> (source, key, index); the source may itself contain ':'."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
        raise UserError(f"frame id {text!r} is not SOURCE:KEY:INDEX (as in manifest.csv)")
    return parts[0], parts[1], int(parts[2])


def pick_rows(manifest: str | Path, ids: list[tuple[str, str, int]] | None) -> pd.DataFrame:
    """Manifest rows of the two frames to interpolate; default: the first and last ingested frames."""
    df = read_manifest(manifest)
    ok = df[df["status"] == "ok"]
    if ids is None:
        if len(ok) < 2:
            raise UserError(f"{manifest} has fewer than two ingested frames to interpolate between")
        return ok.iloc[[0, -1]]
    rows = []
    for s, k, i in ids:
        hit = ok[(ok["source"] == s) & (ok["key"] == k) & (ok["index"] == i)]
        if hit.empty:
            raise UserError(f"frame {s}:{k}:{i} is not an ingested row of {manifest}")
        rows.append(hit.iloc[0])
    return pd.DataFrame(rows)


def _grid(images: np.ndarray, cols: int, titles: list[str] | None, path: Path, suptitle: str) -> None:
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(img, cmap="gray", interpolation="nearest")
        if titles:
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


@torch.no_grad()
def generate(model_path: str | Path, features: list[str], manifest: str | Path, samples_png: str | Path,
             interpolation_png: str | Path, device: torch.device, n: int = 16, steps: int = 8, seed: int = 0,
             between: list[tuple[str, str, int]] | None = None) -> tuple[Path, Path]:
    """Write ``samples_png`` (``n`` prior samples) and ``interpolation_png`` (a latent walk)."""
    model, _ = load_vae(model_path, device)
    latent = model.mu.out_features
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, latent, generator=g).to(device)
    samples = model.decode(z)[:, 0].float().cpu().numpy()
    s_path, i_path = Path(samples_png), Path(interpolation_png)
    _grid(samples, int(np.ceil(np.sqrt(n))), None, s_path, f"{n} frames decoded from z ~ N(0, I)")

    rows = pick_rows(manifest, between)
    x, _ = read_frames(features, rows)
    mu, _ = model.encode(torch.from_numpy(x).to(device))
    w = torch.linspace(0, 1, steps, device=device)[:, None]
    walk = model.decode((1 - w) * mu[0] + w * mu[1])[:, 0].float().cpu().numpy()
    images = np.concatenate([x[:1, 0], walk, x[1:, 0]])
    titles = ["input A"] + [f"{t:.2f}" for t in w[:, 0].tolist()] + ["input B"]
    a, b = (f"{Path(r.source).name}:{r.key}:{r.index}" for r in rows.itertuples())
    _grid(images, len(images), titles, i_path, f"latent interpolation A={a} -> B={b}")
    return s_path, i_path
