"""The generative part of ``medgen demo``: three small models on the built-in 3 mm brain cohort.

Trains a VAE, a GAN and a rectified-flow diffusion model (6 mm voxels, tiny networks: a few minutes
on a 2-core CPU), samples two volumes from each and writes a montage. The ``medgen demo`` command
can call :func:`demo_models` and print what it returns.
"""

from __future__ import annotations

from pathlib import Path

from medgen.io.atomic import safe_join
from medgen.models import load_model
from medgen.synthesize.generate import synthesize
from medgen.synthesize.save import save_samples
from medgen.viz import save_montage

_DEMO_NETS = {
    "vae": {"family": "vae", "vae": {"channels": [8, 16, 32], "latent_channels": 3, "norm_num_groups": 8}},
    "gan": {"family": "gan", "gan": {"latent_dim": 64, "channels": [64, 32, 16, 8], "disc_channels": 8}},
    "rflow": {"family": "diffusion", "diffusion": {"channels": [8, 16, 32], "attention": [False] * 3,
                                                  "norm_num_groups": 8, "objective": "rflow"}},
}


def demo_models(out: Path, *, steps: int = 60, overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
    """Train the three demo models under ``out/runs``, write samples and ``generative_samples.png``.

    Returns:
        ``{label: path}`` of the model folders, sample files and the montage.
    """
    from medgen.training import parse_config, train

    written: dict[str, Path] = {}
    scans, titles = [], []
    for name, net in _DEMO_NETS.items():
        gan = name == "gan"
        cfg = parse_config({
            "name": f"demo_{name}", "model": {**net, "size": [32, 40, 32]},
            "data": {"source": "brain", "n_subjects": 10, "val_subjects": 2, "resolution": 3, "downsample": 2},
            "train": {"steps": steps, "batch_size": 2, "lr": 2e-4 if gan else 1e-3, "ema_decay": 0.9,
                      "betas": [0.0, 0.99] if gan else [0.9, 0.999], "lr_schedule": "constant",
                      "val_every": 0, "checkpoint_every": 0},
        })
        run = safe_join(out, f"runs/{name}")
        result = train(cfg, run, device="cpu", progress=progress, resume=(run / "checkpoint").exists())
        model = load_model(result.model_dir or run / "model")
        samples = synthesize(model, 2, seed=0)
        written[f"{name} model"] = run / "model"
        for i, path in enumerate(save_samples(samples, safe_join(out, f"samples/{name}"), overwrite=overwrite)):
            written[f"{name} sample {i}"] = path
        scans += samples
        titles += [f"{name} {i}" for i in range(len(samples))]
    written["montage"] = save_montage(scans, safe_join(out, "generative_samples.png"), titles=titles,
                                      overwrite=overwrite)
    return written
