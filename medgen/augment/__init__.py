"""Augmentation that plugs into MONAI pipelines: artefact presets, consistent deformation, synthetic data.

Every transform is a MONAI transform (``RandomizableTransform``; array ``Foo`` and dictionary ``Food``
twins), honours ``set_random_state`` (so ``Compose``, ``set_determinism`` and MONAI's ``DataLoader``
worker seeding reach it), keeps ``MetaTensor`` metadata and records each call (with its seed) in the
applied-operations trace. Intensity transforms invert to the identity and spatial ones to their
inverse warp, so ``Invertd`` works through them.

>>> from monai.transforms import Compose
>>> from medgen.augment import RandDeformd, RandMRArtifactsd
>>> train = Compose([RandDeformd(["image", "label"], mode=["bilinear", "nearest"], prob=0.5),
...                  RandMRArtifactsd("image", prob=0.8)])
"""

from medgen.augment.ct_artifacts import RandCTArtifacts, RandCTArtifactsd
from medgen.augment.ct_noise import RandLowDoseCTNoise, RandLowDoseCTNoised
from medgen.augment.deform import RandDeform, RandDeformd
from medgen.augment.lesion import RandLesionInsertd
from medgen.augment.mixing import MixedDataset
from medgen.augment.mr_artifacts import RandMRArtifacts, RandMRArtifactsd
from medgen.augment.pool import SyntheticPoolDataset, pool_datalist, write_model_pool, write_pool
from medgen.augment.preset import segmentation_preset
from medgen.augment.synthetic_pair import RandSyntheticPaird
from medgen.augment.tissue_contrast import RandTissueContrast, RandTissueContrastd
from medgen.augment.torchio_artifact import RandTorchIOArtifact, RandTorchIOArtifactd
from medgen.augment.variation import RandGenerativeVariation, RandGenerativeVariationd

__all__ = [
    "RandMRArtifacts", "RandMRArtifactsd", "RandCTArtifacts", "RandCTArtifactsd",
    "RandLowDoseCTNoise", "RandLowDoseCTNoised", "RandTorchIOArtifact", "RandTorchIOArtifactd",
    "RandDeform", "RandDeformd", "SyntheticPoolDataset", "pool_datalist", "write_pool", "write_model_pool",
    "MixedDataset",
    "RandGenerativeVariation", "RandGenerativeVariationd", "RandSyntheticPaird", "RandLesionInsertd",
    "RandTissueContrast", "RandTissueContrastd", "segmentation_preset",
]
