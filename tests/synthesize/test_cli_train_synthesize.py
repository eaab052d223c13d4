"""medgen train → model folder → load in a fresh process → medgen synthesize → NIfTI marked synthetic."""

import json
import subprocess
import sys

import numpy as np
import yaml
from typer.testing import CliRunner

from medgen.cli import app
from medgen.io import load_scan

runner = CliRunner()


def test_cli_train_then_synthesize_writes_marked_nifti_loadable_in_fresh_process(tmp_path, tiny_config):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config("gan", train={"ema_decay": 0.9})))
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", str(cfg), "--out", str(run), "--device", "cpu", "--steps", "2"])
    assert res.exit_code == 0, res.output
    model_dir = run / "model"
    assert {p.name for p in model_dir.iterdir()} >= {"config.yaml", "model.safetensors", "normalization.json",
                                                     "reference.json", "model_card.md"}
    assert "2 steps" in (model_dir / "model_card.md").read_text()
    assert not list(model_dir.glob("*.pt")) and not list(model_dir.glob("*.pkl"))

    code = ("import sys, medgen; m = medgen.load_model(sys.argv[1]); "
            "print(m.config.family, m.config.size, type(m.network).__name__)")
    fresh = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert fresh.stdout.split()[0] == "gan" and "Generator" in fresh.stdout

    out = tmp_path / "samples"
    res = runner.invoke(app, ["synthesize", str(model_dir), "--num", "2", "--out", str(out), "--seed", "7",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    files = sorted(out.glob("*.nii.gz"))
    assert [f.name for f in files] == ["sample_000.nii.gz", "sample_001.nii.gz"]
    scan = load_scan(files[1])
    reference = json.loads((model_dir / "reference.json").read_text())
    assert scan.shape == (1, 16, 16, 16)
    assert np.allclose(scan.affine.numpy(), np.asarray(reference["affine"]), atol=1e-4)
    sidecar = json.loads(files[1].with_suffix("").with_suffix(".json").read_text())
    text = json.dumps(sidecar)
    assert "synthesize" in text and '"seed": 8' in text and "single-pass" in text
    assert sidecar.get("synthetic", True)

    again = runner.invoke(app, ["synthesize", str(model_dir), "--num", "1", "--out", str(out), "--device", "cpu"])
    assert again.exit_code == 1 and "exists" in again.output


def test_cli_bad_config_key_is_one_line_error(tmp_path, tiny_config):
    cfg = tiny_config("vae")
    cfg["model"]["vae"]["chanels"] = [8, 16]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 1
    assert "key 'model.vae.chanels': unknown key" in res.output
    assert "Traceback" not in res.output


def test_synthesize_refuses_a_folder_that_is_not_a_model(tmp_path):
    res = runner.invoke(app, ["synthesize", str(tmp_path), "--num", "1", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "not a medgen model folder" in res.output
