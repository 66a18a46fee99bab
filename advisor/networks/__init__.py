"""StyleGAN2 networks in plain PyTorch, laid out like NVlabs StyleGAN2-ADA.

``Generator(config).state_dict()`` and ``Discriminator(config).state_dict()`` have exactly the
keys and shapes (parameters and buffers) of NVlabs' ``G``/``G_ema`` and ``D`` built from the
same init kwargs (``GeneratorConfig.from_nvlabs_kwargs``), so an NVlabs state loads one-to-one
with ``load_state_dict(strict=True)``. Only unconditional networks (``c_dim=0``) are supported.

Numerics match NVlabs run in float32 (its CPU path, or ``force_fp32``); NVlabs on GPU runs the
highest ``num_fp16_res`` resolutions in float16, which advisor does not emulate.
"""

from advisor.networks.config import DiscriminatorConfig, GeneratorConfig
from advisor.networks.discriminator import Discriminator
from advisor.networks.generator import NOISE_MODES, Generator
from advisor.networks.latents import from_uint8, to_uint8, z_from_seeds

__all__ = [
    "NOISE_MODES",
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "from_uint8",
    "to_uint8",
    "z_from_seeds",
]
