"""Enhancement of real scans: denoising and through-plane super-resolution.

Modules (import the one you need; this package imports nothing at import time):

- :mod:`medgen.enhance.noise`: Rician / Gaussian / Poisson-Gaussian / low-dose CT simulation, noise-level
  estimation, Anscombe transform, Rician bias correction.
- :mod:`medgen.enhance.training_data`: built-in training volumes sampled on any device (training scripts).
- :mod:`medgen.enhance.self_supervised`: Neighbor2Neighbor training on the scan itself.
- :mod:`medgen.enhance.inference`: sliding-window whole-volume inference (MONAI).
- :mod:`medgen.enhance.pretrained`: the shipped denoiser and super-resolution networks by name or folder
  (their networks, :class:`~medgen.models.enhancers.Denoiser3d` and
  :class:`~medgen.models.enhancers.SliceSR2d`, live in :mod:`medgen.models`).
- :mod:`medgen.enhance.denoise`: :func:`~medgen.enhance.denoise.denoise`, the task API.
- :mod:`medgen.enhance.diffusion_denoise`: posterior sampling with a model-zoo diffusion model, with an
  uncertainty map.
- :mod:`medgen.enhance.superres`: :func:`~medgen.enhance.superres.superres`: pretrained, GAN-refined and
  self-supervised (SMORE-like) SR with exact geometry.
"""
