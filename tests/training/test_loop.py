"""The shared loop (medgen.training.loop): schedules, exact resume, time budget and logs, on a small
denoising fit to crops of the real MNI152 block."""

from __future__ import annotations

import pytest
import torch

from medgen.training.loop import Phase, cosine, fit


def _problem(mni_block: torch.Tensor, seed: int = 0):
    """A 3D conv that learns to denoise 12³ crops of the real MNI block; batches from a private generator."""
    volume = mni_block.as_tensor()[None] / mni_block.max()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = torch.nn.Conv3d(1, 1, 3, padding=1)
    gen = torch.Generator().manual_seed(seed)

    def loss_at(step: int) -> torch.Tensor:
        starts = [int(torch.randint(0, s - 12, (1,), generator=gen)) for s in volume.shape[2:]]
        clean = volume[:, :, starts[0]:starts[0] + 12, starts[1]:starts[1] + 12, starts[2]:starts[2] + 12]
        noisy = clean + 0.05 * torch.randn(clean.shape, generator=gen)
        return torch.mean((net(noisy) - clean) ** 2)

    return net, gen, loss_at


def test_cosine_schedule_matches_torch_cosine_annealing():
    steps, lr = 40, 1e-3
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.05 * lr)
    expected = []
    for _ in range(steps):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    factor = cosine(final=0.05)
    assert [lr * factor(s / steps) for s in range(steps)] == pytest.approx(expected, rel=1e-9)


def test_resume_from_a_checkpoint_continues_exactly(tmp_path, mni_block):
    net, gen, loss_at = _problem(mni_block)
    straight = fit([Phase(net, loss_at, lr=1e-2)], steps=12, schedule=cosine(0.1), generators=[gen])

    # interrupted after 5 steps: a fresh process would rebuild the problem and resume
    net2, gen2, loss_at2 = _problem(mni_block)
    part = fit([Phase(net2, loss_at2, lr=1e-2)], steps=12, schedule=cosine(0.1), generators=[gen2],
               checkpoint=tmp_path / "ckpt", stop_at=5)
    net3, gen3, loss_at3 = _problem(mni_block, seed=0)
    rest = fit([Phase(net3, loss_at3, lr=1e-2)], steps=12, schedule=cosine(0.1), generators=[gen3],
               checkpoint=tmp_path / "ckpt", resume=True)
    assert part.step == 5 and rest.step == 12
    assert part.losses["loss"] + rest.losses["loss"] == straight.losses["loss"]
    assert torch.equal(net3.weight, net.weight) and torch.equal(net3.bias, net.bias)


def test_time_budget_stops_early_and_logs_reach_tensorboard(tmp_path, mni_block):
    net, gen, loss_at = _problem(mni_block)
    result = fit([Phase(net, loss_at, lr=1e-2)], steps=10_000, time_budget_s=0.5, log_dir=tmp_path / "tb",
                 log_every=1)
    assert 0 < result.step < 10_000 and len(result.losses["loss"]) == result.step
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    losses = result.losses["loss"]
    assert sum(losses[-5:]) < sum(losses[:5])  # it learnt something on the real crops


def test_negative_steps_are_refused():
    net = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="steps"):
        fit([Phase(net, lambda step: net(torch.ones(1, 2)).sum())], steps=-1)
