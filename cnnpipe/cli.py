"""Command line: one verb per pipeline step (the Snakemake rules call these), ``cnnpipe --help`` lists them."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from .diskfull import quiet_teardown
from .errors import UserError
from .verbs import (cmd_config_docs, cmd_demo_data, cmd_denoise, cmd_frame_maps, cmd_generate, cmd_ingest,
                    cmd_manifest, cmd_preprocess, cmd_rank, cmd_reference, cmd_regions, cmd_report, cmd_score,
                    cmd_train_cnn, cmd_train_vae)

log = logging.getLogger("cnnpipe")
_FAILED: list[BaseException] = []


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="YAML", help="config file (default: none; schema defaults apply)")
    p.add_argument("--settings", metavar="JSON", help="config as JSON, merged over --config (the rules use this)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnpipe",
        description="Rank FITS/HDF5 frames by how anomalous they are. The Snakemake workflow chains these "
                    "verbs; each can also be run alone.",
        epilog="Run 'cnnpipe VERB --help' for a verb's options and an example.")
    parser.add_argument("--version", action="version", version=f"cnnpipe {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, func, help: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        _add_config(p)
        p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
        return p

    _data_verbs(verb)
    _ranking_verbs(verb)
    _context_verbs(verb)
    _model_verbs(verb)
    return parser


def _data_verbs(verb) -> None:
    """Verbs that make and prepare the data: demo-data, config-docs, ingest, manifest, preprocess, reference."""
    p = verb("demo-data", cmd_demo_data, "write the embedded demo data set (sky FITS, tracks HDF5, truth.csv)",
             "cnnpipe demo-data --config config/config.yaml --out out/demo")
    p.add_argument("--out", required=True, help="output folder")

    p = verb("config-docs", cmd_config_docs, "write config/README.md (every config key, default and meaning) "
             "from the schema", "cnnpipe config-docs --out config/README.md")
    p.add_argument("--out", default="-", help="file to write (default: standard output)")

    p = verb("ingest", cmd_ingest, "read, normalise and tile the inputs of one shard",
             "cnnpipe ingest --config config/config.yaml --shard 0 --out out/frames/shard-0.h5 "
             "--manifest out/frames/manifest-0.csv")
    p.add_argument("--shard", type=int, required=True, help="shard number, 0..n_shards-1")
    p.add_argument("--out", required=True, help="shard HDF5 to write")
    p.add_argument("--manifest", required=True, help="this shard's manifest CSV to write")
    p.add_argument("--exclude", nargs="*", default=[], metavar="DIR",
                   help="folders never read as inputs: the workflow's own outputs (results, logs...)")
    p.add_argument("--keep", nargs="*", default=[], metavar="DIR",
                   help="folders inside an excluded one that are inputs after all (the demo data)")

    p = verb("manifest", cmd_manifest, "merge per-shard manifests; fail when no input was usable",
             "cnnpipe manifest out/frames/manifest-*.csv --out out/manifest.csv")
    p.add_argument("parts", nargs="+", help="per-shard manifest CSVs")
    p.add_argument("--out", required=True, help="merged manifest CSV")

    p = verb("preprocess", cmd_preprocess, "Sobel magnitude (+direction) and max pooling of one frames shard",
             "cnnpipe preprocess --config config/config.yaml --frames out/frames/shard-0.h5 "
             "--out out/features/shard-0.h5")
    p.add_argument("--frames", required=True, help="frames shard from 'ingest'")
    p.add_argument("--out", required=True, help="features shard to write")

    p = verb("reference", cmd_reference, "mean corner response per pixel of each population (for the corner score)",
             "cnnpipe reference --config config/config.yaml --manifest out/manifest.csv "
             "--out out/models/corner_reference.h5 out/frames/shard-*.h5")
    p.add_argument("frames", nargs="+", help="frames shards from 'ingest'")
    p.add_argument("--manifest", required=True, help="merged manifest CSV")
    p.add_argument("--out", required=True, help="reference HDF5 to write")


def _ranking_verbs(verb) -> None:
    """Verbs that score, rank and report."""
    p = verb("score", cmd_score, "model components (VAE reconstruction, KL, latent, corner, CNN) of one shard",
             "cnnpipe score --config config/config.yaml --shard 0 --features out/features/shard-0.h5 "
             "--frames out/frames/shard-0.h5 --reference out/models/corner_reference.h5 "
             "--manifest out/manifest.csv --vae out/models/vae.pt --cnn out/models/cnn.pt "
             "--out out/scores/shard-0.parquet")
    p.add_argument("--shard", type=int, required=True, help="shard number")
    p.add_argument("--features", required=True, help="features shard from 'preprocess'")
    p.add_argument("--frames", required=True, help="frames shard from 'ingest' (the same shard)")
    p.add_argument("--reference", required=True, help="corner reference from 'reference'")
    p.add_argument("--manifest", required=True, help="merged manifest CSV")
    p.add_argument("--vae", required=True, help="VAE checkpoint")
    p.add_argument("--cnn", help="CNN checkpoint (needed only when score.weights turns the cnn component on)")
    p.add_argument("--out", required=True, help="scores parquet to write")

    p = verb("rank", cmd_rank, "gather shard scores: latent kNN/Mahalanobis, ensemble, labels, ranked CSVs",
             "cnnpipe rank --config config/config.yaml out/scores/shard-*.parquet --labels config/labels.csv "
             "--manifest out/manifest.csv --vae out/models/vae.pt --reference out/models/corner_reference.h5 "
             "--frames out/frames/shard-*.h5 --features out/features/shard-*.h5 "
             "--anomalies out/anomalies.csv "
             "--by-frame out/anomalies_by_frame.csv --latent-map out/latent_map.csv "
             "--gallery out/gallery.h5")
    p.add_argument("scores", nargs="+", help="per-shard score parquet files")
    p.add_argument("--frames", nargs="+", required=True, help="every frames shard from 'ingest' (gallery inputs)")
    p.add_argument("--features", nargs="+", required=True,
                   help="every features shard from 'preprocess' (gallery Sobel maps and reconstructions)")
    p.add_argument("--labels", help="optional human labels CSV (source,key,index,label)")
    p.add_argument("--manifest", required=True, help="merged manifest CSV (tile positions and WCS, for coordinates)")
    p.add_argument("--vae", required=True, help="VAE checkpoint (for the gallery's reconstructions)")
    p.add_argument("--reference", required=True, help="corner reference from 'reference' (for the gallery's corner maps)")
    p.add_argument("--anomalies", required=True, help="ranked CSV to write (one row per frame or tile)")
    p.add_argument("--by-frame", required=True, help="ranked CSV with tiles rolled up to frames")
    p.add_argument("--latent-map", required=True, help="2-D latent projection CSV")
    p.add_argument("--gallery", required=True, help="HDF5 of the top-K arrays for the report")

    p = verb("report", cmd_report, "self-contained HTML report of the ranked anomalies (+ figure PNGs beside it)",
             "cnnpipe report --config config/config.yaml --anomalies out/anomalies.csv "
             "--by-frame out/anomalies_by_frame.csv --gallery out/gallery.h5 "
             "--latent-map out/latent_map.csv --manifest out/manifest.csv "
             "--cnn-metrics out/models/cnn_metrics.csv --vae-metrics out/models/vae_metrics.csv "
             "--samples out/generate/samples.png --interpolation out/generate/interpolation.png "
             "--benchmarks out/benchmarks --frame-maps out/frame_maps.h5 --labels config/labels.csv "
             "--out out/report/index.html")
    p.add_argument("--anomalies", required=True, help="ranked CSV from 'rank'")
    p.add_argument("--manifest", required=True, help="merged manifest CSV")
    for name, what in (("by-frame", "tiles rolled up to frames, from 'rank'"), ("gallery", "top-K arrays from 'rank'"),
                       ("latent-map", "2-D latent projection from 'rank'"),
                       ("cnn-metrics", "the CNN's per-epoch metrics CSV"), ("vae-metrics", "the VAE's metrics CSV"),
                       ("samples", "PNG of VAE prior samples from 'generate'"),
                       ("interpolation", "PNG of a latent interpolation from 'generate'"),
                       ("benchmarks", "folder of Snakemake benchmark TSVs (run time per step)")):
        p.add_argument(f"--{name}", help=f"{what} (optional: the page says when it is missing)")
    p.add_argument("--frame-maps", help="whole-frame views from 'frame-maps' (optional)")
    p.add_argument("--labels", help="human labels CSV (optional): shown in the page and kept in its download")
    p.add_argument("--out", required=True, help="HTML page to write")


def _context_verbs(verb) -> None:
    """Verbs that say where the anomalies are: DS9 region files, whole-frame views for the report."""
    p = verb("regions", cmd_regions, "DS9 region files of the top-ranked tiles, one per FITS frame (sky boxes "
             "where the frame has a celestial WCS, else pixel boxes)",
             "cnnpipe regions --config config/config.yaml --anomalies out/anomalies.csv "
             "--manifest out/manifest.csv --out out/regions")
    p.add_argument("--anomalies", required=True, help="ranked CSV from 'rank'")
    p.add_argument("--manifest", required=True, help="merged manifest CSV (tile positions, each frame's WCS)")
    p.add_argument("--out", required=True, help="folder to write (replaced as a whole)")

    p = verb("frame-maps", cmd_frame_maps, "the report's whole-frame views: the frames it shows, downsampled "
             "from the frames shards, with a heat map of their tile scores",
             "cnnpipe frame-maps --config config/config.yaml --anomalies out/anomalies.csv "
             "--by-frame out/anomalies_by_frame.csv --manifest out/manifest.csv "
             "--out out/frame_maps.h5 out/frames/shard-*.h5")
    p.add_argument("frames", nargs="+", help="frames shards from 'ingest'")
    p.add_argument("--anomalies", required=True, help="ranked CSV from 'rank'")
    p.add_argument("--by-frame", required=True, help="frame roll-up CSV from 'rank'")
    p.add_argument("--manifest", required=True, help="merged manifest CSV")
    p.add_argument("--out", required=True, help="HDF5 to write")


def _model_verbs(verb) -> None:
    """Verbs that train and use the models."""
    for kind, func, what in (("cnn", cmd_train_cnn, "the CNN (supervised when labels exist, else "
                              "self-supervised transform prediction)"),
                             ("vae", cmd_train_vae, "the convolutional VAE")):
        p = verb(f"train-{kind}", func, f"train {what} on the features shards (streamed; resumable)",
                 f"cnnpipe train-{kind} --config config/config.yaml --threads 2 --features "
                 f"out/features/shard-*.h5 --manifest out/manifest.csv --out out/models/{kind}.pt "
                 f"--metrics out/models/{kind}_metrics.csv")
        p.add_argument("--features", nargs="+", required=True, help="features shards from 'preprocess'")
        p.add_argument("--manifest", required=True, help="out/manifest.csv (frame ids for the val split)")
        p.add_argument("--out", required=True, help="model file to write (checkpoint per epoch: <out>.ckpt.pt)")
        p.add_argument("--metrics", required=True, help="per-epoch CSV to write (summary JSON beside it)")
        p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt.pt when it exists")

    p = verb("denoise", cmd_denoise, "write VAE reconstructions of one input's frames (FITS in -> FITS out, "
             "HDF5 -> HDF5) at feature resolution, one per tile, with provenance in the header/attributes",
             "cnnpipe denoise --config config/config.yaml --model out/models/vae.pt --features "
             "out/features/shard-*.h5 --manifest out/manifest.csv --source out/demo/tracks.h5 "
             "--out-dir out/denoise")
    p.add_argument("--model", required=True, help="VAE checkpoint from 'train-vae'")
    p.add_argument("--features", nargs="+", required=True, help="features shards holding the source's frames")
    p.add_argument("--manifest", required=True, help="out/manifest.csv")
    p.add_argument("--source", required=True, help="input file, exactly as in the manifest's 'source' column")
    p.add_argument("--out-dir", required=True, help="folder for <name>.denoised.fits / .h5")

    p = verb("generate", cmd_generate, "PNG grids of frames sampled from the VAE's latent prior and of a "
             "latent interpolation between two frames",
             "cnnpipe generate --config config/config.yaml --model out/models/vae.pt --features "
             "out/features/shard-*.h5 --manifest out/manifest.csv --samples out/generate/samples.png "
             "--interpolation out/generate/interpolation.png "
             "--between out/demo/tracks.h5:/events:0 out/demo/sky/wide.fits:0:3")
    p.add_argument("--model", required=True, help="VAE checkpoint from 'train-vae'")
    p.add_argument("--features", nargs="+", required=True, help="features shards (for the interpolation ends)")
    p.add_argument("--manifest", required=True, help="out/manifest.csv")
    p.add_argument("--samples", required=True, help="PNG grid of prior samples to write")
    p.add_argument("--interpolation", required=True, help="PNG of the latent interpolation to write")
    p.add_argument("--n", type=int, default=16, help="prior samples (default 16)")
    p.add_argument("--steps", type=int, default=8, help="interpolation steps (default 8)")
    p.add_argument("--between", nargs=2, metavar="SOURCE:KEY:INDEX",
                   help="the two frames to interpolate (default: first and last ingested frames)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    quiet_teardown()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:  # user mistakes are one line; anything else keeps its traceback for the log
        print(f"cnnpipe {args.verb}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not a bug: unwritable or missing path, full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"cnnpipe {args.verb}: error: {' '.join((exc.strerror or str(exc)).split())}{where}", file=sys.stderr)
        _FAILED.append(exc)  # its traceback holds the h5py handles of the failed write: freeing them can
        return 1             # crash HDF5 (SIGSEGV), so they stay alive until run() ends the process
    log.info("peak RSS %.0f MB", _peak_rss_mb())  # exact, unlike the benchmark files' periodic samples
    return 0


def _peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run() -> None:
    """The ``cnnpipe`` command: :func:`main`, but after an environment error (exit 1: a failed write on a
    full disk...) the process ends at once. The HDF5 library can crash while the interpreter tears down the
    handles of a file whose write failed; the temporary output is already removed and nothing else is open."""
    code = main()
    if code == 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
