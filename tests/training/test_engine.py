"""The engine on tiny real data: exact resume, reproducibility, odd sizes, 2D, model folders."""

import json

import pytest
import torch

from medgen.errors import ConfigError
from medgen.models import load_model
from medgen.synthesize import synthesize
from medgen.training import parse_config, train
from medgen.training.data import prepare_data


def _losses(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"val/' not in line]


def _weights(result):
    return {f"{n}.{k}": v.clone() for n, net in result.nets.items() for k, v in net.state_dict().items()}


@pytest.mark.parametrize(("family", "steps", "accum"), [("gan", 4, 2), ("diffusion", 3, 1)])
def test_interrupted_and_resumed_run_matches_uninterrupted_run(tmp_path, tiny_config, family, steps, accum):
    cfg = tiny_config(family, train={"steps": steps, "grad_accum": accum, "ema_decay": 0.9, "warmup_steps": 1})
    if family == "gan":
        cfg["model"]["gan"]["mean_image"] = True  # initialised from data on a fresh run only
    full = train(parse_config(cfg), tmp_path / "full", device="cpu", progress=False)
    if family == "gan":
        data_mean = torch.stack([item["image"] for item in prepare_data(parse_config(cfg)).train]).mean(0)
        start = torch.tanh(full.nets["gen"].mean_image[0].detach())
        assert torch.corrcoef(torch.stack([start.flatten(), data_mean.flatten()]))[0, 1] > 0.95
    part = train(parse_config(cfg), tmp_path / "part", device="cpu", progress=False, stop_at=2)
    assert part.step == 2 and part.model_dir is None
    with pytest.raises(ConfigError, match="--resume"):
        train(parse_config(cfg), tmp_path / "part", device="cpu", progress=False)
    resumed = train(parse_config(cfg), tmp_path / "part", device="cpu", progress=False, resume=True)
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    for ra, rb in zip(a, b):
        assert ra == pytest.approx(rb, rel=1e-6, abs=1e-7)
    wa, wb = _weights(full), _weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_and_config_give_same_weights_and_other_seed_differs(tmp_path, tiny_config):
    cfg = tiny_config("vae", train={"steps": 2})
    one = _weights(train(parse_config(cfg), tmp_path / "a", device="cpu", progress=False))
    two = _weights(train(parse_config(cfg), tmp_path / "b", device="cpu", progress=False))
    cfg["train"]["seed"] = 1
    other = _weights(train(parse_config(cfg), tmp_path / "c", device="cpu", progress=False))
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not all(torch.equal(one[k], other[k]) for k in one)


def test_odd_size_two_channel_model_trains_and_samples_at_data_geometry(tmp_path, tiny_config):
    cfg = tiny_config("diffusion", model={"size": [15, 17, 13], "in_channels": 2},
                      data={"contrasts": ["t1", "t2"]}, train={"steps": 1})
    result = train(parse_config(cfg), tmp_path / "run", device="cpu", progress=False)
    model = load_model(result.model_dir)
    first, second = synthesize(model, 2, sampler="ddim", steps=2)
    (scan,) = synthesize(model, 1, seed=1, sampler="ddim", steps=2)
    assert scan.shape == (2, 16, 18, 14)
    # sample i uses seed + i whatever batch it is drawn in
    assert torch.allclose(second, scan, atol=1e-4) and not torch.allclose(first, scan, atol=1e-2)
    assert torch.allclose(scan.affine.float(), torch.tensor(model.reference["affine"]).float())
    assert scan.meta["synthetic"] and scan.meta["provenance"][-1]["sampler"] == "ddim"


def test_2d_rflow_model_with_condition_and_guidance(tmp_path, tiny_config):
    cfg = tiny_config("diffusion", model={"spatial_dims": 2, "size": [16, 16]},
                      data={"condition": "tissue_fractions", "slices": 2},
                      train={"steps": 1})
    cfg["model"]["diffusion"].update({"objective": "rflow", "cond_dim": 3})
    result = train(parse_config(cfg), tmp_path / "run", device="cpu", progress=False)
    model = load_model(result.model_dir)
    a = synthesize(model, 1, steps=3, condition=torch.tensor([0.2, 0.4, 0.4]), guidance=2.0)[0]
    b = synthesize(model, 1, steps=3, condition=torch.tensor([0.2, 0.4, 0.4]), guidance=2.0)[0]
    assert a.shape == (1, 16, 16, 1) and torch.equal(a, b)
    with pytest.raises(ConfigError, match="rflow"):
        synthesize(model, 1, sampler="ddpm")


def test_ct_model_returns_hounsfield_units(tmp_path, tiny_config):
    pytest.importorskip("medgen.data", reason="built-in data")

    cfg = tiny_config("gan", data={"source": "ct", "downsample": 1}, train={"steps": 1})
    result = train(parse_config(cfg), tmp_path / "run", device="cpu", progress=False)
    model = load_model(result.model_dir)
    scan = synthesize(model, 1)[0]
    assert model.normalization.units == "HU" and scan.meta["units"] == "HU"
    assert -1000.0 <= float(scan.min()) and float(scan.max()) <= 1000.0


def test_latent_diffusion_trains_on_a_frozen_vae_and_decodes_samples(tmp_path, tiny_config):
    vae_cfg = tiny_config("vae", train={"steps": 2})
    vae_dir = train(parse_config(vae_cfg), tmp_path / "vae", device="cpu", progress=False).model_dir
    vae = load_model(vae_dir)
    assert float(vae.network.latent_scale) != 1.0  # latents scaled to unit variance for the diffusion model
    cfg = tiny_config("ldm", model={"vae_path": str(vae_dir)}, train={"steps": 2})
    cfg["model"]["diffusion"].update({"objective": "rflow", "mean_image": True})
    result = train(parse_config(cfg), tmp_path / "ldm", device="cpu", progress=False)
    assert result.nets["net"].unet.conv_in.conv.weight.shape[1] == 2  # learns the 2-channel latents
    model = load_model(result.model_dir)
    assert model.vae is not None and torch.equal(model.vae.latent_scale, vae.network.latent_scale)
    # the mean image of a latent model is the mean training latent (encoded once, at the latent size)
    images = torch.stack([item["image"] for item in prepare_data(parse_config(cfg)).train])
    with torch.no_grad():
        latents = model.vae.encode(images)
    assert torch.allclose(model.network.mean_image, latents.mean(0, keepdim=True), atol=1e-5)
    a, b = synthesize(model, 2, steps=3)
    assert a.shape == (1, 16, 16, 16) and torch.isfinite(a).all() and not torch.equal(a, b)
    assert a.meta["provenance"][-1]["family"] == "ldm" and a.meta["provenance"][-1]["sampler"] == "rflow"
    # SDEdit on a latent model: strength 0 is the VAE's reconstruction, strength 0.5 changes it
    from medgen.augment._generative import sdedit

    x0 = images[:1]
    with torch.no_grad():
        recon = model.vae.decode(model.vae.encode(x0))
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(sdedit(model, x0, 0.0, 4, gen), recon, atol=1e-5)
    assert not torch.allclose(sdedit(model, x0, 0.5, 4, gen), recon, atol=1e-3)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1])


