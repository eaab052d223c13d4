"""Know what a generated or enhanced scan is worth: metrics, quality control and reports.

Modules (import the one you need; this package imports nothing at import time):

- :mod:`medgen.evaluate.features`: the 3D feature extractor behind FID/MMD (shipped self-supervised
  network, or a local MedicalNet/RadImageNet weights file) and :func:`~medgen.evaluate.features.fid`.
- :mod:`medgen.evaluate.distributions`: intensity-histogram distances and tissue volumes (mL).
- :mod:`medgen.evaluate.flow`: a RealNVP normalizing flow that scores how typical a patch is.
- :mod:`medgen.evaluate.qc`: out-of-distribution flags calibrated on real scans; per-region
  hallucination check of an enhancement.
- :mod:`medgen.evaluate.artifacts`: reference-free blur / ghosting / motion / intensity-scaling
  flags that need no fitting (``check_artifacts``, ``artifact_scores``, ``check_scan``; also
  importable from this package).
- :mod:`medgen.evaluate.privacy`: memorisation audit (nearest training scan of each synthetic scan).
- :mod:`medgen.evaluate.report`: a self-contained HTML report with figures.
- :mod:`medgen.evaluate.detection`: a CPU-sized MONAI RetinaNet and FROC / COCO detection scores.
- :mod:`medgen.evaluate.fidelity` and :mod:`medgen.evaluate.generation`: PSNR/SSIM/MAE in a mask;
  MMD and MS-SSIM diversity.
"""

_LAZY = {"artifact_scores": "artifacts", "check_artifacts": "artifacts", "check_scan": "artifacts"}


def __getattr__(name: str):
    """``from medgen.evaluate import check_artifacts`` without importing every module up front."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"medgen.evaluate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'medgen.evaluate' has no attribute {name!r}")
