"""The score components: one table that scoring, the config schema's defaults, the config docs and the
report all read.

A row names a component, says what it measures, gives its default ensemble weight, what it is computed
from (``needs``: "vae", "cnn", "reference" (the corner reference), "frames" (the ingested tiles) or
"latents" (every ranked frame's latent, i.e. computed when the shards are gathered), "moments" (every
ranked tile's whole-tile statistics, gathered too), "layout" (every ranked tile's thumbnail, gathered only
where the data have an orientation), "unaligned" (dropped at rank where layout_knn is used); a gathered
component that needs "cnn" is computed from
every ranked tile's CNN features) and the function that
computes it, as ``"module:function"`` so that reading the table imports no model code. Adding a component
is one module with its function and one row here. A ``two_sided`` component is unusual both below and
above its population's median (a frame's level): the ensemble measures its distance from the median.

A per-shard function takes a :class:`cnnpipe.components.batch.ShardBatch` and returns one value per tile;
a gathered one takes a :class:`cnnpipe.components.batch.LatentSpace`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

MODEL_NEEDS = ("vae", "cnn")


@dataclass(frozen=True)
class Component:
    name: str
    description: str
    weight: float                 # default ensemble weight (the schema's default)
    needs: tuple[str, ...]        # what it is computed from (see the module docstring)
    function: str                 # "module:function"
    two_sided: bool = False       # unusual on either side of its population's median (else: the high side)

    @property
    def gathered(self) -> bool:
        """Computed over all shards at once (latent-space density) instead of per shard."""
        return "latents" in self.needs

    @property
    def needs_reference(self) -> bool:
        """Computed against a reference fitted on the whole data set (the corner reference)."""
        return "reference" in self.needs

    def compute(self) -> Callable:
        module, _, attr = self.function.partition(":")
        return getattr(importlib.import_module(module), attr)


REGISTRY: list[Component] = [
    Component("recon", "VAE reconstruction error of the intensity: mean of the worst few percent of pixels, "
              "each over its usual error (masked pixels ignored)", 0.0, ("vae",), "cnnpipe.components.vae:recon"),
    Component("recon_sobel", "VAE reconstruction error of the Sobel magnitude", 1.0, ("vae",),
              "cnnpipe.components.vae:recon_sobel"),
    Component("kl", "KL divergence of the latent posterior from the prior", 0.0, ("vae",),
              "cnnpipe.components.vae:kl"),
    Component("masked", "fraction of masked pixels (NaN; padding with ingest.small_frames: pad)", 1.0, (),
              "cnnpipe.components.features:masked"),
    Component("sobel_peak", "the strongest Sobel edge (off by default: beside sharpness, line and orientation "
              "it only added noise, on every dev family; README)", 0.0, (),
              "cnnpipe.components.features:sobel_peak"),
    Component("sharpness", "brightest pixel above the median of its 8 neighbours, in units of the noise plus "
              "ingest.sharpness_relative of its own signal (cosmic-ray hits; a star's core, spread by the PSF, "
              "stays low however bright)", 1.0, (), "cnnpipe.components.features:sharpness"),
    Component("coldness", "darkest pixel below the frame's median level, in noise units (dead pixels, bad "
              "columns)", 1.0, (), "cnnpipe.components.features:coldness"),
    Component("occupancy", "fraction of the tile's pixels above its median by more than "
              "score.occupancy_sigma noise units: how much signal the frame holds (a pile-up, a shower, a crowded "
              "field); used only where layout_knn is not (the frames are not aligned): an aligned frame's "
              "thumbnail already holds its amount of signal", 1.0, ("frames", "unaligned"),
              "cnnpipe.components.features:occupancy"),
    Component("diffuse", "largest area of faint light between the sources, band-passed and in noise units "
              "(score.diffuse_*: optical ghosts, scattered light, fringing; cnnpipe/diffuse.py), on the frame's "
              "raw intensity scale; used only where layout_knn is not", 0.5, ("frames", "unaligned"),
              "cnnpipe.components.features:diffuse"),
    Component("background", "the tile's median level on its frame's raw scale (the input file's units): a "
              "frame from another camera, gain or exposure, or a flat or dark frame, is unusual on either side of "
              "its population's levels; used only where layout_knn is not", 0.5, ("frames", "unaligned"),
              "cnnpipe.components.features:background", two_sided=True),
    Component("noise", "the tile's robust noise (1.4826 x MAD) on its frame's raw scale: another camera's read "
              "noise or gain, another exposure's photon noise, on either side of its population's; used only "
              "where layout_knn is not", 0.5, ("frames", "unaligned"), "cnnpipe.components.features:noise",
              two_sided=True),
    Component("corner", "strongest corner against the usual corner strength at that pixel in the population "
              "(kinked tracks, displaced vertices)", 1.0, ("frames", "reference"),
              "cnnpipe.components.shape:corner"),
    Component("orientation", "strongest edge running across the usual direction of the edges at that pixel in "
              "the population, over the usual misfit there, on the frame's raw intensity scale (tracks that "
              "do not point back to the vertex: decays in flight, kinks, delta rays; cnnpipe/orientation.py)", 0.75,
              ("frames", "reference"), "cnnpipe.components.shape:orientation"),
    Component("line", "brightest thin straight line across the frame, less each pixel's local background "
              "(score.line_local), in units of the pixel noise clipped at score.line_clip, less what the "
              "parallel lines score.line_background pixels away hold (the Radon "
              "transform's maximum: satellite trails, straight cosmic rays)", 1.0, (),
              "cnnpipe.components.shape:line"),
    Component("patch_knn", "the most unusual small patch of the tile: distance of its contrast-normalised "
              "pixels to the nearest patch of any other tile in a sample of the run's patches (a local defect "
              "in an otherwise normal frame)", 1.0, ("frames", "reference"), "cnnpipe.components.shape:patch_knn"),
    Component("cnn", "CNN score: how badly the CNN recognises which orientation change the data is not "
              "invariant under was applied (self-supervised; trained only when augment leaves one, e.g. rot90 "
              "off) or how unsure it is of the class (supervised)", 1.0, ("cnn",), "cnnpipe.components.cnn:cnn"),
    Component("cnn_knn", "distance to the k-th nearest other ranked tile in the CNN's feature space (its "
              "penultimate layer, unit length; learned on the orientations the data is not invariant under, or on "
              "the labels): a frame unlike the others in what the CNN learned to tell apart (a 9 among 0-8 with "
              "rotations off); computed only where a CNN is trained", 1.0,
              ("latents", "cnn"),
              "cnnpipe.components.latent:cnn_knn"),
    Component("layout_knn", "distance to the k-th nearest other tile in their thumbnails (the intensity, with "
              "the asinh stretch undone, averaged down to score.layout_side pixels a side): a frame laid out "
              "unlike the others (a 9 among 0-8, a frame from another field or instrument); computed only where "
              "the data have an orientation "
              "(augment leaves one off) and the frames share a layout (score.layout_alignment): in sky or "
              "detector frames, where objects sit anywhere, every layout is new. Weight 8: the pixel "
              "statistics see nothing in aligned digit-like data (dev figures in README)", 8.0,
              ("latents", "layout"),
              "cnnpipe.components.latent:layout_knn"),
    Component("latent_knn", "latent distance to the k-th nearest other ranked frame (over the active "
              "dimensions, score.latent_active). Weight 0: with the encoder's latent space live on every run, it "
              "cost every dev set of benchmarks/suite but 6-vs-9 (README)", 0.0, ("latents",),
              "cnnpipe.components.latent:latent_knn"),
    Component("moments_knn", "distance to the k-th nearest other tile in whole-tile statistics (brightness "
              "distribution, bright fraction, edge content; robustly scaled): a frame unusual as a whole (a "
              "pile-up, a flat field, another instrument)", 0.0, ("latents", "moments"),
              "cnnpipe.components.latent:moments_knn"),
    Component("mahalanobis", "Mahalanobis distance to the distribution of all ranked frames' latents", 0.0,
              ("latents",), "cnnpipe.components.latent:mahalanobis"),
]


def departure(name: str, values: np.ndarray) -> np.ndarray:
    """How unusual each value of component ``name`` is, higher = stranger: the values themselves, or for a
    ``two_sided`` component their distance from the median of ``values`` (NaN left out)."""
    v = np.asarray(values, np.float64)
    two_sided = any(c.two_sided for c in REGISTRY if c.name == name)
    return np.abs(v - np.nanmedian(v)) if two_sided and np.isfinite(v).any() else v


def names() -> list[str]:
    """Every component's name, in the table's (column) order."""
    return [c.name for c in REGISTRY]


def default_weights() -> dict[str, float]:
    return {c.name: c.weight for c in REGISTRY}


def description(name: str) -> str:
    """What component ``name`` measures ("component score" for a column no row describes)."""
    return next((c.description for c in REGISTRY if c.name == name), "component score")


def per_shard(weights: dict[str, float] | None = None) -> list[Component]:
    """The components computed per shard: all of them, or those ``weights`` (score.weights) turns on."""
    return [c for c in active(weights) if not c.gathered]


def gathered(weights: dict[str, float] | None = None) -> list[Component]:
    """The components computed when the shards are gathered: all of them, or those ``weights`` turns on."""
    return [c for c in active(weights) if c.gathered]


def active(weights: dict[str, float] | None = None) -> list[Component]:
    """The components that are computed: those with a weight above 0 (all of them when ``weights`` is None).
    A component at weight 0 could not change the score, so it is not computed and has no column."""
    return list(REGISTRY) if weights is None else [c for c in REGISTRY if weights.get(c.name, 0) > 0]


def models_needed(weights: dict[str, float], cnn_task: bool = True) -> set[str]:
    """The models a run trains: the VAE always (its latents place every frame: latent map, labels, gallery),
    the CNN only when an active component is computed from it and it has something to learn (``cnn_task``:
    labels, or an orientation the data is not invariant under; see :func:`cnnpipe.augment.cnn_has_task`)."""
    needed = {"vae"} | {n for c in active(weights) for n in c.needs if n in MODEL_NEEDS}
    return needed if cnn_task else needed - {"cnn"}
