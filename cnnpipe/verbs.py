"""What each ``cnnpipe`` verb does: parse the config, call the step with exactly the paths it was given."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from . import components
from .config import Config, load
from .errors import UserError

log = logging.getLogger("cnnpipe")


def _opt(path: str | None) -> Path | None:
    return Path(path) if path else None


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
    from .ingest import ingest_shard
    from .tables import write_csv

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
    from .report import ReportInputs, write_report

    cfg = _cfg(args)
    metrics = {k: Path(p) for k, p in (("cnn", args.cnn_metrics), ("vae", args.vae_metrics)) if p}
    generated = {k: Path(p) for k, p in (("samples", args.samples), ("interpolation", args.interpolation)) if p}
    where = {k: Path(p) for k, p in (("frame_maps", args.frame_maps), ("labels", args.labels)) if p}
    inputs = ReportInputs(Path(args.anomalies), Path(args.manifest), _opt(args.by_frame), _opt(args.gallery),
                          _opt(args.latent_map), metrics, generated, _opt(args.benchmarks), where)
    out = write_report(inputs, args.out, cfg)
    log.info("report %s (figures beside it)", out)


def cmd_score(args) -> None:
    from .augment import cnn_has_task, oriented
    from .checkpoint import load_model
    from .device import select
    from .score import score_shard, write_parquet
    from .tables import read_manifest

    cfg = _cfg(args)
    device = select(cfg.device, args.threads)
    comps = components.per_shard(cfg.score.weights)
    vae, _ = load_model(args.vae, device, expected=_expected(cfg, "vae"))
    cnn, cnn_meta = None, {}
    gathered = components.gathered(cfg.score.weights)
    if "cnn" not in components.models_needed(cfg.score.weights,
                                             cnn_has_task(cfg.augment, cfg.train.cnn.labels_csv)):
        comps = [c for c in comps if c.name != "cnn"]   # nothing for it to learn: no CNN was trained
    else:
        if not args.cnn:
            raise UserError("score.weights turns on a component computed from the CNN (cnn, cnn_knn): give the CNN "
                            "checkpoint with --cnn")
        cnn, cnn_meta = load_model(args.cnn, device, expected=_expected(cfg, "cnn"))
    df = score_shard(args.features, args.frames, read_manifest(args.manifest), args.shard, vae, cnn, cnn_meta,
                     args.reference, device, cfg.score, comps=comps,
                     with_moments=any("moments" in c.needs for c in gathered),
                     with_cnn_features=cnn is not None and any("cnn" in c.needs for c in gathered),
                     layout_side=cfg.score.layout_side
                     if oriented(cfg.augment) and any("layout" in c.needs for c in gathered) else 0,
                     stretch=cfg.ingest.normalise)
    write_parquet(df, args.out)
    log.info("scored %d frames of shard %d -> %s", len(df), args.shard, args.out)


def cmd_reference(args) -> None:
    from .corners import reference_maps, write_reference
    from .patches import sample_bank
    from .device import select
    from .tables import read_manifest

    cfg = _cfg(args)
    device = select(cfg.device, args.threads)
    a = cfg.augment
    manifest = read_manifest(args.manifest)
    s = cfg.score
    sigmas = (s.orientation_sigma, s.orientation_derivative_sigma)
    maps = reference_maps(args.frames, manifest, s.corner_sigma, dict(hflip=a.hflip, vflip=a.vflip, rot90=a.rot90),
                          device, orientation_sigmas=sigmas, stretch=cfg.ingest.normalise)
    bank = sample_bank(args.frames, manifest, s.patch_size, s.patch_stride, s.patch_bank, cfg.seed, device,
                       pool=s.patch_pool)
    write_reference(args.out, maps, s.corner_sigma, sigmas, (*bank, s.patch_size, s.patch_stride))
    log.info("corner reference of %d populations (%d frames) -> %s", len(maps.names), maps.counts.sum(), args.out)


def cmd_rank(args) -> None:
    from .checkpoint import load_model
    from .device import select
    from .gallery import gallery
    from .rank import rank_scores, read_labels, write_rank_outputs
    from .score import read_scores
    from .sky import add_coordinates
    from .tables import read_frames

    cfg = _cfg(args)
    labels = read_labels(args.labels)
    ranked, z = rank_scores(cfg, read_scores(args.scores), labels)
    frames = read_frames(args.manifest)
    for r in frames[frames.wcs_problem != ""].drop_duplicates(["source", "key"]).itertuples():
        log.warning("%s [%s]: %s; its tiles get pixel coordinates only", r.source, r.key, r.wcs_problem)
    ranked = add_coordinates(ranked, frames, cfg.ingest.tile_size)
    write_rank_outputs(ranked, z, args.anomalies, args.by_frame, args.latent_map)
    device = select(cfg.device, args.threads)
    vae, _ = load_model(args.vae, device, expected=_expected(cfg, "vae"))
    gallery(ranked, args.frames, args.features, vae, args.reference, device, cfg.report.top_k, args.gallery,
            cfg.ingest.normalise)
    log.info("ranked %d frames (%d human labels) -> %s", len(ranked), len(labels), args.anomalies)
    for r in ranked.head(5).itertuples():
        log.info("  #%d  score %.3f  %s [%s] %s", r.rank, r.score, r.source, r.key, r.index)


def cmd_regions(args) -> None:
    from .regionfile import write_regions
    from .tables import read_frames, read_table, read_tiles

    cfg = _cfg(args)
    top = read_table(args.anomalies).nsmallest(cfg.report.region_boxes, "rank")
    ids = ["source", "key", "index"]
    top = top.merge(read_tiles(args.manifest, [*ids, "frame", "y0", "x0"], top[ids]), on=ids)
    n = write_regions(top, read_frames(args.manifest), cfg.ingest.tile_size, args.out)
    log.info("DS9 regions of the top %d rows: %d frames -> %s", cfg.report.region_boxes, n, args.out)


def cmd_frame_maps(args) -> None:
    from .framemap import FRAME, build, frames_to_show
    from .shards import shard_number
    from .tables import read_table, read_tiles

    cfg = _cfg(args)
    ranked = read_table(args.anomalies)
    ids = ["source", "key", "index"]
    top = read_tiles(args.manifest, [*ids, "frame"], ranked.nsmallest(cfg.report.top_k, "rank")[ids])
    show = frames_to_show(top, read_table(args.by_frame), cfg.report.frame_maps)
    tiles = read_tiles(args.manifest, [*ids, "frame", "shard", "row", "y0", "x0", "height", "width", "scale"], show)
    frames = show.merge(tiles[[*FRAME, "height", "width", "scale"]].drop_duplicates(FRAME), on=FRAME)
    scores = ranked[ids].assign(value=ranked["score"].rank(pct=True))  # heat: the tile's score percentile
    n = build({shard_number(p): p for p in args.frames}, tiles, scores, frames, cfg.ingest.tile_size,
              cfg.report.frame_pixels, args.out)
    log.info("whole-frame views of %d frames -> %s", n, args.out)


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
    paths = generate(args.model, args.features, args.manifest, args.samples, args.interpolation,
                     select(cfg.device, args.threads),
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
