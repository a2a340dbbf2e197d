"""Command line: one verb per pipeline step (the Snakemake rules call these), ``cnnpipe --help`` lists them."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .config import Config, load
from .errors import UserError

log = logging.getLogger("cnnpipe")


def _cfg(args) -> Config:
    return load(args.config, args.settings)


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
    rows = ingest_shard(cfg, args.shard, args.out)
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

    p = verb("ingest", cmd_ingest, "read, normalise and tile the inputs of one shard",
             "cnnpipe ingest --config config/config.yaml --shard 0 --out results/frames/shard-0.h5 "
             "--manifest results/frames/manifest-0.csv")
    p.add_argument("--shard", type=int, required=True, help="shard number, 0..n_shards-1")
    p.add_argument("--out", required=True, help="shard HDF5 to write")
    p.add_argument("--manifest", required=True, help="this shard's manifest CSV to write")

    p = verb("manifest", cmd_manifest, "merge per-shard manifests; fail when no input was usable",
             "cnnpipe manifest results/frames/manifest-*.csv --out results/manifest.csv")
    p.add_argument("parts", nargs="+", help="per-shard manifest CSVs")
    p.add_argument("--out", required=True, help="merged manifest CSV")

    p = verb("preprocess", cmd_preprocess, "Sobel magnitude (+direction) and max pooling of one frames shard",
             "cnnpipe preprocess --config config/config.yaml --frames results/frames/shard-0.h5 "
             "--out results/features/shard-0.h5")
    p.add_argument("--frames", required=True, help="frames shard from 'ingest'")
    p.add_argument("--out", required=True, help="features shard to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:  # user mistakes are one line; anything else keeps its traceback for the log
        print(f"cnnpipe {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
