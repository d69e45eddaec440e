"""The RNON networks and the stack network; importing this package registers them."""

from rnon_engine.nn.networks.discriminator import Discriminator, DiscriminatorConfig
from rnon_engine.nn.networks.optimize import OptimizeConfig, OptimizeGenerator
from rnon_engine.nn.networks.repair import RepairConfig, RepairGenerator
from rnon_engine.nn.networks.stack import StackConfig, StackRepairNet

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "OptimizeConfig",
    "OptimizeGenerator",
    "RepairConfig",
    "RepairGenerator",
    "StackConfig",
    "StackRepairNet",
]
