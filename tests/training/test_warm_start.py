"""``train.init_from``: a ControlNet run starts as the trained diffusion model it is put on."""

import pytest
import torch

from medgen.errors import ConfigError
from medgen.models import load_model
from medgen.models.build import build_network
from medgen.training import parse_config, train
from medgen.training.warm_start import init_from


def _labelled(cfg: dict) -> dict:
    cfg["model"]["diffusion"]["label_classes"] = 4
    cfg["data"].update(condition="labels", label_classes=4)
    return cfg


def test_controlnet_run_starts_from_the_trained_unet_and_predicts_what_it_predicts(tmp_path, tiny_config):
    base_cfg = tiny_config("diffusion", train={"steps": 2})
    base_cfg["model"]["diffusion"].update(objective="rflow", mean_image=True)
    base = load_model(train(parse_config(base_cfg), tmp_path / "base", device="cpu", progress=False).model_dir)
    cfg = parse_config(_labelled(tiny_config("diffusion", train={"steps": 2, "init_from": str(base.path)})))
    cfg.model.diffusion.objective, cfg.model.diffusion.mean_image = "rflow", True
    net = build_network(cfg.model)
    counts = init_from(net, base.path)
    assert counts["copied"] == len(base.network.state_dict()) and counts["from_unet"] > 0 and counts["fresh"] > 0
    assert torch.equal(net.mean_image, base.network.mean_image)
    for name, value in net.control.state_dict().items():
        if name in net.unet.state_dict():
            assert torch.equal(value, net.unet.state_dict()[name]), name
    # zero convolutions: the label map changes nothing at step 0, so the run starts as the base model
    x, t = torch.randn(2, 1, *cfg.model.size), torch.tensor([10, 500])
    labels = torch.nn.functional.one_hot(torch.randint(0, 4, (2, *cfg.model.size)), 4).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        assert torch.allclose(net(x, t, labels=labels.float()), base.network(x, t), atol=1e-5)
    result = train(cfg, tmp_path / "control", device="cpu", progress=False)  # and the engine takes the key
    assert result.model_dir is not None and load_model(result.model_dir).config.label_classes == 4


def test_init_from_a_missing_or_mismatched_model_is_one_line_naming_the_key(tmp_path, tiny_config):
    cfg = parse_config(tiny_config("diffusion", train={"steps": 1, "init_from": "brain-nonexistent"}))
    with pytest.raises(ConfigError, match=r"train.init_from.*brain-rflow"):  # lists the shipped names
        train(cfg, tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"train.init_from.*shape"):  # channels 8/16 vs the shipped 16/32/64/128
        init_from(build_network(parse_config(tiny_config("diffusion")).model), "brain-rflow")
