"""Report: values in the rendered HTML from a synthetic results folder, and the page in headless Chromium."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import in_ci
from PIL import Image

from cnnpipe import components, figures, framemap, report
from cnnpipe.cli import main
from cnnpipe.config import parse

XSS = "<script>alert(1)</script>"
N, K, CAP = 30, 6, 20
CHROMIUM = "/usr/bin/chromium"


def make_results(root: Path, n: int = N, k: int = K, metrics: bool = True) -> Path:
    """A results folder holding exactly the files the report reads (the scoring -> report contract)."""
    rng = np.random.default_rng(0)
    res = root / "results"
    (res / "models").mkdir(parents=True)
    sources = [f"data/field-{i % 3}.fits" for i in range(n)]
    sources[0] = f"data/{XSS}.fits"  # a file name is input text too
    keys = [str(1 + i % 2) for i in range(n)]
    index = list(range(n))
    score = np.sort(rng.random(n))[::-1] * 5
    anomalies = pd.DataFrame({"source": sources, "key": keys, "index": index, "score": score,
                              "rank": np.arange(1, n + 1), "recon": rng.random(n), "kl": rng.random(n),
                              "latent_knn": rng.random(n), "cnn": rng.random(n),
                              "label": ["interesting"] + [""] * (n - 2) + ["boring"]})
    anomalies.loc[3, "cnn"] = np.nan
    anomalies.to_csv(res / "anomalies.csv", index=False)
    frames = anomalies.assign(frame=[i // 2 for i in index]).groupby("frame", sort=False)  # pairs as "tiles"
    by_frame = frames.agg(source=("source", "first"), key=("key", "first"), score=("score", "max"),
                          recon=("recon", "max"), cnn=("cnn", "max"), tiles=("rank", "size")).reset_index()
    by_frame = by_frame.sort_values("score", ascending=False).assign(rank=np.arange(1, n // 2 + 1))
    by_frame.to_csv(res / "anomalies_by_frame.csv", index=False)
    header = [json.dumps({"OBJECT": f"field {i}", "TELESCOP": "demo"}) for i in range(n)]
    header[0] = json.dumps({"OBJECT": XSS, "TELESCOP": "demo"})
    manifest = pd.DataFrame({"source": sources, "key": keys, "index": index, "shard": 0, "row": index,
                             "height": 64, "width": 64, "status": "ok", "reason": "", "frame": index,
                             "y0": 0, "x0": 0, "label": -1, "header": header})
    bad = {"source": "data/broken<b>.fits", "key": "", "index": 0, "shard": 0, "row": -1, "height": 0,
           "width": 0, "status": "quarantined", "reason": "not a FITS file: <img src=x onerror=alert(2)>",
           "frame": 0, "y0": 0, "x0": 0, "label": -1, "header": "{}"}
    pd.concat([manifest, pd.DataFrame([bad])]).to_csv(res / "manifest.csv", index=False)
    with h5py.File(res / "gallery.h5", "w") as f:
        inp = rng.random((k, 64, 64)).astype(np.float32)
        inp[:, :8, :8] = np.nan  # masked corner
        f["input"] = inp
        for name in ("sobel", "recon", "residual"):
            f[name] = rng.standard_normal((k, 32, 32)).astype(np.float32)
        f["corner"] = rng.random((k, 64, 64)).astype(np.float32)
        f["orientation"] = rng.random((k, 64, 64)).astype(np.float32)
        s = h5py.string_dtype("utf-8")
        f.create_dataset("source", data=sources[:k], dtype=s)
        f.create_dataset("key", data=keys[:k], dtype=s)
        f["index"] = np.arange(k)
        f["rank"] = np.arange(1, k + 1)
    pd.DataFrame({"source": sources, "key": keys, "index": index, "x": rng.standard_normal(n),
                  "y": rng.standard_normal(n), "score": score, "rank": np.arange(1, n + 1)}
                 ).to_csv(res / "latent_map.csv", index=False)
    if metrics:
        ep = np.arange(1, 6)
        pd.DataFrame({"epoch": ep, "train_loss": 1 / ep, "val_loss": 1.2 / ep, "lr": 1e-3}).to_csv(
            res / "models" / "vae_metrics.csv", index=False)
        pd.DataFrame({"epoch": ep, "train_loss": 2 / ep, "val_loss": 2.5 / ep, "accuracy": ep / 6}).to_csv(
            res / "models" / "cnn_metrics.csv", index=False)
    (res / "benchmarks" / "ingest").mkdir(parents=True)
    (res / "benchmarks" / "ingest" / "shard-0.tsv").write_text("s\th:m:s\n1.5\t0:00:01\n")
    (res / "benchmarks" / "ingest" / "shard-1.tsv").write_text("s\th:m:s\n2.0\t0:00:02\n")
    (res / "benchmarks" / "manifest.tsv").write_text("s\th:m:s\n0.25\t0:00:00\n")
    return res


def config(table_rows: int = CAP, top_k: int = K):
    return parse({"inputs": ["data"], "report": {"top_k": top_k, "table_rows": table_rows}})


def inputs(res: Path) -> report.ReportInputs:
    """The report rule's declared inputs, as made by make_results (optional ones may be deleted)."""
    return report.ReportInputs(
        anomalies=res / "anomalies.csv", manifest=res / "manifest.csv", by_frame=res / "anomalies_by_frame.csv",
        gallery=res / "gallery.h5", latent_map=res / "latent_map.csv",
        metrics={m: res / "models" / f"{m}_metrics.csv" for m in ("cnn", "vae")},
        generated={n: res / "generate" / f"{n}.png" for n in ("samples", "interpolation")},
        benchmarks=res / "benchmarks")


