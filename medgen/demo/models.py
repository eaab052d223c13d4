"""The generative part of ``medgen demo``: the shipped brain generators, and three small models
trained on the built-in 3 mm brain cohort.

:func:`demo_shipped` samples two whole 3 mm heads from each shipped brain generator (no training) and
writes them next to two real cohort subjects. :func:`demo_models` trains a VAE, a GAN and a
rectified-flow diffusion model (6 mm voxels, tiny networks: a few minutes on a 2-core CPU), samples
two volumes from each and writes a montage.
"""

from __future__ import annotations

from pathlib import Path

from medgen.io import save_scan
from medgen.io.atomic import safe_join
from medgen.models import load_model
from medgen.synthesize.generate import synthesize
from medgen.synthesize.save import save_samples
from medgen.viz import save_montage

# At least 16 channels at full resolution: PyTorch's oneDNN 3D convolution backward is many times
# slower for fewer input channels on CPU. With ``mean_image`` each model starts from the average training
# image (fixed), so samples are brain-shaped within ~100 steps; the networks learn the subject variation.
_DEMO_NETS = {
    "vae": {"family": "vae", "vae": {"channels": [16, 32, 32], "latent_channels": 3, "norm_num_groups": 8,
                                     "mean_image": True}},
    "gan": {"family": "gan", "gan": {"latent_dim": 64, "channels": [64, 32, 16, 16], "disc_channels": 16,
                                     "mean_image": True}},
    "rflow": {"family": "diffusion", "diffusion": {"channels": [16, 32, 32], "attention": [False] * 3,
                                                  "norm_num_groups": 8, "objective": "rflow", "mean_image": True}},
}
# Diffusion and VAE steps cost about twice a GAN step on CPU: they train for half the steps.
_STEP_SHARE = {"vae": 0.5, "gan": 1.0, "rflow": 0.5}


SHIPPED_BRAIN_GENERATORS = ("brain-vae", "brain-rflow", "brain-ldm", "brain-labels")


def demo_shipped(out: Path, *, overwrite: bool = False, sample_steps: int | None = None) -> dict[str, Path]:
    """Two samples (seed 0) of each shipped brain generator, saved under ``out/samples/<name>``, and
    ``shipped_generators.png``: two real held-out cohort subjects, then the samples (about a minute on
    2 cores). A label-conditioned generator (``brain-labels``) renders the two real subjects' label maps,
    written next to its samples as ``condition_<i>.nii.gz`` (what ``medgen synthesize --condition`` reads).

    Args:
        sample_steps: diffusion sampler steps (default: each model's own; fewer is a quicker look).

    Returns:
        ``{label: path}`` of the sample files, condition maps and the montage.
    """
    from medgen.data import brain_cohort
    from medgen.models.hub import shipped_models

    written: dict[str, Path] = {}
    subjects = brain_cohort(2, resolution=3, seed=2027)
    scans, titles = [s["image"] for s in subjects], [f"real subject {i}" for i in range(len(subjects))]
    for name in (n for n in SHIPPED_BRAIN_GENERATORS if n in shipped_models()):
        model = load_model(name)
        conditions = None
        if model.config.label_classes:
            conditions = [save_scan(s["label"], safe_join(out, f"samples/{name}/condition_{i}.nii.gz"),
                                    overwrite=overwrite) for i, s in enumerate(subjects)]
            written.update({f"{name} condition {i}": p for i, p in enumerate(conditions)})
        _sample(model, name, out, overwrite, written, scans, titles, sample_steps, conditions)
    written["montage"] = save_montage(scans, safe_join(out, "shipped_generators.png"), titles=titles,
                                      overwrite=overwrite)
    return written


def _sample(model, name: str, out: Path, overwrite: bool, written: dict, scans: list, titles: list,
            steps: int | None = None, conditions: list[Path] | None = None) -> None:
    """Two samples (seed 0; one per label map of ``conditions``) of ``model`` saved under
    ``out/samples/<name>``; paths, scans and titles appended."""
    kw = {"steps": steps} if steps and model.config.family in ("diffusion", "ldm") else {}
    if conditions:
        samples = [synthesize(model, 1, seed=i, condition=c, **kw)[0] for i, c in enumerate(conditions)]
    else:
        samples = synthesize(model, 2, seed=0, **kw)
    for i, path in enumerate(save_samples(samples, safe_join(out, f"samples/{name}"), overwrite=overwrite)):
        written[f"{name} sample {i}"] = path
    scans += samples
    titles += [f"{name}, labels of subject {i}" if conditions else f"{name} {i}" for i in range(len(samples))]


def demo_models(out: Path, *, steps: int = 150, overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
    """Train the three demo models under ``out/runs``, write samples and ``generative_samples.png``.

    ``steps`` is the GAN's step count; the VAE and the rectified-flow model train for half as many
    (the default, 150, takes about 4 minutes on 2 idle CPU cores).

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
            "train": {"steps": max(1, round(steps * _STEP_SHARE[name])), "batch_size": 4 if gan else 2,
                      "lr": 2e-4 if gan else 1e-3, "ema_decay": 0.99,
                      "betas": [0.0, 0.99] if gan else [0.9, 0.999], "lr_schedule": "constant",
                      "val_every": 0, "checkpoint_every": 0},
            # a stronger KL term than for autoencoding alone, so decoded prior samples are brain-like
            "loss": {"kl_weight": 1e-4} if name == "vae" else {},
        })
        run = safe_join(out, f"runs/{name}")
        result = train(cfg, run, device="cpu", progress=progress, resume=(run / "checkpoint").exists())
        model = load_model(result.model_dir or run / "model")
        written[f"{name} model"] = run / "model"
        _sample(model, name, out, overwrite, written, scans, titles)
    written["montage"] = save_montage(scans, safe_join(out, "generative_samples.png"), titles=titles,
                                      overwrite=overwrite)
    return written
