"""medgen's generative model families on MONAI networks: VAE, GAN, pixel and latent diffusion.

Networks are plain ``nn.Module``s configured by :class:`ModelConfig`; training recipes live in
:mod:`medgen.training`, diffusion samplers in :mod:`medgen.models.sampling`, and finished models
are folders loaded with :func:`load_model`, as are the shipped enhancement and feature networks
(:class:`TaskNetwork`); :func:`list_models` describes the shipped ones.
"""

from medgen.models.build import build_network, size_multiple
from medgen.models.config import DiffusionConfig, GANConfig, ModelConfig, VAEConfig, from_dict, to_dict
from medgen.models.diffusion import DiffusionNet
from medgen.models.gan import Generator, build_discriminator
from medgen.models.hub import GenerativeModel, list_models, load_model
from medgen.models.normalization import Normalization
from medgen.models.task_network import TaskNetwork
from medgen.models.vae import VAE

__all__ = [
    "ModelConfig", "VAEConfig", "GANConfig", "DiffusionConfig", "from_dict", "to_dict",
    "VAE", "Generator", "build_discriminator", "DiffusionNet", "build_network", "size_multiple",
    "GenerativeModel", "TaskNetwork", "load_model", "list_models", "Normalization",
]