@pytest.fixture
def built(tmp_path):
    res = make_results(tmp_path)
    out = report.write_report(inputs(res), res / "report" / "index.html", config())
    return res, out, out.read_text()


def decode_png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(raw)))


def test_colourise_masks_nan_in_mask_colour_and_scales_grey():
    a = np.array([[0.0, 1.0], [np.nan, 0.5]])
    rgba = decode_png(figures.data_uri(figures.png_bytes(figures.colourise(a, "gray", 0.0, 1.0))))
    assert rgba.shape == (2, 2, 4)
    assert tuple(rgba[1, 0, :3]) == (0x39, 0xFF, 0x14)  # MASK_COLOUR
    assert tuple(rgba[0, 0, :3]) == (0, 0, 0) and tuple(rgba[0, 1, :3]) == (255, 255, 255)
    assert abs(int(rgba[1, 1, 0]) - 128) <= 1


def test_header_and_file_text_is_escaped(built):
    _, _, html = built
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS not in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "data/broken&lt;b&gt;.fits" in html
    # the only <script> element is ours, pinned by the CSP hash
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html


def test_self_contained_images_are_data_uris(built):
    _, _, html = built
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    # six thumbnails per card (input, Sobel, recon, residual, corner, orientation) + curves
    assert len(srcs) == 6 * K + 1
    for s in srcs:
        decode_png(s)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    thumb = decode_png(srcs[0])  # first card's input: 64x64 with the masked 8x8 corner in MASK_COLOUR
    assert thumb.shape[:2] == (64, 64)
    assert tuple(thumb[0, 0, :3]) == (0x39, 0xFF, 0x14) and tuple(thumb[20, 20, :3]) != (0x39, 0xFF, 0x14)


def test_table_rows_capped_and_in_rank_order(built):
    _, _, html = built
    body = html.split('id="ranked"', 1)[1].split("</table>", 1)[0]
    ranks = [int(r) for r in re.findall(r'<tr[^>]*>\s*<td class="num" data-v="(\d+)"', body)]
    assert ranks == list(range(1, CAP + 1))
    assert f"top {CAP} of {N}" in html
    # gallery cards in rank order with their component scores
    assert re.findall(r'<article class="card" id="a-(\d+)"', html) == [str(i) for i in range(1, K + 1)]


