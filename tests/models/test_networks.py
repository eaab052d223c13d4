"""Networks, samplers and normalisation on tiny tensors."""

import pytest
import torch

from medgen.errors import ConfigError
from medgen.models import (
    VAE,
    DiffusionConfig,
    DiffusionNet,
    GANConfig,
    Generator,
    ModelConfig,
    Normalization,
    VAEConfig,
    build_discriminator,
)
from medgen.models.sampling import sample
from medgen.models.shapes import fit


def test_label_conditioned_generator_follows_its_label_map():
    cfg = ModelConfig(family="gan", size=[16, 16, 16],
                      gan=GANConfig(latent_dim=8, channels=[16, 8, 8], label_classes=4))
    gen = Generator(cfg).eval()
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    a, b = torch.zeros(1, 4, 16, 16, 16), torch.zeros(1, 4, 16, 16, 16)
    a[:, 0], b[:, 3] = 1, 1
    with torch.no_grad():
        out_a, out_b = gen(z, a), gen(z, b)
    assert out_a.shape == (1, 1, 16, 16, 16) and out_a.abs().max() <= 1
    assert not torch.allclose(out_a, out_b)
    with pytest.raises(ValueError, match="label map"):
        gen(z)
    disc = build_discriminator(cfg)
    assert disc(torch.cat([out_a, a], 1))[-1].shape[:2] == (1, 1)


def test_vae_encode_decode_shapes_2d_multichannel():
    cfg = ModelConfig(family="vae", spatial_dims=2, in_channels=3, size=[16, 16],
                      vae=VAEConfig(channels=[8, 16], latent_channels=2, norm_num_groups=4))
    vae = VAE(cfg)
    z = vae.encode(torch.randn(2, 3, 16, 16))
    assert z.shape == (2, 2, 8, 8) and vae.decode(z).shape == (2, 3, 16, 16)


def test_samplers_must_match_the_training_objective():
    cfg = ModelConfig(family="diffusion", size=[8, 8, 8],
                      diffusion=DiffusionConfig(channels=[8, 8], attention=[False, False], norm_num_groups=4))
    net = DiffusionNet(cfg).eval()
    x = sample(net, cfg.diffusion, [1, 1, 8, 8, 8], sampler="ddim", steps=3,
               generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 1, 8, 8, 8) and torch.isfinite(x).all()
    with pytest.raises(ConfigError, match="epsilon"):
        sample(net, cfg.diffusion, [1, 1, 8, 8, 8], sampler="rflow", steps=3)


def test_hu_window_round_trip_and_odd_size_fit():
    norm = Normalization("window", -1000.0, 1000.0, "HU")
    hu = torch.tensor([-1000.0, -50.0, 0.0, 40.0, 1000.0])
    assert torch.allclose(norm.to_units(norm.to_model(hu)), hu, atol=1e-3)
    assert norm.to_model(torch.tensor([3000.0])).item() == 1.0
    x = torch.rand(1, 15, 17, 13)
    y = fit(x, [16, 16, 16], pad_value=-1.0)
    assert y.shape == (1, 16, 16, 16)


def test_ddpm_rows_drawn_with_their_own_generators_do_not_depend_on_the_batch():
    cfg = ModelConfig(family="diffusion", size=[8, 8, 8],
                      diffusion=DiffusionConfig(channels=[8, 8], attention=[False, False], norm_num_groups=4,
                                                num_train_timesteps=10))
    net = DiffusionNet(cfg).eval()
    both = sample(net, cfg.diffusion, [2, 1, 8, 8, 8], sampler="ddpm",
                  generator=[torch.Generator().manual_seed(s) for s in (3, 4)])
    alone = sample(net, cfg.diffusion, [1, 1, 8, 8, 8], sampler="ddpm", generator=[torch.Generator().manual_seed(4)])
    assert torch.allclose(both[1:], alone, atol=1e-5) and not torch.allclose(both[:1], alone, atol=1e-3)


def test_generator_with_mean_image_starts_from_that_image_for_every_latent():
    cfg = ModelConfig(family="gan", size=[16, 16, 16],
                      gan=GANConfig(latent_dim=8, channels=[16, 16, 16], mean_image=True))
    gen = Generator(cfg).eval()
    with torch.no_grad():
        gen.mean_image.uniform_(-1, 1)
        out = gen(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(out, torch.tanh(gen.mean_image).expand(3, -1, -1, -1, -1))
    # a fixed image saved with the weights, never an optimised parameter (Adam would add per-voxel noise)
    assert "mean_image" in gen.state_dict() and "mean_image" not in dict(gen.named_parameters())
