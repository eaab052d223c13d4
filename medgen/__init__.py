"""medgen: 3D generative models for medical-image augmentation and enhancement, built on MONAI."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy top-level API (keeps ``import medgen`` light): ``medgen.load_model``."""
    if name == "load_model":
        from medgen.models.hub import load_model

        return load_model
    raise AttributeError(f"module 'medgen' has no attribute {name!r}")
