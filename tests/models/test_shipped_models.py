"""Every shipped model is one model folder, loads by name with ``medgen.load_model`` and runs on a real volume."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import medgen
from medgen.enhance.pretrained import load_denoiser
from medgen.errors import ConfigError, DataError
from medgen.evaluate.features import prepare
from medgen.models import GenerativeModel, TaskNetwork
from medgen.models.enhancers import SliceSR2d
from medgen.models.hub import list_models, load_generative, load_network, shipped_models
from medgen.models.task_network import load_task_network, write_task_network

TASKS = {"ct-lesions": "synthesis", "denoiser3d": "denoise", "superres2d": "superres", "superres2d-gan": "superres",
         "features_ssl3d": "features", "brain-vae": "synthesis", "brain-rflow": "synthesis",
         "brain-ldm": "synthesis", "brain-labels": "synthesis"}
BRAIN_GENERATORS = ["brain-vae", "brain-rflow", "brain-ldm"]


def _unit(block: torch.Tensor) -> torch.Tensor:
    """The MNI block ``(1, X, Y, Z)`` mapped by its 0.5/99.5 percentiles to [0, 1]."""
    lo, hi = torch.quantile(block.flatten(), torch.tensor([0.005, 0.995]))
    return ((block - lo) / (hi - lo)).clamp(0, 1)


def test_every_shipped_name_loads_and_runs_a_forward_pass_on_a_real_volume(mni_block):
    assert set(shipped_models()) == set(TASKS)
    x = _unit(mni_block.as_tensor().float())[None]  # (1, 1, 32, 28, 24)
    for name, task in TASKS.items():
        model = medgen.load_model(name)
        assert model.name == name and not model.network.training, name
        assert model.card and model.path.is_dir()
        with torch.no_grad():
            if name in BRAIN_GENERATORS or name == "brain-labels":
                continue  # sampled whole below
            if task == "synthesis":
                assert isinstance(model, GenerativeModel)
                labels = F.one_hot((x[:, 0] > 0.2).long(), 9).permute(0, 4, 1, 2, 3).float()  # background / tissue
                out = model.network(x * 2 - 1, torch.tensor([500]), labels=labels)
                assert out.shape == x.shape
            elif task == "denoise":
                noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
                out = model.network(noisy, 0.05)
                assert out.shape == x.shape and (out - x).abs().mean() < 0.75 * (noisy - x).abs().mean()
            elif task == "superres":
                factor = model.config["factors"][0]
                out = model.network(x[:, :, :, :, 12], factor)  # one axial slice (1, 1, 32, 28)
                assert out.shape == (1, 1, 32, 28)
            else:
                out = model.network(prepare(mni_block, model.config["input_size"])[None])
                assert out.shape == (1, model.config["features"])
        assert torch.isfinite(out).all(), name
        if isinstance(model, TaskNetwork):
            assert model.task == task and next(model.network.parameters()).dtype == torch.float32


@pytest.mark.parametrize("name", BRAIN_GENERATORS)
def test_shipped_brain_generators_draw_a_whole_3mm_head_in_the_cohorts_space(name):
    from medgen.data import brain_cohort
    from medgen.models.shapes import fit
    from medgen.synthesize import synthesize

    model = medgen.load_model(name)
    a, b = synthesize(model, 2, seed=3, **({"steps": 4} if model.config.family in ("diffusion", "ldm") else {}))
    assert a.shape[1:] == (64, 80, 64) and a.meta["synthetic"] is True and torch.isfinite(a).all()
    real = torch.as_tensor(fit(brain_cohort(1, resolution=3, seed=11)[0]["image"], [64, 80, 64])).float()

    def corr(x: torch.Tensor) -> float:  # a sample against a real subject the model never saw
        return float(torch.corrcoef(torch.stack([x.as_tensor().flatten().float(), real.flatten()]))[0, 1])

    assert corr(a) > 0.8 and corr(b) > 0.8  # a head where a real head is, not texture or noise
    assert not torch.allclose(a, b, atol=1e-3)  # two seeds, two heads


def test_shipped_label_model_draws_the_anatomy_of_the_label_map_it_is_given(tmp_path):
    from medgen.data import brain_cohort
    from medgen.io import save_scan
    from medgen.models.shapes import fit
    from medgen.synthesize import synthesize

    model = medgen.load_model("brain-labels")
    one, other = brain_cohort(2, resolution=3, seed=11)  # subjects the model never saw
    path = save_scan(one["label"], tmp_path / "labels.nii.gz")
    (x,) = synthesize(model, 1, seed=0, condition=path)  # a GAN: one pass
    assert x.shape[1:] == (64, 80, 64) and x.meta["synthetic"] is True
    image, lab = x.as_tensor()[0], fit(one["label"].float(), [64, 80, 64])[0].round()
    means = torch.stack([image[lab == k].mean() for k in (1, 2, 3)])
    assert means[2] > means[1] > means[0]  # T1: WM > GM > CSF
    # voxel by voxel: the tissue whose mean intensity is nearest is the given label's in most of the
    # brain (0.85 for the shipped model; 0.73 for the subject's own simulated image, which has noise)
    brain = lab > 0
    nearest = (image[brain][:, None] - means).abs().argmin(1) + 1
    assert (nearest == lab[brain]).float().mean() > 0.8
    # its white matter is where the given map has it, not where another subject's map does
    lab_other = fit(other["label"].float(), [64, 80, 64])[0].round()
    assert image[(lab == 3) & (lab_other != 3)].mean() > image[(lab_other == 3) & (lab != 3)].mean() + 0.01


def test_shipped_folders_share_one_layout_with_a_card_that_records_the_training_run():
    for info in list_models():
        files = {p.name for p in info.path.iterdir()}
        assert {"model.safetensors", "model_card.md", "card.json"} <= files, info.name
        assert "config.json" in files or "config.yaml" in files
        training = json.loads((info.path / "card.json").read_text())["training"]
        assert training["steps"] > 0 and training["wall_time_s"] > 0 and training["device"], info.name
        assert info.metrics and info.task == TASKS[info.name]


def test_unknown_name_is_a_data_error_listing_the_shipped_names():
    with pytest.raises(DataError) as err:
        medgen.load_model("no-such-model")
    message = str(err.value)
    assert "\n" not in message and all(name in message for name in shipped_models())


def test_loaders_refuse_a_model_of_another_task():
    with pytest.raises(DataError, match="not a generative model"):
        load_generative("denoiser3d")
    with pytest.raises(DataError, match="a superres model, not a features network"):
        load_network("superres2d", "features")
    with pytest.raises(ConfigError, match="key .model.*a synthesis model, not a denoise network"):
        load_denoiser("ct-lesions")


def test_written_folder_loads_back_as_float32_with_its_card(tmp_path):
    net = SliceSR2d(4, 1)
    torch.nn.init.normal_(net.tail.weight, std=0.1)
    config = {"architecture": "SliceSR2d", "network": {"channels": 4, "blocks": 1}, "factors": [2, 3]}
    card = {"name": "tiny-sr", "training": {"steps": 1, "wall_time_s": 0.1, "device": "cpu"}, "metrics": {"l1": 0.5}}
    folder = write_task_network(tmp_path / "tiny-sr", network=net, config=config, card=card)
    model = medgen.load_model(folder)
    assert (model.name, model.task, model.card["name"]) == ("tiny-sr", "superres", "tiny-sr")
    assert 'medgen.load_model("tiny-sr")' in model.card_text and "l1: 0.5" in model.card_text
    x = torch.rand(1, 1, 8, 8)
    assert torch.allclose(model.network(x, 2.0), net(x, 2.0), atol=1e-2)  # float16 on disk
    with pytest.raises(Exception, match="already exists"):
        write_task_network(folder, network=net, config=config, card=card)


def test_a_broken_config_fails_with_one_line_naming_the_file(tmp_path):
    folder = write_task_network(tmp_path / "m", network=SliceSR2d(4, 1),
                                config={"architecture": "SliceSR2d", "network": {"channels": 4, "blocks": 1}}, card={})
    config = json.loads((folder / "config.json").read_text())
    for change, problem in (({"architecture": "os.system"}, "key 'architecture'"),
                            ({"network": {"channels": 4, "blocks": 1, "depth": 3}}, "key 'network'"),
                            ({"network": {"channels": 4096, "blocks": 1000}}, "do not match config.json"),
                            ({"network": {"channels": 4, "blocks": 10**9}}, "key 'network.blocks'"),
                            ({"network": {"channels": 8, "blocks": 1}}, "do not match config.json")):
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(DataError, match=problem) as err:
            load_task_network(folder)
        assert "\n" not in str(err.value)


def test_shipped_latent_diffusion_decodes_with_the_shipped_vae_not_a_second_copy():
    ldm, vae = medgen.load_model("brain-ldm"), medgen.load_model("brain-vae")
    assert not (ldm.path / "vae.safetensors").exists()  # model.vae_path: brain-vae
    theirs = vae.network.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ldm.vae.state_dict().items())
