"""The whole workflow through Snakemake on tiny generated data (demo + malformed files)."""
import io
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from regions import Regions

import corpus
from cnnpipe.corners import shi_tomasi
from cnnpipe.population import population
from workflow_run import TINY, snakemake

pytestmark = pytest.mark.slow
# every tile gets a card (79 tiles): the card tests then hold whatever the ranking puts on top
RUN = {**TINY, "inputs": [*TINY["inputs"], "wcs"], "report": {"top_k": 100}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    reasons = corpus.bad(wd / "bad")
    corpus.wcs_frames(wd / "wcs")  # a rotated TAN WCS, no WCS, a broken WCS: three tiled frames
    proc = snakemake(wd, RUN)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd, reasons


def test_manifest_lists_good_and_quarantined(run):
    wd, reasons = run
    df = pd.read_csv(wd / "results/manifest.csv", dtype={"key": str})
    q = df[df.status == "quarantined"]
    for name, why in reasons.items():
        assert q.source.str.endswith("bad/" + name).any(), name
    ok = df[df.status == "ok"]
    truth = pd.read_csv(wd / "results/demo/truth.csv", dtype={"key": str})
    frames = set(zip(ok.source, ok.key, ok.frame))
    assert set(zip(truth.source, truth.key, truth.frame)) <= frames  # every injected frame was ingested
    assert len(set(zip(ok.source, ok.key, ok.frame))) == 24 + 1 + 32 + 3  # sky + the wide frame + tracks + wcs/
    assert set(ok.shard) == {0, 1}


def test_features_shards_match_frames(run):
    wd, _ = run
    total = 0
    for s in (0, 1):
        with h5py.File(wd / f"results/features/shard-{s}.h5") as f, h5py.File(wd / f"results/frames/shard-{s}.h5") as g:
            assert f["features"].shape[1:] == (2, 32, 32) and f["features"].shape[0] == g["frames"].shape[0]
            assert np.isfinite(f["features"][:]).all()
            total += f["features"].shape[0]
    df = pd.read_csv(wd / "results/manifest.csv")
    assert total == (df.status == "ok").sum()


def test_pixel_outliers_from_ingestion_reach_the_score_table(run):
    """The per-tile sharpness and coldness written at ingestion (raw pixels) are the score table's columns;
    the demo's cosmic-ray frames are the sharpest sky frames, its dead columns the coldest."""
    wd, _ = run
    results = wd / "results"
    scores = pd.concat([pd.read_parquet(p) for p in sorted((results / "scores").glob("*.parquet"))])
    for shard, g in scores.groupby("shard"):
        with h5py.File(results / "frames" / f"shard-{shard}.h5") as f:
            for stat in ("sharpness", "coldness"):
                np.testing.assert_allclose(g[stat].to_numpy(), f[stat][:][g["row"].to_numpy()], rtol=1e-6)
    truth = pd.read_csv(results / "demo/truth.csv", dtype={"key": str})
    sky = scores[~scores.key.str.startswith("/")].merge(truth, on=["source", "key", "frame"], how="left")
    for stat, kind in (("sharpness", "cosmic_rays"), ("coldness", "dead_column")):
        hit = sky.anomaly == kind
        assert hit.any() and sky[stat][hit].min() > sky[stat][~hit].max(), kind


def test_corner_reference_covers_each_population_and_the_scores_use_it(run):
    """One reference map per population, over all its frames; each tile's corner score is its largest
    ratio of Shi-Tomasi response to that map (recomputed here from the frames shard)."""
    wd, _ = run
    results = wd / "results"
    man = pd.read_csv(results / "manifest.csv", dtype={"key": str})
    ok = man[man.status == "ok"]
    with h5py.File(results / "models/corner_reference.h5") as f:
        names = [n.decode() for n in f["population"][:]]
        counts = dict(zip(names, f["frames"][:].tolist()))
        maps = dict(zip(names, f["corner"][:]))
        sigma = float(f.attrs["sigma"])
    assert counts == pd.Series(population(ok)).value_counts().to_dict()
    assert names == ["results/demo/sky", "results/demo/tracks.h5:/events", "wcs"]  # FITS folders, an HDF5 dataset
    scores = pd.read_parquet(results / "scores/shard-0.parquet")
    with h5py.File(results / "frames/shard-0.h5") as f:
        frames = f["frames"][:][scores["row"].to_numpy()]
    response = shi_tomasi(torch.from_numpy(frames), sigma).numpy()
    ref = np.stack([maps[p] for p in population(scores)])
    np.testing.assert_allclose(scores.corner.to_numpy(), (response / ref).max(axis=(1, 2)), rtol=1e-4)


def test_every_rule_has_log_and_benchmark(run):
    wd, _ = run
    assert (wd / "logs/manifest.log").read_text().count("quarantined:") >= 11
    assert sorted(p.name for p in (wd / "results/benchmarks/ingest").iterdir()) == ["shard-0.tsv", "shard-1.tsv"]


def test_config_typo_stops_before_any_job(tmp_path):
    proc = snakemake(tmp_path, {**TINY, "ingest": {"n_shard": 2}}, "-n")
    assert proc.returncode != 0
    assert "unknown key 'n_shard' (did you mean 'n_shards'?)" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_all_bad_inputs_fail_with_clear_message(tmp_path):
    corpus.bad(tmp_path / "bad")
    proc = snakemake(tmp_path, {"inputs": ["bad"], "ingest": {"n_shards": 2}})
    assert proc.returncode != 0
    assert "no usable frames in any input" in (tmp_path / "logs/manifest.log").read_text()


def test_training_rules_write_models_metrics_and_figures(run):
    """train_cnn / train_vae / generate ran: loadable models, per-epoch metrics, PNGs, logs, benchmarks."""
    from cnnpipe.checkpoint import load_model

    wd, _ = run
    for kind in ("cnn", "vae"):
        model, meta = load_model(wd / f"results/models/{kind}.pt", "cpu")
        assert meta["kind"] == kind
        m = pd.read_csv(wd / f"results/models/{kind}_metrics.csv")
        assert m["epoch"].tolist() == list(range(1, len(m) + 1)) and np.isfinite(m["train_loss"]).all()
        assert (wd / f"results/benchmarks/train_{kind}.tsv").is_file()
        assert "saved to results/models/" in (wd / f"logs/train_{kind}.log").read_text()
    assert meta["model"]["size"] == 32 and m["train_loss"].iloc[-1] < m["train_loss"].iloc[0]  # the VAE learned
    _, cnn_meta = load_model(wd / "results/models/cnn.pt", "cpu")
    # demo: no labels; TINY allows both flips but not quarter turns: identity and the quarter turn to tell apart
    assert cnn_meta["mode"] == "self-supervised" and len(cnn_meta["transforms"]) == 2
    for name in ("samples", "interpolation"):
        assert (wd / f"results/generate/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- where is it: sky, frame, labels

def _ranked(wd):
    return pd.read_csv(wd / "results/anomalies.csv", dtype={"key": str})


def test_world_coordinates_of_every_fits_tile_match_astropy(run):
    """Each tile's centre (1-based pixels) in world coordinates, as astropy.wcs computes it from the file."""
    from astropy.io import fits
    from astropy.wcs import WCS

    wd, _ = run
    a = _ranked(wd)
    fits_rows = a[~a.key.str.startswith("/")]
    checked = 0
    for (source, key), g in fits_rows.groupby(["source", "key"]):
        with fits.open(wd / source) as hdul:
            header = hdul[int(key)].header
        if source == "wcs/tan.fits" or source.startswith("results/demo/sky/"):
            ra, dec = WCS(header, naxis=2).all_pix2world(g.x_image, g.y_image, 1)
            np.testing.assert_allclose(g.x_world, ra, rtol=0, atol=1e-6)
            np.testing.assert_allclose(g.y_world, dec, rtol=0, atol=1e-6)
            assert (g.world_axes == "RA/DEC icrs").all()
            checked += len(g)
        else:                                      # nowcs.fits, broken.fits: pixel coordinates only
            assert g.x_world.isna().all() and g.y_world.isna().all() and g.x_image.notna().all()
    tan = fits_rows[fits_rows.source == "wcs/tan.fits"]
    assert sorted(set(tan.x_image)) == [32.5, 80.5, 118.5] and sorted(set(tan.y_image)) == [32.5, 68.5]
    assert checked == len(fits_rows) - 8          # all but the 4 + 4 tiles of nowcs.fits and broken.fits
    assert a[a.key.str.startswith("/")].x_world.isna().all()      # HDF5 events: no WCS
    frames = pd.read_csv(wd / "results/anomalies_by_frame.csv", dtype={"key": str}).set_index(["source", "key", "frame"])
    best = (a.assign(frame=pd.read_csv(wd / "results/manifest.csv", dtype={"key": str}).set_index(
        ["source", "key", "index"]).loc[list(zip(a.source, a.key, a["index"])), "frame"].to_numpy())
            .sort_values("rank").drop_duplicates(["source", "key", "frame"]).set_index(["source", "key", "frame"]))
    for c in ("x_image", "y_image", "x_world", "y_world"):   # a frame's coordinates: its top tile's
        np.testing.assert_allclose(frames.loc[best.index, c], best[c])


def test_region_files_box_each_top_tile_and_warn_about_a_broken_wcs(run):
    from regions import RectanglePixelRegion, RectangleSkyRegion, Regions

    wd, _ = run
    a = _ranked(wd)
    top = a[(a["rank"] <= 100) & ~a.key.str.startswith("/")]      # report.region_boxes: 100 (every FITS row here)
    files = {p.relative_to(wd / "results/regions").as_posix(): p for p in (wd / "results/regions").rglob("*.reg")}
    assert len(files) == len(top.drop_duplicates(["source", "key"])) + 1     # the demo cube holds two planes
    assert {"wcs/tan.reg", "wcs/nowcs.reg", "wcs/broken.reg", "results/demo/sky/wide.reg"} <= set(files)
    boxes = 0
    for name, path in files.items():
        regs = Regions.read(path, format="ds9")
        boxes += len(regs)
        if name.startswith("wcs/") and name != "wcs/tan.reg":
            assert all(isinstance(r, RectanglePixelRegion) for r in regs)
        else:
            assert all(isinstance(r, RectangleSkyRegion) for r in regs)
    assert boxes == len(top)                                         # one box per top tile
    tan = top[top.source == "wcs/tan.fits"].sort_values("rank")
    regs = Regions.read(files["wcs/tan.reg"], format="ds9")
    np.testing.assert_allclose([r.center.ra.deg for r in regs], tan.x_world, atol=1e-6)
    np.testing.assert_allclose([r.center.dec.deg for r in regs], tan.y_world, atol=1e-6)
    broken = top[top.source == "wcs/broken.fits"].sort_values("rank")
    regs = Regions.read(files["wcs/broken.reg"], format="ds9")
    np.testing.assert_allclose([r.center.x + 1 for r in regs], broken.x_image)   # regions: 0-based pixels
    log = "".join(p.read_text() for p in (wd / "logs/ingest").glob("*.log"))
    assert "WCS of wcs/broken.fits [0] ignored (pixel coordinates only): unusable WCS: Unrecognized projection" in log
    html = (wd / "results/report/index.html").read_text()
    assert "wcs/broken.fits" in html.split('id="wcs-problems"', 1)[1].split("</table>", 1)[0]
    assert "wcs/broken.fits [0]: unusable WCS: Unrecognized projection" in (wd / "logs/rank.log").read_text()


def test_report_shows_frames_in_context(run):
    """Cards of tiled frames show the whole frame; every frame of more than one tile gets a heat map."""
    from cnnpipe import framemap

    wd, _ = run
    html = (wd / "results/report/index.html").read_text()
    bf = pd.read_csv(wd / "results/anomalies_by_frame.csv", dtype={"key": str})
    multi = bf[bf.tiles > 1].sort_values("rank")
    assert set(multi.source) == {"results/demo/sky/wide.fits", "wcs/tan.fits", "wcs/nowcs.fits", "wcs/broken.fits"}
    assert re.findall(r'<figure class="framemap" id="f-(\d+)"', html) == [str(r) for r in multi["rank"]]
    maps = framemap.read(wd / "results/frame_maps.h5")
    tan = maps[("wcs/tan.fits", "0", 0)]
    assert tan["image"].shape == (100, 150) and tan["factor"] == 1 and np.isfinite(tan["heat"]).all()
    cards = re.findall(r'<article class="card".*?</article>', html, flags=re.S)
    tiled = [c for c in cards if "tile at (y" in c]
    assert tiled and all('<img class="frame"' in c for c in tiled)
    assert not any('<img class="frame"' in c for c in cards if "tile at (y" not in c)


def test_labels_marked_in_the_page_rerank_after_a_rerun(run, tmp_path):
    """Chromium: mark the top frame boring and a low one interesting, download labels.csv, put it where the
    workflow reads labels, rerun: only the steps downstream of the labels rerun, the frames move."""
    import shutil

    from test_report import CHROMIUM, _browser

    sync_playwright = _browser()
    src, _ = run
    wd = tmp_path / "wf"
    shutil.copytree(src, wd, symlinks=True)          # copy2 keeps the mtimes: nothing is out of date
    before = _ranked(wd)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto((wd / "results/report/index.html").resolve().as_uri())
            page.click("#a-1 button[data-mark=boring]")
            page.click("#ranked tbody tr:nth-child(30) button[data-mark=interesting]")
            with page.expect_download() as dl:
                page.click("#labels-download")
            (wd / "config").mkdir()
            dl.value.save_as(wd / "config/labels.csv")   # score.labels: config/labels.csv
        finally:
            browser.close()
    boring, interesting = before.iloc[0], before.iloc[29]
    summary = snakemake(wd, RUN, "--summary")
    assert summary.returncode == 0, summary.stderr[-3000:]
    plan = pd.read_csv(io.StringIO(summary.stdout), sep="\t")
    assert set(plan.loc[plan.plan != "no update", "rule"]) == {"rank", "regions", "frame_maps", "report"}
    proc = snakemake(wd, RUN)
    assert proc.returncode == 0, proc.stderr[-4000:]
    after = _ranked(wd).set_index(["source", "key", "index"])
    assert after.loc[(boring.source, boring.key, boring["index"]), "rank"] == len(after)          # dropped
    assert after.loc[(interesting.source, interesting.key, interesting["index"]), "rank"] == 1    # rose
    assert after.loc[(boring.source, boring.key, boring["index"]), "label"] == "boring"
    bar = (wd / "results/report/index.html").read_text().split('id="labelbar"', 1)[1]
    assert "&#34;boring&#34;" in bar and "&#34;interesting&#34;" in bar    # the new page starts from the labels


def _sky_cutouts(folder: Path, n: int, anomaly: int, seed: int = 0) -> None:
    """``n`` 32x32 FITS cutouts (noise and a few stars, a TAN WCS each) and, at ``anomaly``, a satellite
    trail across one of them."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    folder.mkdir()
    for i in range(n):
        img = rng.normal(100.0, 5.0, (32, 32))
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(4, 28, 2)
            img += rng.uniform(40, 200) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.3 ** 2))
        if i == anomaly:
            img += 60.0 * np.exp(-((yy - 0.6 * xx - 6) ** 2) / 1.0)
        header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 16.5, "CRPIX2": 16.5,
                              "CRVAL1": 150.0 + i * 0.01, "CRVAL2": 2.2, "CDELT1": -5.5e-5, "CDELT2": 5.5e-5})
        fits.PrimaryHDU(img.astype(np.float32), header=header).writeto(folder / f"cutout-{i:02d}.fits")


def test_a_folder_of_32_pixel_cutouts_ranks_the_trail_first(tmp_path):
    """32x32 FITS cutouts at the default 64-pixel tile: each is resampled to one tile (no padding: `masked`
    is 0 throughout) and the cutout with a satellite trail ranks at the top; coordinates and region boxes are
    in the cutouts' own pixels."""
    _sky_cutouts(tmp_path / "cutouts", 40, anomaly=17)
    cfg = {"inputs": ["cutouts"], "ingest": {"n_shards": 1}, "train": {"vae": {"epochs": 6}}}
    proc = snakemake(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-4000:]
    man = pd.read_csv(tmp_path / "results/manifest.csv", dtype={"key": str})
    assert (man.status == "ok").all() and len(man) == 40 and (man.scale == 2.0).all()
    ranked = pd.read_csv(tmp_path / "results/anomalies_by_frame.csv", dtype={"key": str}).sort_values("rank")
    assert "cutout-17.fits" in " ".join(ranked.source.head(3)), ranked.head(5).to_string()
    if "masked" in ranked:
        assert (ranked["masked"] == 0).all()
    assert (ranked.x_image == 16.5).all() and (ranked.y_image == 16.5).all()      # the centre of a 32x32 cutout
    (box,) = Regions.read(next((tmp_path / "results/regions").rglob("cutout-17.reg")), format="ds9")
    assert box.width.to_value("arcsec") == pytest.approx(32 * 5.5e-5 * 3600, rel=1e-3)  # 32 pixels, not 64
