"""Label-map → CT diffusion (MONAI ControlNet) from the CLI: train, render a label file, pools of pairs and lesions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from medgen.cli import app
from medgen.data import load_folder
from medgen.errors import ConfigError
from medgen.io import load_scan
from medgen.training import parse_config

runner = CliRunner()


def _ct_labels_config(tiny_config, **model) -> dict:
    return tiny_config("diffusion", model={"size": [32, 32, 24], **model},
                       data={"source": "ct", "n_subjects": 3, "val_subjects": 1, "condition": "labels",
                             "label_classes": 9, "patch_size": [16, 16, 16], "downsample": 2},
                       train={"steps": 2})


def test_label_conditioned_diffusion_config_is_checked(tiny_config):
    cfg = _ct_labels_config(tiny_config)
    with pytest.raises(ConfigError, match=r"model\.diffusion\.label_classes': must equal"):
        parse_config(cfg)
    cfg["model"]["diffusion"]["label_classes"] = 9
    assert parse_config(cfg).model.label_classes == 9
    cfg["data"]["condition"] = "none"
    with pytest.raises(ConfigError, match=r"data\.condition"):
        parse_config(cfg)


def test_cli_trains_renders_labels_and_writes_pair_and_lesion_pools(tmp_path, tiny_config):
    cfg = _ct_labels_config(tiny_config)
    cfg["model"]["diffusion"]["label_classes"] = 9
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    model = tmp_path / "run" / "model"

    res = runner.invoke(app, ["data", "export", "--out", str(tmp_path / "ct"), "--kind", "ct", "--subjects", "2"])
    assert res.exit_code == 0, res.output
    label_file = sorted((tmp_path / "ct" / "labels").glob("*.nii.gz"))[0]
    res = runner.invoke(app, ["synthesize", str(model), "--num", "1", "--out", str(tmp_path / "s"), "--steps", "3",
                              "--condition", str(label_file), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    sample = load_scan(tmp_path / "s" / "sample_000.nii.gz")
    assert sample.shape == (1, 32, 32, 24) and sample.meta["synthetic"]
    assert str(label_file) in json.dumps(sample.meta["provenance"])

    # one pair: rendering a whole phantom label map costs ~35 s on one CPU thread
    res = runner.invoke(app, ["synthesize", str(model), "--pool", "--num", "1", "--out", str(tmp_path / "pairs"),
                              "--labels", str(tmp_path / "ct"), "--steps", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    pairs = load_folder(tmp_path / "pairs", load=True)
    assert len(pairs) == 1 and all(p["image"].shape == p["label"].shape for p in pairs)

    res = runner.invoke(app, ["synthesize", str(model), "--pool", "--num", "2", "--out", str(tmp_path / "lesions"),
                              "--labels", str(tmp_path / "ct"), "--lesions", "2", "--host-labels", "4,5",
                              "--steps", "3", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    real = {c["subject_id"]: c for c in load_folder(tmp_path / "ct", load=True)}
    for case in load_folder(tmp_path / "lesions", load=True):
        source = min(real.values(), key=lambda r: float((r["label"] != case["label"]).sum()))
        added = (case["label"] == 8) & (source["label"] != 8)
        assert added.sum() > 0 and np.isin(source["label"][added].numpy(), [4, 5]).all()
        assert len(case["boxes"]) == len(source["boxes"]) + 2
        changed = (case["image"] != source["image"]).as_tensor()
        assert changed.sum() >= added.sum() and case["image"].meta["synthetic"]

    bad = runner.invoke(app, ["synthesize", str(model), "--pool", "--num", "1", "--out", str(tmp_path / "x"),
                              "--lesions", "1", "--host-labels", "liver", "--device", "cpu"])
    assert bad.exit_code == 1 and "host-labels" in bad.output and "Traceback" not in bad.output
