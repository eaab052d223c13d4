"""Synthesis: draw new volumes from a trained model, in the training data's units and space.

>>> model = medgen.load_model("runs/brain3mm_gan/model")                       # doctest: +SKIP
>>> scans = synthesize(model, 4, seed=0)          # list of MetaTensor (C, X, Y, Z)  # doctest: +SKIP
>>> save_samples(scans, "samples/")                                                # doctest: +SKIP

Every sample is marked synthetic (model, seed, sampler, steps in its provenance) before it is saved.
"""

from medgen.synthesize.generate import parse_condition, synthesize
from medgen.synthesize.save import save_samples

__all__ = ["synthesize", "save_samples", "parse_condition"]
