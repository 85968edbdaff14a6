"""The report as a reader sees it: every table written, and the page opened in headless Chromium
(Debian's, installed by scripts/setup.sh) with every figure drawn and no console errors."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from selfsup.report.page import make_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def open_in_chromium(page: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console messages that are errors."""
    return open_in_chromium_url(page.resolve().as_uri())


def open_in_chromium_url(url: str, budget_ms: int = 15000) -> tuple[str, list[str]]:
    """The DOM of ``url`` after its scripts ran (``budget_ms`` of virtual time), and the console errors."""
    r = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"Uncaught|Error|:ERROR:", line)]
    return r.stdout, errors


def _results(tmp_path: Path) -> Path:
    """A study with two variants, three methods, four protocols and two seeds: rotation pretrained on
    each variant, SimCLR and MoCo on -C-- and finetuned on both."""
    rows = []
    for variant, shift in (("-C--", 0.0), ("TC--", -0.15)):
        for seed in (0, 1):
            for n, base in ((50, 0.3), (100, 0.45), (250, 0.6), (1000, 0.8)):
                noise = 0.01 * seed
                for method, gain in (("scratch", 0.0), ("rotation", 0.12), ("simclr", 0.08), ("moco", 0.05)):
                    protos = ["finetune"] if method == "scratch" else ["finetune", "frozen-2", "linear", "knn-cosine"]
                    for p, lose in zip(protos, (0.0, 0.03, 0.1, 0.12)):
                        rows.append(
                            {
                                "method": method,
                                "task": "classification",
                                "protocol": p,
                                "label_budget": n,
                                "seed": seed,
                                "metric": "accuracy",
                                "finetune_variant": variant,
                                # rotation pretrains on each variant; SimCLR and MoCo on -C-- only (transfer)
                                "pretrain_variant": {"scratch": "", "rotation": variant}.get(method, "-C--"),
                                "backbone": "resnet9",
                                "width": 0.125,
                                "value": min(
                                    0.99,
                                    base
                                    + shift
                                    + gain * (1 - n / 2000)
                                    - lose * (method != "scratch")
                                    + noise * (1 if method == "moco" else -1),
                                ),
                            }
                        )
    folder = tmp_path / "res"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    _extras(folder)
    return folder


def _extras(folder: Path) -> None:
    """What finetune and readout leave beside results.csv: prediction records and a factor read-out."""
    rng = np.random.default_rng(0)
    preds = folder / "ft" / "predictions"
    preds.mkdir(parents=True)
    for method in ("scratch", "rotation"):
        for n in (50, 1000):
            common = dict(method=method, protocol="finetune", finetune_variant="-C--", label_budget=n, seed=0)
            np.savez(
                preds / f"seg-{method}-n{n}.npz",
                task="segmentation",
                pretrain_variant="" if method == "scratch" else "-C--",
                images=rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8),
                truth=rng.integers(0, 11, (2, 4, 4)),
                pred=rng.integers(0, 11, (2, 4, 4)),
                **common,
            )
            np.savez(
                preds / f"cls-{method}-n{n}.npz",
                task="classification",
                pretrain_variant="" if method == "scratch" else "-C--",
                confusion=rng.integers(0, 9, (10, 10)),
                **common,
            )
    rows = [
        {
            "method": m,
            "factor": f,
            "kind": k,
            "metric": metric,
            "value": v,
            "chance": c,
            "status": "ok",
            "variant": "-C--",
            "backbone": "resnet9",
            "n_test": 100,
        }
        for m in ("scratch", "rotation")
        for f, k, metric, v, c in (("class", "classify", "accuracy", 0.4, 0.1), ("hue", "regress", "r2", 0.7, 0.0))
    ]
    rows.append({**rows[0], "factor": "light", "status": "constant", "value": np.nan})
    (folder / "ro").mkdir()
    pd.DataFrame(rows).to_csv(folder / "ro" / "readout.csv", index=False)


