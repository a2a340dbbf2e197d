"""The shipped demo, from raw inputs to report with `snakemake --cores 2`: injected anomalies rank on top,
the report works in a real browser, and human labels re-rank without retraining."""
import os
import re

import pandas as pd
import pytest
import yaml
from sklearn.metrics import average_precision_score, roc_auc_score

from workflow_run import REPO, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    wd = tmp_path_factory.mktemp("demo")
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    proc = snakemake(wd, cfg)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd, cfg


def _scored_truth(wd):
    frames = pd.read_csv(wd / "results/anomalies_by_frame.csv", dtype={"key": str})
    truth = pd.read_csv(wd / "results/demo/truth.csv", dtype={"key": str})
    m = frames.merge(truth, on=["source", "key", "frame"], how="left")
    return m, m.anomaly.notna()


#: The demo's artefact types: each must rank within the top 2 x (number injected), as the issue asks.
TYPES = {"satellite_trail", "cosmic_rays", "dead_column", "nan_patch", "straight_cosmic", "displaced_vertex", "kink"}


def test_injected_anomalies_rank_on_top(demo):
    wd, _ = demo
    m, y = _scored_truth(wd)
    n = int(y.sum())
    auroc, ap = roc_auc_score(y, m.score), average_precision_score(y, m.score)
    worst = m[y].groupby("anomaly")["rank"].max().to_dict()
    print(f"\ndemo: {len(m)} frames, {n} injected; AUROC {auroc:.3f}, average precision {ap:.3f}; "
          f"worst rank per type (top 2x = {2 * n}): {worst}")
    assert n >= 10 and set(worst) == TYPES
    assert {t: r for t, r in worst.items() if r > 2 * n} == {}
    assert auroc >= 0.97 and ap >= 0.85   # shipped demo: 0.999 and 0.979; seeds 1 and 2: >= 0.99 and >= 0.90


def test_outputs_follow_the_contract(demo):
    wd, _ = demo
    a = pd.read_csv(wd / "results/anomalies.csv", dtype={"key": str})
    assert list(a.columns[:5]) == ["source", "key", "index", "score", "rank"]
    assert a["rank"].tolist() == list(range(1, len(a) + 1)) and a.score.is_monotonic_decreasing
    assert not a.duplicated(["source", "key", "index"]).any()
    manifest = pd.read_csv(wd / "results/manifest.csv")
    assert len(a) == (manifest.status == "ok").sum()  # every good frame (tile) is ranked, once
    html = (wd / "results/report/index.html").read_text()
    assert "http://" not in html and "https://" not in html.replace("https://json-schema.org", "")
    top = a.iloc[0]
    assert top.source in html


def test_real_report_in_chromium(demo):
    from test_report import CHROMIUM, _browser

    sync_playwright = _browser()
    wd, _ = demo
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking", "--no-first-run", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((wd / "results/report/index.html").as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all(".card img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
            assert len(widths) >= 4 and all(w > 0 for w in widths)
            first = page.eval_on_selector("#ranked tbody tr", "r => parseInt(r.cells[0].dataset.v)")
            page.click("#ranked th[data-col=score] button")
            assert page.eval_on_selector("#ranked tbody tr", "r => parseInt(r.cells[0].dataset.v)") != first
            if os.environ.get("CNNPIPE_UPDATE_SCREENSHOT") == "1":
                page.click("#ranked th[data-col=score] button")
                page.screenshot(path=str(REPO / "docs/report.png"))
        finally:
            browser.close()
    assert errors == []


def test_labels_rerank_without_retraining(demo):
    wd, cfg = demo
    a = pd.read_csv(wd / "results/anomalies.csv", dtype={"key": str})
    top = a.iloc[0]
    (wd / "config").mkdir(exist_ok=True)
    # the default score.labels is config/labels.csv, relative to the working directory
    (wd / "config/labels.csv").write_text(f"source,key,index,label\n{top.source},{top.key},{top['index']},boring\n")
    dry = snakemake(wd, cfg, "-n")
    jobs = set(re.findall(r"^rule (\w+):", dry.stdout, flags=re.M))
    # ranking and what is drawn from it rerun; nothing is ingested or trained again
    assert jobs == {"rank", "regions", "frame_maps", "report", "all"}, dry.stdout[-2000:]
    proc = snakemake(wd, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    b = pd.read_csv(wd / "results/anomalies.csv", dtype={"key": str})
    moved = b[(b.source == top.source) & (b.key == top.key) & (b["index"] == top["index"])].iloc[0]
    assert moved["label"] == "boring" and moved["rank"] > len(b) // 2
    assert b.iloc[0].source != top.source or b.iloc[0]["index"] != top["index"]
