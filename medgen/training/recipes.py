"""Training recipes: the losses of each model family, separate from networks and from the engine.

A recipe owns the trainable networks (``nets``), names the one whose EMA is the finished model
(``ema_key``) and lists its optimisation *phases*: ``(optimizer name, loss function)``. The engine runs
each phase once per step (GAN: discriminator, then generator) over the same micro-batches. A loss
function gets the (possibly DDP-wrapped) networks, a batch on the device, the step and the engine's
random generator, and returns ``(loss, {name: value})``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from medgen.errors import ConfigError
from medgen.models.build import build_network
from medgen.models.config import ModelConfig
from medgen.models.gan import build_discriminator
from medgen.models.sampling import default_sampler, sample, training_scheduler, with_labels
from medgen.models.vae import VAE, kl_loss
from medgen.training.config import RunConfig

LossFn = Callable[[dict, dict, int, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class Recipe:
    """Networks + phases of one family (see module docstring)."""

    nets: dict[str, nn.Module]
    ema_key: str
    phases: list[tuple[str, LossFn]]
    preview: Callable[[nn.Module, list[dict], torch.device], torch.Tensor]
    frozen: dict[str, nn.Module] = field(default_factory=dict)
    init_from_data: Callable[[torch.Tensor], None] | None = None
    """Called once on a fresh run with the training images ``(N, C, *size)`` (model range), or with
    their scaled latents ``(N, latent_channels, *latent size)`` for latent diffusion."""


def make_recipe(cfg: RunConfig, cond_dim: int, vae: VAE | None = None, vae_cfg: ModelConfig | None = None) -> Recipe:
    """The recipe for ``cfg.model.family`` (``ldm`` needs the trained, frozen ``vae``)."""
    family = cfg.model.family
    if family == "vae":
        return _vae_recipe(cfg)
    if family == "gan":
        return _gan_recipe(cfg)
    return _diffusion_recipe(cfg, cond_dim, vae, vae_cfg)


class Adversarial:
    """GAN losses on the discriminator's raw patch logits: ``hinge`` (real ``relu(1 - x)``, fake ``relu(1 + x)``,
    generator ``-x``) or ``bce`` (non-saturating, ``binary_cross_entropy_with_logits``).

    Not MONAI's ``PatchAdversarialLoss``: its hinge squashes the logits with ``tanh`` first, so once a
    discriminator's logits pass ~3 for real *and* fake images (they reached 9.4 and 9.8 in a 500-step
    label-GAN run) every gradient vanishes and the discriminator loss sits at exactly 1.000 for good.
    """

    def __init__(self, name: str) -> None:
        self.hinge = name == "hinge"

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real, fake = real.float(), fake.float()
        if self.hinge:
            return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
        return 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                      + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def generator(self, fake: torch.Tensor) -> torch.Tensor:
        fake = fake.float()
        return -fake.mean() if self.hinge else F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def _vae_recipe(cfg: RunConfig) -> Recipe:
    lc = cfg.loss
    nets: dict[str, nn.Module] = {"vae": build_network(cfg.model)}
    adv = lc.adv_weight > 0
    if adv:
        nets["disc"] = build_discriminator(replace(cfg.model, gan=replace(cfg.model.gan, label_classes=0)))
    criterion = Adversarial(lc.gan_loss)
    perceptual = _perceptual(cfg) if lc.perceptual_weight > 0 else None

    def vae_loss(m, batch, step, rng):
        x = batch["image"]
        recon, mu, sigma = m["vae"](x)
        l1 = F.l1_loss(recon, x)
        kl = kl_loss(mu, sigma)
        loss = l1 + lc.kl_weight * kl
        parts = {"l1": l1.item(), "kl": kl.item()}
        if perceptual is not None:
            p = perceptual.to(x.device)(recon.float(), x.float())
            loss = loss + lc.perceptual_weight * p
            parts["perceptual"] = p.item()
        if adv and step >= lc.adv_start:
            g = criterion.generator(m["disc"](recon)[-1])
            loss = loss + lc.adv_weight * g
            parts["adv_g"] = g.item()
        return loss, parts

    def disc_loss(m, batch, step, rng):
        x = batch["image"]
        with torch.no_grad():
            recon = m["vae"](x)[0]
        d = _disc_terms(m["disc"], criterion, x, recon)
        return d, {"adv_d": d.item()}

    phases = [("vae", vae_loss)] + ([("disc", disc_loss)] if adv else [])

    @torch.no_grad()
    def init_mean_image(images: torch.Tensor) -> None:
        nets["vae"].mean_image.copy_(images.mean(0, keepdim=True))

    def preview(net, val, device):
        x = torch.stack([v["image"] for v in val[:2]]).to(device)
        with torch.no_grad():
            return torch.cat([x, net(x)[0]])

    init = init_mean_image if cfg.model.vae.mean_image else None
    return Recipe(nets, "vae", phases, preview, init_from_data=init)


def _disc_terms(disc: nn.Module, criterion: Adversarial, real: torch.Tensor, fake: torch.Tensor):
    return criterion.discriminator(disc(real)[-1], disc(fake.detach())[-1])


def _gan_recipe(cfg: RunConfig) -> Recipe:
    lc, g = cfg.loss, cfg.model.gan
    nets = {"gen": build_network(cfg.model), "disc": build_discriminator(cfg.model)}
    criterion = Adversarial(lc.gan_loss)

    def with_labels(x, batch):
        return torch.cat([x, batch["label"]], dim=1) if g.label_classes else x

    def fake(m, batch, rng):
        z = torch.randn(batch["image"].shape[0], g.latent_dim, generator=rng).to(batch["image"].device)
        return m["gen"](z, batch.get("label"))

    def disc_loss(m, batch, step, rng):
        with torch.no_grad():
            x_fake = fake(m, batch, rng)
        real = with_labels(batch["image"], batch)
        if lc.r1_weight > 0:
            real = real.detach().requires_grad_(True)
        d = _disc_terms(m["disc"], criterion, real, with_labels(x_fake, batch))
        parts = {"d": d.item()}
        if lc.r1_weight > 0:
            logits = m["disc"](real)[-1]
            (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            d = d + 0.5 * lc.r1_weight * r1
            parts["r1"] = r1.item()
        return d, parts

    def gen_loss(m, batch, step, rng):
        x_fake = fake(m, batch, rng)
        loss = criterion.generator(m["disc"](with_labels(x_fake, batch))[-1])
        parts = {"g": loss.item()}
        if lc.recon_weight > 0:  # pix2pix: the subject's own image for its own label map
            l1 = F.l1_loss(x_fake.float(), batch["image"].float())
            loss = loss + lc.recon_weight * l1
            parts["l1"] = l1.item()
        return loss, parts

    def preview(net, val, device):
        gen = torch.Generator().manual_seed(1234)
        z = torch.randn(2, g.latent_dim, generator=gen).to(device)
        labels = torch.stack([v["label"] for v in val[:2]]).to(device) if g.label_classes else None
        with torch.no_grad():
            return net(z[: (labels.shape[0] if labels is not None else 2)], labels)

    @torch.no_grad()
    def init_mean_image(images: torch.Tensor) -> None:
        # tanh(mean_image) is the average training image; the convolutions learn the rest.
        nets["gen"].mean_image.copy_(torch.atanh(images.mean(0).clamp(-0.98, 0.98))[None])

    init = init_mean_image if g.mean_image else None
    return Recipe(nets, "gen", [("disc", disc_loss), ("gen", gen_loss)], preview, init_from_data=init)


def _diffusion_recipe(cfg: RunConfig, cond_dim: int, vae: VAE | None, vae_cfg: ModelConfig | None) -> Recipe:
    d = cfg.model.diffusion
    if d.cond_dim != cond_dim:
        raise ConfigError(f"key 'model.diffusion.cond_dim': the data give a {cond_dim}-vector condition "
                  f"(data.condition={cfg.data.condition!r}); set cond_dim: {cond_dim}")
    net = build_network(cfg.model, vae_cfg)
    scheduler = training_scheduler(d)
    frozen = {"vae": vae.eval().requires_grad_(False)} if vae is not None else {}

    @torch.no_grad()
    def init_mean_image(images: torch.Tensor) -> None:
        mean = images.mean(0, keepdim=True)
        net.mean_image.copy_(mean)
        net.residual_scale.fill_(float((images - mean).std().clamp_min(1e-3)))

    def loss_fn(m, batch, step, rng):
        x = batch["image"]
        if vae is not None:  # the engine encodes the training set once ("latent"); encode otherwise
            if "latent" in batch:
                x = batch["latent"]
            else:
                with torch.no_grad():
                    x = frozen["vae"].encode(x)
        x = net.to_residual(x)
        noise = torch.randn(x.shape, generator=rng).to(x.device)
        if d.objective == "rflow":
            t = scheduler.sample_timesteps(x)
            target = x - noise
        else:
            t = torch.randint(0, d.num_train_timesteps, (x.shape[0],), generator=rng).to(x.device)
            target = noise
        x_t = scheduler.add_noise(original_samples=x, noise=noise, timesteps=t)
        cond = batch.get("cond")
        drop = (torch.rand(x.shape[0], generator=rng) < d.cond_drop).to(x.device) if cond is not None else None
        pred = m["net"](x_t, t, cond, drop, labels=batch.get("label"))
        loss = F.mse_loss(pred.float(), target.float())
        return loss, {"mse": loss.item()}

    def preview(model_net, val, device):
        sampler, steps = default_sampler(d)
        first = torch.stack([v["image"] for v in val[:2]]).to(device)
        shape = list(first.shape)
        if vae is not None:
            with torch.no_grad():
                shape = list(frozen["vae"].encode(first).shape)
        cond = torch.stack([v["cond"] for v in val[:2]]).to(device) if "cond" in val[0] else None
        labels = torch.stack([v["label"] for v in val[:2]]).to(device) if d.label_classes else None
        x = sample(with_labels(model_net, labels), d, shape, sampler=sampler, steps=min(steps, 20), cond=cond,
                   generator=torch.Generator().manual_seed(1234), device=device)
        if vae is not None:
            with torch.no_grad():
                return frozen["vae"].decode(model_net.from_residual(x))
        return model_net.from_residual(x)

    init = init_mean_image if d.mean_image else None
    return Recipe({"net": net}, "net", [("net", loss_fn)], preview, frozen, init_from_data=init)


def _perceptual(cfg: RunConfig) -> nn.Module:
    """MONAI perceptual loss on the user's local weights (medgen never downloads weights)."""
    from monai.losses import PerceptualLoss

    return PerceptualLoss(spatial_dims=cfg.model.spatial_dims, network_type="resnet50",
                          is_fake_3d=cfg.model.spatial_dims == 3,
                          pretrained=True, pretrained_path=cfg.loss.perceptual_weights,
                          pretrained_state_dict_key="state_dict")