def test_mean_image_diffusion_samples_the_average_brain_after_two_steps_and_plain_diffusion_does_not(
        tmp_path, tiny_config):
    from medgen.augment._generative import sdedit

    models = {}
    for mean_image in (True, False):
        cfg = tiny_config("diffusion", train={"steps": 2})
        cfg["model"]["diffusion"].update({"objective": "rflow", "mean_image": mean_image})
        models[mean_image] = load_model(train(parse_config(cfg), tmp_path / str(mean_image), device="cpu",
                                              progress=False).model_dir)
    data = torch.stack([item["image"] for item in prepare_data(parse_config(cfg)).train])
    net = models[True].network
    assert _corr(net.mean_image[0], data.mean(0)) > 0.999 and 0.0 < float(net.residual_scale) < 1.0
    to_model = models[True].normalization.to_model
    with_mean, plain = (to_model(synthesize(models[m], 1, steps=4)[0].as_tensor()) for m in (True, False))
    assert _corr(with_mean, data.mean(0)) > 0.8 > _corr(plain, data.mean(0))
    x0 = data[:1]  # SDEdit maps to the residual space and back: strength 0 returns the scan itself
    assert torch.allclose(sdedit(models[True], x0, 0.0, 4, torch.Generator().manual_seed(0)), x0, atol=1e-5)


@pytest.mark.parametrize("mean_image", [False, True])
def test_vae_prior_is_fitted_to_the_training_latents(tmp_path, tiny_config, mean_image):
    cfg = tiny_config("vae", train={"steps": 2})
    cfg["model"]["vae"]["mean_image"] = mean_image
    model = load_model(train(parse_config(cfg), tmp_path / "vae", device="cpu", progress=False).model_dir)
    vae, data = model.network, torch.stack([item["image"] for item in prepare_data(parse_config(cfg)).train])
    mean = data.mean(0, keepdim=True) if mean_image else 0.0
    if mean_image:
        assert torch.allclose(vae.mean_image, mean)
    with torch.no_grad():
        latents = vae.net.encode(data - mean)[0]
    assert torch.allclose(vae.prior_mean[0], latents.mean(0), atol=1e-4)
    assert torch.allclose(vae.prior_std[0], latents.std(0).clamp_min(1e-4), atol=1e-4)
    a, b = synthesize(model, 2, seed=0)
    assert torch.allclose(a, synthesize(model, 1, seed=0)[0], atol=1e-3) and not torch.allclose(a, b, atol=1e-2)
    corr = _corr(model.normalization.to_model(a.as_tensor()), data.mean(0))
    if mean_image:  # two steps: the residual model already samples the average anatomy
        assert corr > 0.9


