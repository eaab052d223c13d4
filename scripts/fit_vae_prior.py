"""Refit the prior a trained VAE samples from on its own, with a low-rank Gaussian (``vae.prior_rank``).

A VAE model folder's prior is fitted to its training latents when the run ends (voxel by voxel unless
its config set ``vae.prior_rank``). This script re-encodes the run's training subjects (from the run
config in the folder, same normalisation), fits the prior with ``--rank`` principal components
(:meth:`medgen.models.vae.VAE.fit_prior`) and rewrites the folder in place (atomically): weights
unchanged, ``config.yaml`` with the new ``prior_rank``, the prior buffers added, and the command
appended to ``model_card.md`` and ``card.json``.

    python scripts/fit_vae_prior.py brain-vae --rank 64
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from medgen.io.atomic import atomic_path
from medgen.models.hub import model_folder
from medgen.models.normalization import Normalization
from medgen.models.vae import VAE
from medgen.training.config import config_dict, parse_config
from medgen.training.data import prepare_data


def refit(folder: Path, rank: int, command: str) -> None:
    """Refit the prior of the VAE folder ``folder`` with ``rank`` components, in place."""
    cfg = parse_config(yaml.safe_load((folder / "config.yaml").read_text()))
    if cfg.model.family != "vae":
        sys.exit(f"error: {folder}: a {cfg.model.family} model, not a VAE")
    cfg.model.vae.prior_rank = rank
    norm = Normalization.from_json(json.loads((folder / "normalization.json").read_text()))
    vae = VAE(cfg.model)
    state = load_file(str(folder / "model.safetensors"))
    state = {k: v for k, v in state.items() if k != "prior_basis"}
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"prior_basis"}:
        sys.exit(f"error: {folder}: weights do not match the config ({(unexpected or missing)[0]})")
    vae.eval()
    data = prepare_data(cfg, norm)
    with torch.no_grad():
        latents = [vae.encode(item["image"][None]) / vae.latent_scale for item in data.train]
        vae.fit_prior(latents)
    with atomic_path(folder, overwrite=True, is_dir=True) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "config.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
        note = (f"- prior: low-rank Gaussian over whole latents, {rank} components, fitted to "
                f"{len(latents)} training latents by `{command}`")
        (tmp / "model_card.md").write_text((tmp / "model_card.md").read_text().rstrip() + "\n" + note + "\n")
        if (tmp / "card.json").is_file():
            card = json.loads((tmp / "card.json").read_text())
            card.setdefault("training", {})["prior"] = {"rank": rank, "latents": len(latents), "command": command}
            (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"{folder}: prior refitted with {rank} components on {len(latents)} training latents")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="VAE model folder or shipped name")
    p.add_argument("--rank", type=int, default=64, help="principal components (0: voxel by voxel)")
    args = p.parse_args()
    refit(model_folder(args.model), args.rank, "python scripts/fit_vae_prior.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
