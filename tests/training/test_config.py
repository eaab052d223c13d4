from pathlib import Path

import pytest

from medgen.errors import ConfigError
from medgen.training import load_config, parse_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_unknown_key_is_named_with_its_dotted_path(tiny_config):
    cfg = tiny_config("vae", train={"stepz": 3})
    with pytest.raises(ConfigError, match=r"key 'train\.stepz': unknown key"):
        parse_config(cfg)


def test_wrong_type_is_named_with_its_dotted_path(tiny_config):
    cfg = tiny_config("vae")
    cfg["model"]["vae"]["channels"] = [8, "wide"]
    with pytest.raises(ConfigError, match=r"key 'model\.vae\.channels\[1\]': expected int"):
        parse_config(cfg)


def test_bad_choice_lists_allowed_values(tiny_config):
    with pytest.raises(ConfigError, match=r"key 'model\.family'.*'gan'"):
        parse_config(tiny_config("vae", model={"family": "flow"}))


def test_perceptual_loss_without_local_weights_is_a_clear_error(tiny_config):
    with pytest.raises(ConfigError, match="never downloads weights"):
        parse_config(tiny_config("vae", loss={"perceptual_weight": 0.1}))


def test_odd_size_is_rounded_up_to_the_network_downsampling(tiny_config):
    cfg = parse_config(tiny_config("diffusion", model={"size": [15, 17, 13]}))
    assert cfg.model.size == [16, 18, 14]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path):
    assert load_config(path).name == path.stem


def test_yaml_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {family: vae\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
