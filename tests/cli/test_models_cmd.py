"""``medgen models``: the shipped models with their files, sizes and card metrics; one model's card by name."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medgen.cli import app
from medgen.models.hub import shipped_models

runner = CliRunner()


def test_models_json_lists_every_shipped_model_with_its_folder_and_size_on_disk():
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = {row["name"]: row for row in json.loads(res.stdout)}
    assert set(rows) == set(shipped_models())
    for name, row in rows.items():
        folder = Path(row["path"])
        assert (folder / "model.safetensors").is_file() and (folder / "model_card.md").is_file(), name
        assert row["size_bytes"] == sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        assert abs(row["size_mb"] - row["size_bytes"] / 1e6) < 1e-3 and row["metrics"], name
    assert rows["ct-lesions"]["grid"] == [64, 64, 48] and rows["ct-lesions"]["spacing"] == [6.0, 6.0, 6.0]
    assert rows["superres2d"]["factors"] == [2, 3, 4, 5, 6] and rows["features_ssl3d"]["grid"] == [48, 48, 48]


def test_models_table_and_one_models_card():
    res = runner.invoke(app, ["models"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert all(name in res.output for name in shipped_models()) and "psnr_mni152_x4_db" in res.output
    res = runner.invoke(app, ["models", "superres2d"], env={"COLUMNS": "160"})
    assert res.exit_code == 0 and "231 s on NVIDIA H200" in res.output


def test_an_unknown_name_exits_1_with_one_line_listing_the_shipped_names():
    res = runner.invoke(app, ["models", "no-such-model"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no-such-model")
    assert all(name in lines[0] for name in shipped_models())
    res = runner.invoke(app, ["synthesize", "denoiser3d", "--num", "1", "--out", "unused"])
    assert res.exit_code == 1 and "not a generative model" in res.output