def test_low_rank_vae_prior_draws_latents_that_vary_as_the_training_latents_do(tmp_path, tiny_config):
    cfg = tiny_config("vae", train={"steps": 2})
    cfg["model"]["vae"]["prior_rank"] = 3
    model = load_model(train(parse_config(cfg), tmp_path / "vae", device="cpu", progress=False).model_dir)
    vae = model.network
    data = torch.stack([item["image"] for item in prepare_data(parse_config(cfg)).train])
    with torch.no_grad():
        z = vae.net.encode(data)[0].flatten(1).double()  # unscaled training latents (N, D)
    assert vae.prior_basis.shape[0] == 3 and vae.prior_basis.abs().sum() > 0
    # basis + rest reproduce the per-voxel variance, and the basis spans the leading covariance directions
    total = vae.prior_basis.double().pow(2).sum(0) + vae.prior_std.double().flatten().pow(2)
    assert torch.allclose(total, z.var(0).clamp_min(1e-8), rtol=1e-3, atol=1e-6)
    top = torch.linalg.svd(z - z.mean(0), full_matrices=False)[2][0]
    unit = vae.prior_basis[0].double() / vae.prior_basis[0].double().norm()
    assert abs(float(unit @ top)) > 0.999
    gen = torch.Generator().manual_seed(0)
    draws = torch.cat([vae.sample_latent(gen) / vae.latent_scale for _ in range(400)]).flatten(1).double()
    # samples vary along the training latents' first direction as the training latents do (±20 %)
    ratio = float(((draws - z.mean(0)) @ top).var())
    assert 0.8 < ratio / float(((z - z.mean(0)) @ top).var()) < 1.25
    a, b = synthesize(model, 2, seed=0)
    assert not torch.allclose(a, b, atol=1e-2)


@pytest.mark.parametrize("family", ["vae", "diffusion"])
def test_mean_image_is_refused_for_patch_training(tiny_config, family):
    # a whole-volume prior: random patches do not line up with it
    cfg = tiny_config(family, data={"patch_size": [8, 8, 8]})
    cfg["model"]["vae" if family == "vae" else "diffusion"]["mean_image"] = True
    with pytest.raises(ConfigError, match="mean_image"):
        parse_config(cfg)


@pytest.mark.parametrize("damage", ["truncated weights", "broken state.json", "missing optimizer"])
def test_resume_from_a_damaged_checkpoint_is_one_line_naming_it(tmp_path, tiny_config, damage):
    import yaml
    from typer.testing import CliRunner

    from medgen.cli import app

    cfg = tiny_config("diffusion", train={"steps": 3})
    train(parse_config(cfg), tmp_path / "run", device="cpu", progress=False, stop_at=1)
    ckpt = tmp_path / "run" / "checkpoint"
    if damage == "truncated weights":
        (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:100])
    elif damage == "broken state.json":
        (ckpt / "state.json").write_text('{"step": 1, "optim')
    else:
        (ckpt / "optimizer.safetensors").unlink()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), "--resume",
                                      "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "damaged checkpoint" in result.output and str(ckpt) in result.output.replace("\n", "")


def test_label_gan_with_an_l1_term_renders_the_tissue_intensities_of_the_label_map_it_is_given(tmp_path, tiny_config):
    from medgen.synthesize.generate import render_labels

    gan = {"latent_dim": 16, "channels": [16, 8, 8], "disc_channels": 8, "disc_layers": 2, "label_classes": 4}
    cfg = tiny_config("gan", model={"gan": gan}, data={"condition": "labels", "n_subjects": 4},
                      loss={"recon_weight": 20.0},
                      train={"steps": 40, "lr": 3e-3, "lr_schedule": "constant", "betas": [0.5, 0.99]})
    result = train(parse_config(cfg), tmp_path / "run", device="cpu", progress=False)
    l1 = [r["l1"] for r in _losses(tmp_path / "run")]
    assert sum(l1[-5:]) / 5 < 0.6 * l1[0]  # the L1 term is optimised, not only logged
    model = load_model(result.model_dir)
    held_out = prepare_data(parse_config(cfg), model.normalization).val[0]  # a subject it never saw
    image = render_labels(model, held_out["label"][None], seed=0)[0, 0]
    lab = held_out["label"].argmax(0)
    assert image[lab == 3].mean() > image[lab == 2].mean() > image[lab == 1].mean()  # T1: WM > GM > CSF


def test_l1_term_is_refused_for_a_gan_without_label_maps(tiny_config):
    with pytest.raises(ConfigError, match="loss.recon_weight"):
        parse_config(tiny_config("gan", loss={"recon_weight": 1.0}))