def test_every_analysis_table_is_written(tmp_path):
    make_report([_results(tmp_path)], tmp_path / "rep", n_boot=20)
    rep = tmp_path / "rep"
    agree = pd.read_csv(rep / "protocol_agreement.csv")
    assert set(agree.methods) == {3} and agree.kendall_tau.between(-1, 1).all()
    effects = pd.read_csv(rep / "factor_effects.csv")
    assert set(effects.factor) == {"T"} and (effects.variant_on == "TC--").all()
    assert set(effects.method) == {"rotation"}  # in-domain pretraining only: no factor pair across pretraining sets
    assert set(pd.read_csv(rep / "frozen_blocks.csv").frozen_blocks) == {0, 2}
    table1 = pd.read_csv(rep / "linear_probe_table.csv")
    assert len(table1) == 2 * 3 and set(table1.label_budget) == {1000}
    assert set(pd.read_csv(rep / "transfer.csv").finetune_variant) == {"-C--", "TC--"}
    util = pd.read_csv(rep / "utility.csv")
    assert set(util.finetune_variant) == {"-C--", "TC--"}  # each variant against its own scratch curve
    readout = pd.read_csv(rep / "readout.csv")
    assert set(readout.factor) == {"class", "hue"}  # the constant factor is left out
    assert dict(zip(readout.factor, readout.above_chance.round(6))) == {"class": 0.3, "hue": 0.7}


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: run scripts/setup.sh")
def test_report_opens_in_headless_chromium_with_every_figure_drawn(tmp_path):
    make_report([_results(tmp_path)], tmp_path / "rep", n_boot=20)
    page = tmp_path / "rep" / "index.html"
    source = page.read_text()
    figure_ids = re.findall(r'<div id="([^"]+)" class="plotly-graph-div"', source)
    assert len(figure_ids) >= 5 and "cdn" not in source.lower()
    dom, errors = open_in_chromium(page)
    assert errors == []
    for fid in figure_ids:  # plotly replaced each empty div by a drawn plot with its SVG layers
        drawn = re.search(rf'<div id="{re.escape(fid)}" class="plotly-graph-div js-plotly-plot"', dom)
        assert drawn, f"figure {fid} was not drawn"
    assert dom.count('class="main-svg"') >= len(figure_ids)
    assert "Findings" in dom and "Kendall" in dom
    for title in ("target and predicted class per cell", "confusion matrices", "What the frozen features keep"):
        assert title in dom, title  # the gallery, the confusion matrices and the read-out were drawn


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: run scripts/setup.sh")
def test_the_browser_check_catches_a_broken_page(tmp_path):
    make_report([_results(tmp_path)], tmp_path / "rep", n_boot=5)
    (tmp_path / "rep" / "plotly.min.js").write_text("this is not javascript(")
    dom, errors = open_in_chromium(tmp_path / "rep" / "index.html")
    assert errors and "js-plotly-plot" not in dom


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: run scripts/setup.sh")
def test_figures_export_to_png_and_svg(tmp_path):
    make_report([_results(tmp_path)], tmp_path / "rep", n_boot=5, export=("png", "svg"))
    figs = tmp_path / "rep" / "figures"
    pngs, svgs = sorted(figs.glob("*.png")), sorted(figs.glob("*.svg"))
    assert len(pngs) == len(svgs) >= 5 and {p.stem for p in pngs} == {p.stem for p in svgs}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert all(b"<svg" in p.read_bytes()[:2000] for p in svgs)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: run scripts/setup.sh")
def test_the_first_screen_states_the_answer_from_the_data(tmp_path):
    """A 5-seed study over six budgets where pretraining halves the labels (U = 1): the page opens
    on the generated answer (with the saving, its interval and the detectable U), then the utility
    figure with its greyed ends and detectable band, before anything else."""
    from selfsup.analyse.power import simulated_study

    rng = np.random.default_rng(3)
    budgets = [30, 60, 120, 250, 500, 1000]
    scratch, pre = simulated_study(rng, 5, 1.0, budgets, 0.02)
    rows = [
        {**r, "method": m, "task": "classification", "protocol": "finetune", "metric": "accuracy"}
        for m, df in (("scratch", scratch), ("rotation", pre))
        for r in df.to_dict("records")
    ]
    (tmp_path / "res").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "res" / "results.csv", index=False)
    make_report([tmp_path / "res"], tmp_path / "rep", n_boot=200)
    dom, errors = open_in_chromium(tmp_path / "rep" / "index.html")
    assert errors == []
    body = dom[dom.index("<h1>") :]
    first = re.search(r'<div id="answer">.*?</div>', body, re.S)
    assert first and body.index('<div id="answer">') < body.index("<h2>What was run</h2>")
    text = re.sub(r"<[^>]+>", " ", first.group(0))
    assert re.search(r"rotation saves labels at \d+: U = \+\d\.\d\d \[\+\d\.\d\d, \+\d\.\d\d\]", text), text
    assert "80 % power" in text
    after = body[first.end() :]
    assert after.index('id="classification-utility"') < after.index("<h2>What was run</h2>")
    power = pd.read_csv(tmp_path / "rep" / "power.csv")
    assert power.label_budget.tolist() == budgets and (power.power_u1.iloc[1:5] > 0.5).all()