def test_frame_rollup_table(built):
    _, _, html = built
    body = html.split('id="by-frame"', 1)[1].split("</table>", 1)[0]
    head, rows = body.split("<tbody>", 1)
    assert re.findall(r"<button>(\w+)</button>", head) == ["rank", "score", "source", "key", "frame", "tiles",
                                                           "recon", "cnn"]  # tiles: an id, not a component
    assert rows.count("<tr") == N // 2
    assert re.findall(r'<td class="mono num">(\d+)</td>\s*<td class="num"', rows) == ["2"] * (N // 2)


def test_no_cap_when_table_rows_large(tmp_path):
    res = make_results(tmp_path)
    html = report.render(report.build_context(inputs(res), config(table_rows=1000))[0])
    body = html.split('id="ranked"', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr") == N + 1  # header + one per ranked frame
    assert "raise report.table_rows" not in html


def test_summary_runtime_versions_and_quarantine(built):
    res, _, html = built
    total, steps = report.run_time(res / "benchmarks")
    assert total == pytest.approx(3.75)
    assert dict(steps) == pytest.approx({"ingest": 3.5, "manifest": 0.25})
    assert "3.8 s" in html
    ctx, _ = report.build_context(inputs(res), config())
    assert ctx["summary"]["n_frames"] == N and ctx["summary"]["n_quarantined_files"] == 1
    assert ctx["summary"]["quarantined"][0]["reason"].startswith("not a FITS file")
    assert set(ctx["versions"]) == {"cnnpipe", "torch", "numpy", "astropy", "h5py", "snakemake"}
    assert ctx["versions"]["cnnpipe"] != "not installed"
    assert "  table_rows: 20\n" in ctx["config"]
    # component percentile of the top card: its 'recon' rank among all rows
    a = pd.read_csv(res / "anomalies.csv")
    expect = round(a["recon"].rank(pct=True).iloc[0] * 100)
    assert ctx["gallery"][0]["components"][0] == {"name": "recon", "help": components.description("recon"),
                                                  "value": report.fmt_num(a["recon"].iloc[0]), "pct": expect}
    assert ctx["gallery"][0]["label"] == "interesting"
    assert ctx["gallery"][0]["header"]["OBJECT"] == XSS  # raw in the context, escaped only by the template


def test_gallery_joins_scores_by_rank_even_with_repeated_ids(tmp_path):
    res = make_results(tmp_path)
    a = pd.read_csv(res / "anomalies.csv", dtype={"key": str})
    a.loc[1, ["source", "key", "index"]] = a.loc[0, ["source", "key", "index"]].to_numpy()  # ids collide
    a.to_csv(res / "anomalies.csv", index=False)
    with h5py.File(res / "gallery.h5", "a") as f:
        del f["source"], f["key"]
        s = h5py.string_dtype("utf-8")
        f.create_dataset("source", data=a["source"][:K].tolist(), dtype=s)
        f.create_dataset("key", data=a["key"][:K].tolist(), dtype=s)
        f["index"][1] = a["index"][1]
    cards = report.build_context(inputs(res), config())[0]["gallery"]
    assert [c["score"] for c in cards[:2]] == [report.fmt_num(a["score"][0]), report.fmt_num(a["score"][1])]
    assert cards[1]["components"][0]["value"] == report.fmt_num(a["recon"][1])


def test_metric_panels_pair_train_and_val():
    df = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "train_kl": [1.0, 0.5], "val_loss": [3.0, 2.0],
                       "val_kl": [1.0, 0.7], "lr": [1e-3, 5e-4], "note": ["a", "b"]})
    assert figures.metric_panels(df) == [("loss", ["train_loss", "val_loss"]), ("kl", ["train_kl", "val_kl"]),
                                        ("lr", ["lr"])]


