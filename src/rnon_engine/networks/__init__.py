"""The four RNON networks; importing this package registers them."""

from rnon_engine.networks.discriminator import Discriminator, DiscriminatorConfig
from rnon_engine.networks.optimize import OptimizeConfig, OptimizeGenerator
from rnon_engine.networks.repair import RepairConfig, RepairGenerator

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "OptimizeConfig",
    "OptimizeGenerator",
    "RepairConfig",
    "RepairGenerator",
]
