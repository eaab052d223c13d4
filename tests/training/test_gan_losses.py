"""The GAN losses keep their gradients where MONAI's tanh-squashed hinge loses them."""

import torch
from monai.losses import PatchAdversarialLoss

from medgen.training.recipes import Adversarial


def _grads(loss_fn, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
    real, fake = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    loss_fn(real, fake).backward()
    return float(real.grad.abs().sum()), float(fake.grad.abs().sum())


def test_hinge_discriminator_still_learns_when_real_and_fake_logits_are_both_large():
    # the state a 500-step label-GAN run ended in: patch logits ~9.4 (real) and ~9.8 (fake)
    real, fake = torch.full((2, 1, 7, 9, 7), 9.4), torch.full((2, 1, 7, 9, 7), 9.8)
    hinge = Adversarial("hinge")
    loss = hinge.discriminator(real, fake)
    assert abs(float(loss) - 0.5 * 10.8) < 1e-4  # fake patches are far on the wrong side of the margin
    _, g_fake = _grads(hinge.discriminator, real, fake)
    assert g_fake > 0.4  # pushes the fake logits down
    monai = PatchAdversarialLoss(criterion="hinge")
    _, g_monai = _grads(lambda r, f: 0.5 * (monai(r, True, True) + monai(f, False, True)), real, fake)
    assert g_monai < 1e-6  # tanh(9.8) == 1 in float32: MONAI's hinge has nothing left to learn from


def test_generator_losses_reward_fakes_the_discriminator_calls_real():
    for name in ("hinge", "bce"):
        loss = Adversarial(name)
        assert loss.generator(torch.full((1, 1, 4, 4, 4), 2.0)) < loss.generator(torch.full((1, 1, 4, 4, 4), -2.0))
        d_good = loss.discriminator(torch.full((1, 1, 4), 3.0), torch.full((1, 1, 4), -3.0))
        d_bad = loss.discriminator(torch.full((1, 1, 4), -3.0), torch.full((1, 1, 4), 3.0))
        assert d_good < d_bad, name