def test_missing_optional_files_say_so(tmp_path):
    res = make_results(tmp_path, metrics=False)
    for p in ("gallery.h5", "latent_map.csv", "anomalies_by_frame.csv"):
        (res / p).unlink()
    shutil.rmtree(res / "benchmarks")
    out = report.write_report(inputs(res), tmp_path / "r" / "index.html", config())
    html = out.read_text()
    assert "results/models/cnn_metrics.csv is absent" in html and "results/models/vae_metrics.csv is absent" in html
    assert "No gallery" in html and "No latent map" in html and "No generated images" in html
    assert "No benchmarks found" in html
    for name in ("latent_map.png", "training_curves.png"):  # rule outputs exist even when empty
        assert (out.parent / name).read_bytes()[:4] == b"\x89PNG"


def test_generated_images_embedded(tmp_path):
    res = make_results(tmp_path)
    (res / "generate").mkdir()
    png = figures.png_bytes(np.zeros((4, 8, 3), np.uint8))
    (res / "generate" / "samples.png").write_bytes(png)
    html = report.render(report.build_context(inputs(res), config())[0])
    assert figures.data_uri(png) in html and "No generated images" not in html


def test_cli_report_writes_page_and_figures(tmp_path):
    res = make_results(tmp_path)
    out = tmp_path / "site" / "index.html"
    settings = json.dumps({"inputs": ["data"], "report": {"top_k": 3, "table_rows": 10}})
    args = ["--anomalies", res / "anomalies.csv", "--manifest", res / "manifest.csv", "--gallery", res / "gallery.h5",
            "--latent-map", res / "latent_map.csv", "--vae-metrics", res / "models" / "vae_metrics.csv"]
    assert main(["report", "--settings", settings, *map(str, args), "--out", str(out)]) == 0
    html = out.read_text()
    assert len(re.findall(r'<article class="card"', html)) == 3
    for name in ("latent_map.png", "training_curves.png"):
        assert Image.open(out.parent / name).size[0] > 200
    assert not list(out.parent.glob("*.tmp-*"))


def test_cli_report_missing_inputs_is_one_line_error(tmp_path, capsys):
    assert main(["report", "--anomalies", str(tmp_path / "anomalies.csv"), "--manifest", str(tmp_path / "m.csv"),
                 "--out", str(tmp_path / "i.html")]) == 2
    assert "anomalies.csv" in capsys.readouterr().err


# ---------------------------------------------------------------- browser

def _browser():
    """Playwright + Debian chromium; in CI a missing browser is a failure, locally a skip."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not os.path.exists(CHROMIUM):
        msg = f"playwright or {CHROMIUM} missing (apt-get install chromium; pip install playwright)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return sync_playwright


def _ranks(page) -> list[int]:
    return page.eval_on_selector_all("#ranked tbody tr:not([hidden])",
                                     "rows => rows.map(r => parseInt(r.cells[0].dataset.v))")


@pytest.mark.slow
def test_report_in_chromium(built, tmp_path):
    sync_playwright = _browser()
    res, out, _ = built
    scores = pd.read_csv(res / "anomalies.csv").set_index("rank")["score"]
    errors, dialogs = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: errors.append(f"network: {r.url}")
                    if not r.url.startswith(("file:", "data:")) else None)
            page.goto(out.resolve().as_uri())
            page.wait_for_load_state("load")

            assert _ranks(page) == list(range(1, CAP + 1))
            page.click("#ranked th[data-col=score] button")  # first click: ascending score
            asc = _ranks(page)
            assert asc == list(range(CAP, 0, -1))
            assert [scores[r] for r in asc] == sorted(scores[r] for r in asc)
            assert page.get_attribute("#ranked th[data-col=score]", "aria-sort") == "ascending"
            page.click("#ranked th[data-col=score] button")  # second: descending
            assert _ranks(page) == list(range(1, CAP + 1))

            page.fill("input[data-filter-for=ranked]", "field-1")
            visible = _ranks(page)
            assert visible and len(visible) < CAP
            src = pd.read_csv(res / "anomalies.csv").set_index("rank")["source"]
            assert all(src[r] == "data/field-1.fits" for r in visible)
            assert page.text_content("#ranked-count") == f"{len(visible)} of {CAP} rows"
            page.fill("input[data-filter-for=ranked]", "")
            assert len(_ranks(page)) == CAP

            widths = page.eval_on_selector_all(".card img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
            # input, Sobel, recon, residual, corner, orientation
            assert len(widths) == 6 * K and all(w in (64, 32) for w in widths)
            assert page.eval_on_selector("img.fig", "i => i.naturalWidth") > 200

            # the hostile header is shown as text, nothing ran
            assert XSS in page.inner_text("#a-1 dl.hdr")
            assert page.evaluate("document.querySelectorAll('script').length") == 1
            assert "onerror=alert(2)" in page.inner_text("#quarantined")

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=False)
            assert Image.open(shot).size == (1200, 900)
            if os.environ.get("CNNPIPE_UPDATE_SCREENSHOT") == "1":
                docs = Path(__file__).resolve().parents[1] / "docs"
                docs.mkdir(exist_ok=True)
                shutil.copyfile(shot, docs / "report.png")
        finally:
            browser.close()
    assert errors == []
    assert dialogs == []


# ---------------------------------------------------------------- Snakemake rule

@pytest.mark.slow
def test_report_rule_and_snakemake_report_zip(tmp_path):
    """Rule `report` runs from the contract files (upstream rules stubbed) and `--report` collects its figures."""
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    make_results(tmp_path)
    (tmp_path / "Snakefile").write_text(f"""
