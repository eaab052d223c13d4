"""End to end: ``medgen evaluate`` / ``medgen report`` write HTML pages whose figures load in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medgen.cli import app
from medgen.io import save_scan

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Appended to a copy of the page: after load, write each <img>'s decoded width into the DOM.
_PROBE = ("<script>window.addEventListener('load', () => {document.body.setAttribute('data-widths', "
          "Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1).join(','));});</script>")


def chromium() -> str:
    """Path of a Chromium. Without one the browser half of a test skips (the page was already checked
    as text), unless ``MEDGEN_REQUIRE_BROWSER=1`` (set by ``.ci/run`` after installing Chromium)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    message = "no Chromium on PATH to render the report (apt-get install -y chromium)"
    if os.environ.get("MEDGEN_REQUIRE_BROWSER") == "1":
        raise AssertionError(message + "; MEDGEN_REQUIRE_BROWSER=1 asks for a real browser")
    pytest.skip(message + "; page content checked without it, set MEDGEN_REQUIRE_BROWSER=1 to require it")


def image_widths(page: Path, tmp: Path, screenshot: Path | None = None) -> list[int]:
    """Decoded width of every image of ``page`` as Chromium renders it (0 = failed to load)."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    base = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chrome-profile'}"]
    dom = subprocess.run([*base, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=60).stdout
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", "--window-size=1200,4200", page.as_uri()],
                       capture_output=True, timeout=60)
    match = re.search(r'data-widths="([^"]*)"', dom)
    assert match, "the page did not finish loading in Chromium"
    return [int(w) for w in match.group(1).split(",") if w]


def _write(folder: Path, scans: dict[str, torch.Tensor]) -> Path:
    folder.mkdir()
    for name, scan in scans.items():
        save_scan(scan, folder / f"{name}.nii.gz")
    return folder


def test_evaluate_writes_a_report_whose_figures_all_load(tmp_path, cohort_a, cohort_b):
    real = _write(tmp_path / "real", {f"sub-{i}": s["image"] for i, s in enumerate(cohort_a[:8])})
    g = torch.Generator().manual_seed(0)
    clean = {f"sub-{i}": s["image"] for i, s in enumerate(cohort_a[:2])}
    noisy = {k: (v + 0.03 * torch.randn(v.shape, generator=g)).abs() for k, v in clean.items()}
    synthetic = {"gen-0": cohort_b[2]["image"], "gen-1": cohort_b[3]["image"], "gen-copy": cohort_a[1]["image"]}
    syn = _write(tmp_path / "synthetic", synthetic)
    inputs = _write(tmp_path / "inputs", noisy)
    enhanced = _write(tmp_path / "enhanced", {k: v * 0.5 + noisy[k] * 0.5 for k, v in clean.items()})
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", "--real", str(real), "--synthetic", str(syn), "--out", str(out),
                                      "--enhanced", str(enhanced), "--inputs", str(inputs)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["privacy"]["flagged"] == ["gen-copy"]
    assert "medgen-ssl3d" in metrics["features"]
    page = out / "index.html"
    html = page.read_text()
    assert "FID" in html and "Memorisation audit" in html and "Hallucination check" in html
    widths = image_widths(page, tmp_path, screenshot=tmp_path / "screenshot.png")
    n_png = len(list((out / "figures").glob("*.png")))
    assert len(widths) == n_png >= 5 and min(widths) > 100, widths


def test_report_of_a_run_folder_plots_its_tensorboard_curves(tmp_path, cohort_a):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    writer = SummaryWriter(log_dir=str(run / "tb"))
    for step in range(1, 40):
        writer.add_scalar("train/loss", 1.0 / step, step)
        writer.add_scalar("val/psnr", 20 + step / 4, step)
    writer.close()
    (run / "config.yaml").write_text("model:\n  family: vae\n")
    (run / "samples").mkdir()
    save_scan(cohort_a[0]["image"], run / "samples" / "sample-0.nii.gz")
    out = tmp_path / "run-report"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text()
    assert "train/loss" in html and "family: vae" in html
    widths = image_widths(out / "index.html", tmp_path)
    assert len(widths) == 2 and min(widths) > 100
