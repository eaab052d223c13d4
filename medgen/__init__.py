"""medgen: 3D generative models for medical-image augmentation and enhancement, built on MONAI."""

__version__ = "0.1.0"