from cnnpipe.config import validate
configfile: "{repo}/config/config.yaml"
config = validate(config)
include: "{repo}/workflow/rules/common.smk"

rule manifest:
    output: manifest="results/manifest.csv"
    shell: "false"

rule rank:
    output: anomalies="results/anomalies.csv", by_frame="results/anomalies_by_frame.csv",
            latent_map="results/latent_map.csv", gallery="results/gallery.h5"
    shell: "false"

rule train_cnn:
    output: metrics="results/models/cnn_metrics.csv"
    shell: "false"

rule train_vae:
    output: metrics="results/models/vae_metrics.csv"
    shell: "false"

rule generate:
    output: samples="results/generate/samples.png", interpolation="results/generate/interpolation.png"
    shell: "false"

rule frame_maps:
    output: maps="results/frame_maps.h5"
    shell: "false"

include: "{repo}/workflow/rules/report.smk"
""")
    add_context(tmp_path / "results")
    (tmp_path / "results" / "generate").mkdir()
    for name in ("samples", "interpolation"):
        shutil.copyfile(repo / "docs" / "report.png", tmp_path / "results" / "generate" / f"{name}.png")
    smk = [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(tmp_path),
           "--snakefile", str(tmp_path / "Snakefile")]
    target = "results/report/index.html"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run = subprocess.run(smk + [target], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    html = (tmp_path / target).read_text()
    assert len(re.findall(r'<article class="card"', html)) == K  # all gallery rows (report.top_k defaults to 24 > K)
    assert len(re.findall(r'<figure class="framemap"', html)) == 3   # the rule passes results/frame_maps.h5
    run = subprocess.run(smk + ["--report", "report.zip", target], capture_output=True, text=True, timeout=300,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    names = {Path(n).name for n in zipfile.ZipFile(tmp_path / "report.zip").namelist()}
    assert {"report.html", "index.html", "latent_map.png", "training_curves.png"} <= names


# ---------------------------------------------------------------- where is it: sky, frame, labels

ODD = 'data/<b>"odd, name".fits'   # a label row the page does not show: quotes, a comma, markup


def add_context(res: Path) -> tuple[Path, Path]:
    """Sky columns, a frame whose WCS failed, a tiled card with its whole-frame view, frame maps of the
    two-tile frames and a labels file on top of :func:`make_results`; returns (frame maps, labels)."""
    a = pd.read_csv(res / "anomalies.csv", dtype={"key": str})
    a["x_image"], a["y_image"] = 32.5 + a["index"], 32.5
    a["x_world"] = np.where(a["index"] % 2 == 0, 150.0 + a["index"] / 1e4, np.nan)
    a["y_world"] = np.where(a["index"] % 2 == 0, 2.2, np.nan)
    a["world_axes"] = np.where(a["index"] % 2 == 0, "RA/DEC icrs", "")
    a.to_csv(res / "anomalies.csv", index=False)
    m = pd.read_csv(res / "manifest.csv", dtype={"key": str})
    m["wcs"], m["wcs_problem"] = "", ""
    m.loc[m.source == "data/field-2.fits", "wcs_problem"] = f"unusable WCS: {XSS}"
    m.loc[1, ["height", "width", "y0", "x0", "frame"]] = [128, 192, 64, 64, 0]   # card #2: a tile of a bigger frame
    m.to_csv(res / "manifest.csv", index=False)
    maps = res / "frame_maps.h5"
    bf = pd.read_csv(res / "anomalies_by_frame.csv", dtype={"key": str}).sort_values("rank").head(3)
    entries = [(m.source[1], m.key[1], 0, 128, 192)] + [(r.source, r.key, r.frame, 64, 64) for r in bf.itertuples()]
    with h5py.File(maps, "w") as f:
        s = h5py.string_dtype()
        f.create_dataset("source", data=[e[0] for e in entries], dtype=s)
        f.create_dataset("key", data=[e[1] for e in entries], dtype=s)
        f["frame"], f["height"], f["width"] = ([e[i] for e in entries] for i in (2, 3, 4))
        f["factor"] = [2, 1, 1, 1]
        for n, (_, _, _, h, w) in enumerate(entries):
            f[f"image/{n}"] = np.zeros((-(-h // f["factor"][n]), -(-w // f["factor"][n])), np.float32)
            f[f"heat/{n}"] = np.linspace(0, 1, f[f"image/{n}"].size, dtype=np.float32).reshape(f[f"image/{n}"].shape)
    labels = res.parent / "labels.csv"
    pd.DataFrame({"source": [a.source[2], ODD], "key": [a.key[2], "0"], "index": [2, 99],
                  "label": ["interesting", "boring"]}).to_csv(labels, index=False)
    return maps, labels


def with_context(res: Path, maps: Path, labels: Path) -> report.ReportInputs:
    return dataclasses.replace(inputs(res), where={"frame_maps": maps, "labels": labels})


def test_cards_show_where_the_tile_is_and_wcs_problems_warn(tmp_path):
    res = make_results(tmp_path)
    maps, labels = add_context(res)
    ctx, _ = report.build_context(with_context(res, maps, labels), config())
    cards = ctx["gallery"]
    assert cards[0]["coords"] == {"pixel": "x 32.5, y 32.5", "world": "RA/DEC icrs: 150.000000, 2.200000"}
    assert cards[1]["coords"] == {"pixel": "x 33.5, y 32.5", "world": None}      # no WCS: pixels only
    assert cards[0]["frame_view"] is None                                      # untiled: the input is the frame
    view = decode_png(cards[1]["frame_view"])                                  # 128 x 192 frame shown 1:2
    assert view.shape[:2] == (64, 96)
    red = np.all(view[..., :3] == framemap.BOX_RGB, axis=-1)
    assert red[32, 32:64].all() and red[32:64, 32].all() and not red[:32].any()  # tile (64, 64)-(127, 127)
    assert [m["rank"] for m in ctx["frame_maps"]] == [1, 2, 3] and ctx["map_ranks"] == {1, 2, 3}
    assert ctx["wcs_problems"] == [{"source": "data/field-2.fits", "key": k, "reason": f"unusable WCS: {XSS}"}
                                   for k in ("1", "2")]                        # one per HDU
    assert json.loads(ctx["labels"]) == [[cards[2]["source"], cards[2]["key"], 2, "interesting"], [ODD, "0", 99, "boring"]]
    html = report.render(ctx)
    assert XSS not in html and '<b>"odd' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html.split('id="wcs-problems"', 1)[1]
    assert '"odd, name"' not in html and "&lt;b&gt;" in html.split('id="labelbar"', 1)[1]
    assert len(re.findall(r'<figure class="framemap" id="f-(\d+)"', html)) == 3
    assert 'href="#f-1"' in html.split('id="by-frame"', 1)[1]                 # the by-frame table links its map
    assert len(re.findall(r'<img class="frame"', html)) == 1


@pytest.mark.slow
def test_labelling_in_chromium_downloads_a_labels_csv_the_workflow_reads(tmp_path):
    from cnnpipe.rank import read_labels

    sync_playwright = _browser()
    res = make_results(tmp_path)
    maps, labels = add_context(res)
    out = report.write_report(with_context(res, maps, labels), res / "report" / "index.html", config())
    a = pd.read_csv(res / "anomalies.csv", dtype={"key": str}).set_index("rank")
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(accept_downloads=True)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(out.resolve().as_uri())
            # the existing label shows on its card and its table row
            assert page.get_attribute("#a-3 button[data-mark=interesting]", "aria-pressed") == "true"
            assert page.text_content("#ranked tbody tr:nth-child(3) td[data-label-text]") == "interesting"
            assert page.text_content("#label-count") == "2" and page.text_content("#label-changed") == "0"
            page.click("#a-1 button[data-mark=boring]")
            page.click("#ranked tbody tr:nth-child(12) button[data-mark=interesting]")
            page.click("#ranked tbody tr:nth-child(3) button[data-mark=interesting]")   # a second click clears
            assert page.get_attribute("#a-3 button[data-mark=interesting]", "aria-pressed") == "false"
            assert page.text_content("#ranked tbody tr:nth-child(1) td[data-label-text]") == "boring"  # card -> row
            assert page.text_content("#label-count") == "3" and page.text_content("#label-changed") == "3"
            page.fill("input[data-filter-for=ranked]", "boring")      # the filter sees labels, not the buttons
            assert _ranks(page) == [1]
            with page.expect_download() as dl:
                page.click("#labels-download")
            assert dl.value.suggested_filename == "labels.csv"
            dl.value.save_as(tmp_path / "labels.csv")
        finally:
            browser.close()
    assert errors == []
    got = read_labels(tmp_path / "labels.csv")       # the workflow's own reader accepts it unchanged
    assert list(map(tuple, got.astype(str).to_numpy())) == [
        (ODD, "0", "99", "boring"),
        (a.source[1], a.key[1], str(a["index"][1]), "boring"),
        (a.source[12], a.key[12], str(a["index"][12]), "interesting")]


def test_a_resampled_small_frames_tile_is_boxed_in_frame_pixels():
    """A tile of a 32x48 frame resampled up by 2 (ingest.small_frames: upsample) covers 32 frame pixels."""
    from cnnpipe import report_where

    row = pd.DataFrame({"frame": [0, 0], "y0": 0, "x0": [16, 0], "height": 32, "width": [48, 32], "scale": 2.0})
    wide, square = (report_where.card_where(m, 64) for m in row.itertuples())
    assert wide == {"frame": 0, "y0": 0, "x0": 16, "height": 32, "width": 48, "side": 32, "tiled": True}
    assert square["side"] == 32 and not square["tiled"]          # one tile: the input thumbnail is the frame
    maps = {("a.fits", "0", 0): {"image": np.zeros((32, 48), np.float32), "factor": 1}}
    card = {"source": "a.fits", "key": "0", "where": wide}
    red = np.all(report_where.card_frame(maps, card, 64)[..., :3] == framemap.BOX_RGB, axis=-1)
    assert red[0, 16:48].all() and red[31, 16:48].all() and red[:, 16].all() and red[:, 47].all()
    assert not red[:, :16].any() and not red[1:31, 17:47].any()
