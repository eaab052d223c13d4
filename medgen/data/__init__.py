"""Built-in data: one real brain (MNI152 2009) and a CT phantom, as labelled MONAI-ready cohorts.

Everything comes out as a MONAI list of dicts with the same keys, whatever the source:

- ``"image"``: MetaTensor ``(1, X, Y, Z)`` float32 from the generators; a file path from
  :func:`load_folder` (``load=True`` gives MetaTensors);
- ``"label"``: MetaTensor uint8 ``(1, X, Y, Z)`` (brain: 0 background, 1 CSF, 2 GM, 3 WM; CT: see
  :mod:`medgen.data.phantom`) or its path;
- ``"subject_id"``: ``str``;
- CT only: ``"lesion_mask"`` (instances), ``"boxes"`` float32 ``(N, 6)`` voxel ``xyzxyz`` (MONAI
  ``StandardMode``, end exclusive), ``"box_labels"`` int64 ``(N,)``.

>>> from medgen.data import brain_cohort, ct_cohort, export_dataset, load_folder    # doctest: +SKIP
>>> train = brain_cohort(20, resolution=3, seed=0, contrast="random")             # doctest: +SKIP
>>> items = export_dataset("data/brains", n_subjects=20)   # same subjects, as files  # doctest: +SKIP
>>> load_folder("data/brains")[0]["image"]                                          # doctest: +SKIP
'data/brains/images/sub-000.nii.gz'
"""

from medgen.data.cohort import SimulatedDataset, brain_cohort, simulate_subject, subject_seed
from medgen.data.export import export_dataset
from medgen.data.folder import load_folder
from medgen.data.mni152 import mni152, mni152_files
from medgen.data.phantom import ct_cohort, ct_phantom

__all__ = [
    "mni152",
    "mni152_files",
    "simulate_subject",
    "brain_cohort",
    "subject_seed",
    "SimulatedDataset",
    "ct_phantom",
    "ct_cohort",
    "load_folder",
    "export_dataset",
]
