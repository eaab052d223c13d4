"""Bad input to ``train``, ``synthesize`` and ``superres`` (issue #23): one line, non-zero exit, no traceback.

Every case runs the real CLI (``CliRunner`` on ``medgen.cli.app``) from a working directory inside
``tmp_path`` and checks what README promises: exit code 1 (2 for typer's usage errors), no raised
exception, one ``error:`` line naming the file or key, every input byte-identical, nothing created in
``tmp_path`` or beside it, no run folder replaced. Each case fails before any training or sampling.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from medgen.cli import app
from medgen.io import save_scan
from medgen.training import parse_config, train
from tests.conftest import tiny_run

runner = CliRunner()


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: relative path → sha256 (``"dir"`` for folders)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def invoke(tmp_path: Path, args: list[str], monkeypatch) -> tuple:
    """Run ``medgen ARGS`` from ``tmp_path/a/b/c/d/cwd`` (so ``runs/../../../..`` still lands in tmp_path);
    return the result and whether ``tmp_path``, and the folder beside it, are unchanged."""
    cwd = tmp_path / "a" / "b" / "c" / "d" / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(cwd)
    before, beside = tree(tmp_path), sorted(p.name for p in tmp_path.parent.iterdir())
    res = runner.invoke(app, args)
    return res, tree(tmp_path) == before, sorted(p.name for p in tmp_path.parent.iterdir()) == beside


def assert_refused(res, *named: str, usage: bool = False) -> None:
    """Non-zero exit without a raised exception (a traceback); one ``error:`` line naming ``named``."""
    out = res.output
    assert isinstance(res.exception, SystemExit), f"raised {res.exception!r}:\n{out}"
    assert "Traceback" not in out
    if usage:  # typer's own usage errors: exit code 2, the option named
        assert res.exit_code == 2, out
    else:
        assert res.exit_code == 1, out
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, out
        out = errors[0]
    for text in named:
        assert text in out, out


# -- train ----------------------------------------------------------------------------------------------


def _config(changes: dict) -> dict:
    cfg = tiny_run("gan")
    for dotted, value in changes.items():
        *sections, key = dotted.split(".")
        node = cfg
        for s in sections:
            node = node.setdefault(s, {})
        node[key] = value
    return cfg


TRAIN_CASES = [
    # CLI overrides pass the YAML's checks
    pytest.param({}, ["--steps", "0"], ["train.steps"], id="steps-0-cli"),
    pytest.param({}, ["--steps", "-3"], ["train.steps"], id="steps-negative-cli"),
    pytest.param({}, ["--data", "missing_folder"], ["data.folder"], id="data-folder-missing-cli"),
    pytest.param({"model.family": "ldm", "model.vae_path": "no_vae"}, [], ["model.vae_path", "no_vae"],
                 id="ldm-vae-folder-missing"),
    # absurd numbers, refused before any network or data exists
    pytest.param({"train.steps": 0}, [], ["train.steps"], id="steps-0-yaml"),
    pytest.param({"model.size": [100000] * 3}, [], ["model.size"], id="size-100000-cubed"),
    pytest.param({"model.size": [16, 0, 16]}, [], ["model.size[1]"], id="size-zero"),
    pytest.param({"model.size": [16, 16]}, [], ["model.size"], id="size-wrong-length"),
    pytest.param({"model.gan.channels": [10**6, 8]}, [], ["model.gan.channels[0]"], id="channels-1e6"),
    pytest.param({"model.gan.channels": [8] * 20}, [], ["model.gan.channels"], id="levels-20"),
    pytest.param({"model.gan.latent_dim": 10**9}, [], ["model.gan.latent_dim"], id="latent-dim-1e9"),
    pytest.param({"model.in_channels": 10**6}, [], ["model.in_channels"], id="in-channels-1e6"),
    pytest.param({"model.gan.channels": [4096] * 4}, [], ["model.gan.channels", "parameters"],
                 id="parameters-over-bound"),
    pytest.param({"model.family": "diffusion", "model.diffusion": {"channels": [12, 16], "attention": [False, False]}},
                 [], ["model.diffusion.norm_num_groups"], id="groups-do-not-divide"),
    pytest.param({"model.family": "diffusion", "model.diffusion": {"channels": [8, 16], "attention": [False, False],
                  "norm_num_groups": 4, "num_train_timesteps": 10**12}}, [], ["num_train_timesteps"],
                 id="timesteps-1e12"),
    pytest.param({"train.batch_size": 10**6}, [], ["train.batch_size"], id="batch-1e6"),
    pytest.param({"data.n_subjects": 10**6}, [], ["data.n_subjects"], id="subjects-1e6"),
    pytest.param({"train.lr": float("nan")}, [], ["train.lr"], id="lr-nan"),
    pytest.param({"train.lr": -1.0}, [], ["train.lr"], id="lr-negative"),
    pytest.param({"train.ema_decay": 1.5}, [], ["train.ema_decay"], id="ema-above-1"),
    pytest.param({"data.percentiles": [99.0, 1.0]}, [], ["data.percentiles"], id="percentiles-reversed"),
    pytest.param({"data.resolution": 0}, [], ["data.resolution"], id="resolution-0"),
    pytest.param({"model.family": "vae", "model.vae": {"channels": [8, 16], "latent_channels": 2, "norm_num_groups": 4},
                  "loss.perceptual_weight": 0.1}, [], ["loss.perceptual_weight", "torchvision"],
                 id="perceptual-needs-torchvision"),
    # run names that would escape runs/ (no --out: the default runs/<name> is used)
    pytest.param({"name": "../../../../somewhere"}, None, ["key 'name'"], id="name-dotdot"),
    pytest.param({"name": "/abs/path"}, None, ["key 'name'"], id="name-absolute"),
    pytest.param({"name": "a/../../b"}, None, ["key 'name'"], id="name-inner-dotdot"),
    pytest.param({"name": ".."}, None, ["key 'name'"], id="name-parent"),
    pytest.param({"name": ""}, None, ["key 'name'"], id="name-empty"),
    pytest.param({"name": "a\\b"}, None, ["key 'name'"], id="name-backslash"),
]


@pytest.mark.parametrize(("changes", "args", "named"), TRAIN_CASES)
def test_train_refuses_bad_config_before_any_work(tmp_path, monkeypatch, changes, args, named):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(_config(changes)))
    out = [] if args is None else ["--out", str(tmp_path / "run"), *args]
    res, unchanged, beside = invoke(tmp_path, ["train", str(config), "--device", "cpu", *out], monkeypatch)
    assert_refused(res, *named)
    assert unchanged and beside  # no run folder, nothing written anywhere, config untouched


BAD_YAML = {
    "python-object-tag": ("name: x\nmodel: !!python/object:os.system {}\n", ["python/object"]),
    "python-apply-tag": ("model: !!python/object/apply:os.system [\"touch PWNED\"]\n", ["python/object/apply"]),
    "python-name-tag": ("model: !!python/name:os.system\n", ["python/name"]),
    "yaml-list": ("- model\n- data\n", ["expected a mapping"]),
    "yaml-syntax": ("model: {family: gan\n", ["not valid YAML", "line"]),
    "yaml-empty": ("", ["key 'model'"]),
    "not-text": (b"\xff\xfe\x00binary", ["not readable"]),
    "section-not-mapping": ("model: {family: gan}\ntrain: 5\n", ["key 'train'"]),
}


@pytest.mark.parametrize("case", BAD_YAML, ids=list(BAD_YAML))
def test_train_refuses_unsafe_or_broken_yaml_naming_the_file(tmp_path, monkeypatch, case):
    text, named = BAD_YAML[case]
    config = tmp_path / "run.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    res, unchanged, beside = invoke(tmp_path, ["train", str(config), "--out", str(tmp_path / "run")], monkeypatch)
    assert_refused(res, "run.yaml", *named)
    assert unchanged and beside  # nothing constructed: no PWNED file anywhere


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny GAN run folder (1 step), trained once for this module."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(parse_config(tiny_run("gan", train={"steps": 1})), run, device="cpu", progress=False)
    return run


@pytest.mark.parametrize(("prepare", "args", "named"), [
    pytest.param("run", [], ["already holds a run", "--resume", "--overwrite"], id="existing-run-no-resume"),
    pytest.param("run-without-checkpoint", [], ["already holds a run"], id="existing-model-no-checkpoint"),
    pytest.param("other-files", [], ["is not empty"], id="folder-with-other-files"),
    pytest.param("run", ["--resume", "--overwrite"], ["not both"], id="resume-and-overwrite"),
    pytest.param("empty", ["--resume"], ["--resume", "checkpoint"], id="resume-without-checkpoint"),
    pytest.param("run-other-model", ["--resume"], ["--resume", "model.gan", "config.yaml"],
                 id="resume-with-another-model"),
    pytest.param("file", [], ["is a file"], id="out-is-a-file"),
    pytest.param("under-file", [], ["cannot create its folder", "not a folder"], id="out-under-a-file"),
])
def test_train_never_replaces_an_existing_run_folder(tmp_path, monkeypatch, trained, prepare, args, named):
    config = tmp_path / "run.yaml"
    changes = {"gan": {"channels": [8, 8, 8]}} if prepare == "run-other-model" else {}
    config.write_text(yaml.safe_dump(tiny_run("gan", train={"steps": 1}, model=changes)))
    out = tmp_path / "out"
    if prepare.startswith("run"):
        shutil.copytree(trained, out)
        if prepare == "run-without-checkpoint":
            shutil.rmtree(out / "checkpoint")
    elif prepare == "other-files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif prepare == "empty":
        out.mkdir()
    elif prepare == "under-file":
        out.write_text("a file")
        out = out / "inside"
    else:
        out.write_text("a file")
    res, unchanged, beside = invoke(tmp_path, ["train", str(config), "--out", str(out), "--device", "cpu", *args],
                                    monkeypatch)
    assert_refused(res, str(out), *named)
    assert unchanged and beside


def test_train_overwrite_starts_the_run_over_and_keeps_other_files(tmp_path, trained):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run("gan", train={"steps": 1})))
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    (out / "metrics.jsonl").write_text('{"step": 99}\n' * 5)
    (out / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["train", str(config), "--out", str(out), "--device", "cpu", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # the old log went with the old run
    assert (out / "notes.txt").read_text() == "mine" and (out / "model" / "model.safetensors").is_file()


# -- synthesize -----------------------------------------------------------------------------------------


def _edit_yaml(name: str, change):
    def edit(folder: Path) -> None:
        data = yaml.safe_load((folder / name).read_text())
        change(data)
        (folder / name).write_text(yaml.safe_dump(data))
    return edit


def _write(name: str, content: str | bytes):
    def edit(folder: Path) -> None:
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return edit


def _truncate(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _truncate_header(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])


def _pickle(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))


def _other_tensors(folder: Path) -> None:
    save_file({"fc.weight": torch.zeros(3, 3)}, str(folder / "model.safetensors"))


def _set_model(**values):
    return _edit_yaml("config.yaml", lambda d: d["model"].update(values))


def _set_gan(**values):
    return _edit_yaml("config.yaml", lambda d: d["model"]["gan"].update(values))


MODEL_CASES = [
    pytest.param(_pickle, ["model.safetensors", "not a readable safetensors"], id="pickle-renamed"),
    pytest.param(_truncate, ["model.safetensors"], id="truncated-safetensors"),
    pytest.param(_truncate_header, ["model.safetensors"], id="truncated-header"),
    pytest.param(_other_tensors, ["model.safetensors", "do not match"], id="tensors-of-another-network"),
    pytest.param(_set_gan(channels=[8, 8, 8]), ["model.safetensors", "do not match config.yaml"],
                 id="config-does-not-match-weights"),
    pytest.param(lambda f: (f / "model.safetensors").unlink(), ["model.safetensors"], id="weights-missing"),
    pytest.param(_write("config.yaml", "model: !!python/object:os.system {}\n"), ["config.yaml", "python/object"],
                 id="python-object-tag"),
    pytest.param(_write("config.yaml", "model: !!python/object/apply:os.system [\"touch PWNED\"]\n"),
                 ["config.yaml"], id="python-apply-tag"),
    pytest.param(_write("config.yaml", "- model\n- gan\n"), ["config.yaml", "mapping"], id="config-is-a-list"),
    pytest.param(_write("config.yaml", "name: x\n"), ["config.yaml", "key 'model'"], id="config-without-model"),
    pytest.param(_set_model(size=[100000] * 3), ["config.yaml", "model.size"], id="size-100000-cubed"),
    pytest.param(_set_gan(channels=[10**6, 8, 8]), ["config.yaml", "model.gan.channels"], id="channels-1e6"),
    pytest.param(_set_gan(latent_dim=10**9), ["config.yaml", "model.gan.latent_dim"], id="latent-dim-1e9"),
    pytest.param(_set_gan(channels=[4096] * 4), ["config.yaml", "parameters"], id="parameters-over-bound"),
    pytest.param(_set_model(family="ldm"), ["vae_config.yaml"], id="ldm-without-vae"),
    pytest.param(_write("normalization.json", "{not json"), ["normalization.json"], id="normalization-not-json"),
    pytest.param(_write("normalization.json", '{"kind": "window", "low": 5, "high": 5}'), ["normalization.json"],
                 id="normalization-empty-window"),
    pytest.param(_write("reference.json", '{"affine": "eye"}'), ["reference.json", "affine"], id="affine-not-4x4"),
]


@pytest.mark.parametrize(("damage", "named"), MODEL_CASES)
def test_synthesize_refuses_a_damaged_model_folder_before_building_it(tmp_path, monkeypatch, trained, damage, named):
    model = tmp_path / "model"
    shutil.copytree(trained / "model", model)
    damage(model)
    res, unchanged, beside = invoke(tmp_path, ["synthesize", str(model), "--out", str(tmp_path / "samples"),
                                               "--device", "cpu"], monkeypatch)
    assert_refused(res, *named)
    assert unchanged and beside  # no samples folder, the model folder byte-identical, no PWNED file


@pytest.mark.parametrize(("prepare", "args", "named"), [
    pytest.param("no-model", [], ["no_such_model"], id="model-folder-missing"),
    pytest.param("file", [], ["is a file"], id="out-is-a-file"),
    pytest.param("under-file", [], ["cannot create its folder", "not a folder"], id="out-under-a-file"),
    pytest.param("sample", [], ["sample_000.nii.gz", "exists"], id="sample-exists"),
    pytest.param(None, ["--guidance", "nan"], ["guidance"], id="guidance-nan"),
    pytest.param(None, ["--num", "0"], ["--num"], id="num-0"),
    pytest.param(None, ["--num", "1000000000"], ["key 'num'"], id="num-1e9"),
    pytest.param(None, ["--sampler", "ddim"], ["key 'sampler'", "gan"], id="sampler-for-a-gan"),
    pytest.param(None, ["--steps", "10"], ["key 'sampler'", "--steps"], id="steps-for-a-gan"),
])
def test_synthesize_refuses_bad_options_before_sampling(tmp_path, monkeypatch, trained, prepare, args, named):
    out = tmp_path / "samples"
    if prepare == "file":
        out.write_text("a file")
    elif prepare == "under-file":
        out.write_text("a file")
        out = out / "inside"
    elif prepare == "sample":
        out.mkdir()
        (out / "sample_000.nii.gz").write_bytes(b"precious")
    model = str(tmp_path / "no_such_model" if prepare == "no-model" else trained / "model")
    res, unchanged, beside = invoke(tmp_path, ["synthesize", model, "--out", str(out), "--device", "cpu", *args],
                                    monkeypatch)
    assert_refused(res, *named, usage=args == ["--num", "0"])  # typer's own min=1
    assert unchanged and beside


# -- superres -------------------------------------------------------------------------------------------


SUPERRES_CASES = [
    pytest.param(["--factor", "100"], ["key 'factor'", "in-plane"], id="factor-100-small-scan"),
    pytest.param(["--factor", "0"], ["key 'factor'"], id="factor-0"),
    pytest.param(["--factor", "-2"], ["key 'factor'"], id="factor-negative"),
    pytest.param(["--factor", "100000000", "--method", "cubic"], ["key 'factor'", "voxels"], id="output-over-budget"),
    pytest.param(["--spacing", "0.00001,1,1", "--method", "cubic"], ["key 'spacing'", "voxels"],
                 id="spacing-over-budget"),
    pytest.param(["--spacing", "0.01,1,1"], ["key 'spacing'"], id="spacing-learned-factor-too-large"),
    pytest.param(["--spacing", "0,1,1"], ["key 'spacing'"], id="spacing-0"),
    pytest.param(["--spacing", "-1,1,1"], ["key 'spacing'"], id="spacing-negative"),
    pytest.param(["--spacing", "nan,1,1"], ["key 'spacing'"], id="spacing-nan"),
    pytest.param(["--spacing", "1,1"], ["key 'spacing'"], id="spacing-two-numbers"),
    pytest.param(["--factor", "2", "--spacing", "1,1,1"], ["key 'factor'"], id="factor-and-spacing"),
    pytest.param(["--factor", "2", "--axis", "5"], ["key 'axis'"], id="axis-5"),
    pytest.param(["--factor", "2", "--steps", "-1", "--method", "smore"], ["key 'steps'"], id="steps-negative"),
    pytest.param(["--factor", "2", "--seed", "-1", "--method", "smore"], ["key 'seed'"], id="seed-negative"),
    pytest.param(["--factor", "2", "--method", "magic"], ["key 'method'"], id="method-unknown"),
    pytest.param(["--factor", "2.5"], ["--factor"], id="factor-not-integer"),
    pytest.param(["--factor", "2", "--model", "no_such_model"], ["no_such_model"], id="model-missing"),
]


@pytest.mark.parametrize(("args", "named"), SUPERRES_CASES)
def test_superres_validates_factor_axis_spacing_against_the_scan(tmp_path, monkeypatch, mni_block, args, named):
    scan = save_scan(mni_block, tmp_path / "thick.nii.gz")
    res, unchanged, beside = invoke(tmp_path, ["superres", str(scan), str(tmp_path / "thin.nii.gz"), *args],
                                    monkeypatch)
    assert_refused(res, *named, usage="2.5" in args)
    assert unchanged and beside  # no output, the scan byte-identical


def test_superres_refuses_an_existing_output(tmp_path, monkeypatch, mni_block):
    scan = save_scan(mni_block, tmp_path / "thick.nii.gz")
    (tmp_path / "thin.nii.gz").write_bytes(b"precious")
    res, unchanged, beside = invoke(tmp_path, ["superres", str(scan), str(tmp_path / "thin.nii.gz"), "--factor", "2",
                                               "--method", "cubic"], monkeypatch)
    assert_refused(res, "thin.nii.gz", "exists")
    assert unchanged and beside


# -- denoise: scans whose noise level cannot be estimated (issue #25) ------------------------------------


@pytest.mark.parametrize(("case", "problem"), [
    ("nan", "voxels are NaN or Inf"), ("zeros", "blocks vary"), ("constant", "blocks vary"), ("tiny", "blocks vary")])
def test_denoise_refuses_a_scan_whose_noise_cannot_be_estimated(tmp_path, monkeypatch, mni_block, case, problem):
    import nibabel as nib
    import numpy as np

    data = mni_block[0].numpy().copy()
    if case == "nan":
        data[4:6, 4:6, 4:6] = np.nan
    elif case == "zeros":
        data[:] = 0.0
    elif case == "constant":
        data[:] = 500.0
    else:
        data = data[:6, :6, :6]
    src = tmp_path / f"{case}.nii.gz"
    nib.save(nib.Nifti1Image(data, mni_block.affine.numpy()), str(src))
    res, unchanged, beside = invoke(tmp_path, ["denoise", str(src), str(tmp_path / "out.nii.gz")], monkeypatch)
    assert_refused(res, f"{case}.nii.gz", problem)
    assert unchanged and beside
