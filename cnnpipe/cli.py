"""Command line: one verb per pipeline step (the Snakemake rules call these), ``cnnpipe --help`` lists them."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .config import Config, load
from .diskfull import quiet_teardown
from .errors import UserError

log = logging.getLogger("cnnpipe")
_FAILED: list[BaseException] = []


def _cfg(args) -> Config:
    return load(args.config, args.settings)


def _expected(cfg: Config, kind: str) -> dict:
    """The model config a checkpoint must match for ``cfg`` (a mismatch is refused with one line)."""
    from .checkpoint import expected_config

    return expected_config(cfg, kind)


def cmd_demo_data(args) -> None:
    from .demo import make_demo

    cfg = _cfg(args)
    d = cfg.demo
    truth = make_demo(args.out, d.sky_frames, d.track_frames, d.anomaly_fraction, d.size, cfg.seed)
    log.info("demo data in %s: %d injected anomalies listed in %s", args.out, len(truth),
             Path(args.out) / "truth.csv")


def cmd_ingest(args) -> None:
    from .ingest import ingest_shard, write_csv

    cfg = _cfg(args)
    if not 0 <= args.shard < cfg.ingest.n_shards:
        raise UserError(f"--shard {args.shard} is outside 0..{cfg.ingest.n_shards - 1}")
    rows = ingest_shard(cfg, args.shard, args.out, tuple(args.exclude), tuple(args.keep))
    write_csv(rows, args.manifest)
    ok = rows["status"] == "ok"
    log.info("shard %d: %d frames ingested, %d quarantined -> %s", args.shard, ok.sum(), (~ok).sum(), args.out)


def cmd_manifest(args) -> None:
    from .ingest import merge_manifests

    try:
        df = merge_manifests(args.parts, args.out)
    except ValueError as exc:
        raise UserError(f"{exc}. Check the 'inputs' entries in config/config.yaml.") from exc
    q = df[df["status"] == "quarantined"]
    log.info("manifest %s: %d frames ok, %d quarantined", args.out, (df["status"] == "ok").sum(), len(q))
    for source, reason in zip(q["source"], q["reason"]):
        log.warning("quarantined: %s: %s", source, reason)


def cmd_preprocess(args) -> None:
    from .device import select
    from .preprocess import preprocess_shard

    cfg = _cfg(args)
    n = preprocess_shard(cfg, args.frames, args.out, select(cfg.device, args.threads))
    log.info("preprocessed %d frames -> %s", n, args.out)


def cmd_report(args) -> None:
    from .report import write_report

    cfg = _cfg(args)
    out = write_report(args.results, args.out, cfg.raw, cfg.report.top_k, cfg.report.table_rows)
    log.info("report %s (figures beside it)", out)


def cmd_score(args) -> None:
    from .checkpoint import load_model
    from .device import select
    from .ingest import read_csv
    from .score import score_shard, write_parquet

    cfg = _cfg(args)
    device = select(cfg.device, args.threads)
    vae, _ = load_model(args.vae, device, expected=_expected(cfg, "vae"))
    cnn, cnn_meta = load_model(args.cnn, device, expected=_expected(cfg, "cnn"))
    df = score_shard(args.features, args.frames, read_csv(args.manifest), args.shard, vae, cnn, cnn_meta,
                     args.reference, device, cfg.score.top_fraction, cfg.score.line_angles)
    write_parquet(df, args.out)
    log.info("scored %d frames of shard %d -> %s", len(df), args.shard, args.out)


def cmd_reference(args) -> None:
    from .corners import reference_maps, write_reference
    from .device import select
    from .ingest import read_csv

    cfg = _cfg(args)
    device = select(cfg.device, args.threads)
    a = cfg.augment
    names, maps, counts = reference_maps(args.frames, read_csv(args.manifest), cfg.score.corner_sigma,
                                         dict(hflip=a.hflip, vflip=a.vflip, rot90=a.rot90), device)
    write_reference(args.out, names, maps, counts, cfg.score.corner_sigma)
    log.info("corner reference of %d populations (%d frames) -> %s", len(names), counts.sum(), args.out)


def cmd_rank(args) -> None:
    from .checkpoint import load_model
    from .device import select
    from .labels import read_labels
    from .score import gallery, rank_scores, read_scores, write_rank_outputs

    cfg = _cfg(args)
    labels = read_labels(args.labels)
    ranked, z = rank_scores(cfg, read_scores(args.scores), labels)
    write_rank_outputs(ranked, z, args.anomalies, args.by_frame, args.latent_map)
    device = select(cfg.device, args.threads)
    vae, _ = load_model(args.vae, device, expected=_expected(cfg, "vae"))
    gallery(ranked, Path(args.results), vae, args.reference, device, cfg.report.top_k, args.gallery)
    log.info("ranked %d frames (%d human labels) -> %s", len(ranked), len(labels), args.anomalies)
    for r in ranked.head(5).itertuples():
        log.info("  #%d  score %.3f  %s [%s] %s", r.rank, r.score, r.source, r.key, r.index)


def _train(args, kind: str) -> None:
    from .train import train

    cfg = _cfg(args)
    train(cfg, kind, args.features, args.manifest, args.out, args.metrics, resume=args.resume,
          threads=args.threads)


def cmd_train_cnn(args) -> None:
    _train(args, "cnn")


def cmd_train_vae(args) -> None:
    _train(args, "vae")


def cmd_denoise(args) -> None:
    from .denoise import denoise
    from .device import select

    cfg = _cfg(args)
    out = denoise(args.model, args.features, args.manifest, args.source, args.out_dir,
                  select(cfg.device, args.threads))
    log.info("reconstructions of %s -> %s", args.source, out)


def cmd_generate(args) -> None:
    from .device import select
    from .generate import generate, parse_frame_id

    cfg = _cfg(args)
    between = [parse_frame_id(t) for t in args.between] if args.between else None
    paths = generate(args.model, args.features, args.manifest, args.out_dir, select(cfg.device, args.threads),
                     n=args.n, steps=args.steps, seed=cfg.seed, between=between)
    log.info("wrote %s", " and ".join(map(str, paths)))


def cmd_config_docs(args) -> None:
    from .atomic import atomic_path
    from .configdocs import schema_markdown

    text = schema_markdown()
    if args.out in (None, "-"):
        sys.stdout.write(text)
        return
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(text)
    log.info("config documentation -> %s", args.out)


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

    p = verb("demo-data", cmd_demo_data, "write the embedded demo data set (sky FITS, tracks HDF5, truth.csv)",
             "cnnpipe demo-data --config config/config.yaml --out results/demo")
    p.add_argument("--out", required=True, help="output folder")

    p = verb("config-docs", cmd_config_docs, "write config/README.md (every config key, default and meaning) "
             "from the schema", "cnnpipe config-docs --out config/README.md")
    p.add_argument("--out", default="-", help="file to write (default: standard output)")

    p = verb("ingest", cmd_ingest, "read, normalise and tile the inputs of one shard",
             "cnnpipe ingest --config config/config.yaml --shard 0 --out results/frames/shard-0.h5 "
             "--manifest results/frames/manifest-0.csv")
    p.add_argument("--shard", type=int, required=True, help="shard number, 0..n_shards-1")
    p.add_argument("--out", required=True, help="shard HDF5 to write")
    p.add_argument("--manifest", required=True, help="this shard's manifest CSV to write")
    p.add_argument("--exclude", nargs="*", default=[], metavar="DIR",
                   help="folders never read as inputs: the workflow's own outputs (results, logs...)")
    p.add_argument("--keep", nargs="*", default=[], metavar="DIR",
                   help="folders inside an excluded one that are inputs after all (the demo data)")

    p = verb("manifest", cmd_manifest, "merge per-shard manifests; fail when no input was usable",
             "cnnpipe manifest results/frames/manifest-*.csv --out results/manifest.csv")
    p.add_argument("parts", nargs="+", help="per-shard manifest CSVs")
    p.add_argument("--out", required=True, help="merged manifest CSV")

    p = verb("preprocess", cmd_preprocess, "Sobel magnitude (+direction) and max pooling of one frames shard",
             "cnnpipe preprocess --config config/config.yaml --frames results/frames/shard-0.h5 "
             "--out results/features/shard-0.h5")
    p.add_argument("--frames", required=True, help="frames shard from 'ingest'")
    p.add_argument("--out", required=True, help="features shard to write")

    p = verb("reference", cmd_reference, "mean corner response per pixel of each population (for the corner score)",
             "cnnpipe reference --config config/config.yaml --manifest results/manifest.csv "
             "--out results/models/corner_reference.h5 results/frames/shard-*.h5")
    p.add_argument("frames", nargs="+", help="frames shards from 'ingest'")
    p.add_argument("--manifest", required=True, help="merged manifest CSV")
    p.add_argument("--out", required=True, help="reference HDF5 to write")

    p = verb("score", cmd_score, "model components (VAE reconstruction, KL, latent, corner, CNN) of one shard",
             "cnnpipe score --config config/config.yaml --shard 0 --features results/features/shard-0.h5 "
             "--frames results/frames/shard-0.h5 --reference results/models/corner_reference.h5 "
             "--manifest results/manifest.csv --vae results/models/vae.pt --cnn results/models/cnn.pt "
             "--out results/scores/shard-0.parquet")
    p.add_argument("--shard", type=int, required=True, help="shard number")
    p.add_argument("--features", required=True, help="features shard from 'preprocess'")
    p.add_argument("--frames", required=True, help="frames shard from 'ingest' (the same shard)")
    p.add_argument("--reference", required=True, help="corner reference from 'reference'")
    p.add_argument("--manifest", required=True, help="merged manifest CSV")
    p.add_argument("--vae", required=True, help="VAE checkpoint")
    p.add_argument("--cnn", required=True, help="CNN checkpoint")
    p.add_argument("--out", required=True, help="scores parquet to write")

    p = verb("rank", cmd_rank, "gather shard scores: latent kNN/Mahalanobis, ensemble, labels, ranked CSVs",
             "cnnpipe rank --config config/config.yaml results/scores/shard-*.parquet --labels config/labels.csv "
             "--vae results/models/vae.pt --reference results/models/corner_reference.h5 --results results "
             "--anomalies results/anomalies.csv "
             "--by-frame results/anomalies_by_frame.csv --latent-map results/latent_map.csv "
             "--gallery results/gallery.h5")
    p.add_argument("scores", nargs="+", help="per-shard score parquet files")
    p.add_argument("--labels", help="optional human labels CSV (source,key,index,label)")
    p.add_argument("--vae", required=True, help="VAE checkpoint (for the gallery's reconstructions)")
    p.add_argument("--reference", required=True, help="corner reference from 'reference' (for the gallery's corner maps)")
    p.add_argument("--results", default="results", help="results folder holding frames/ and features/ shards")
    p.add_argument("--anomalies", required=True, help="ranked CSV to write (one row per frame or tile)")
    p.add_argument("--by-frame", required=True, help="ranked CSV with tiles rolled up to frames")
    p.add_argument("--latent-map", required=True, help="2-D latent projection CSV")
    p.add_argument("--gallery", required=True, help="HDF5 of the top-K arrays for the report")

    p = verb("report", cmd_report, "self-contained HTML report of the ranked anomalies (+ figure PNGs beside it)",
             "cnnpipe report --config config/config.yaml --results results --out results/report/index.html")
    p.add_argument("--results", default="results", help="folder with anomalies.csv, manifest.csv, gallery.h5...")
    p.add_argument("--out", default="results/report/index.html", help="HTML page to write")

    for kind, func, what in (("cnn", cmd_train_cnn, "the CNN (supervised when labels exist, else "
                              "self-supervised transform prediction)"),
                             ("vae", cmd_train_vae, "the convolutional VAE")):
        p = verb(f"train-{kind}", func, f"train {what} on the features shards (streamed; resumable)",
                 f"cnnpipe train-{kind} --config config/config.yaml --threads 2 --features "
                 f"results/features/shard-*.h5 --manifest results/manifest.csv --out results/models/{kind}.pt "
                 f"--metrics results/models/{kind}_metrics.csv")
        p.add_argument("--features", nargs="+", required=True, help="features shards from 'preprocess'")
        p.add_argument("--manifest", required=True, help="results/manifest.csv (frame ids for the val split)")
        p.add_argument("--out", required=True, help="model file to write (checkpoint per epoch: <out>.ckpt.pt)")
        p.add_argument("--metrics", required=True, help="per-epoch CSV to write (summary JSON beside it)")
        p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt.pt when it exists")

    p = verb("denoise", cmd_denoise, "write VAE reconstructions of one input's frames (FITS in -> FITS out, "
             "HDF5 -> HDF5) at feature resolution, one per tile, with provenance in the header/attributes",
             "cnnpipe denoise --config config/config.yaml --model results/models/vae.pt --features "
             "results/features/shard-*.h5 --manifest results/manifest.csv --source results/demo/tracks.h5 "
             "--out-dir results/denoise")
    p.add_argument("--model", required=True, help="VAE checkpoint from 'train-vae'")
    p.add_argument("--features", nargs="+", required=True, help="features shards holding the source's frames")
    p.add_argument("--manifest", required=True, help="results/manifest.csv")
    p.add_argument("--source", required=True, help="input file, exactly as in the manifest's 'source' column")
    p.add_argument("--out-dir", required=True, help="folder for <name>.denoised.fits / .h5")

    p = verb("generate", cmd_generate, "PNG grids of frames sampled from the VAE's latent prior and of a "
             "latent interpolation between two frames",
             "cnnpipe generate --config config/config.yaml --model results/models/vae.pt --features "
             "results/features/shard-*.h5 --manifest results/manifest.csv --out-dir results/generate "
             "--between results/demo/tracks.h5:/events:0 results/demo/sky/wide.fits:0:3")
    p.add_argument("--model", required=True, help="VAE checkpoint from 'train-vae'")
    p.add_argument("--features", nargs="+", required=True, help="features shards (for the interpolation ends)")
    p.add_argument("--manifest", required=True, help="results/manifest.csv")
    p.add_argument("--out-dir", required=True, help="folder for samples.png and interpolation.png")
    p.add_argument("--n", type=int, default=16, help="prior samples (default 16)")
    p.add_argument("--steps", type=int, default=8, help="interpolation steps (default 8)")
    p.add_argument("--between", nargs=2, metavar="SOURCE:KEY:INDEX",
                   help="the two frames to interpolate (default: first and last ingested frames)")
    return parser


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
