"""A local Azure Resource Manager look-alike, speaking ARM's wire protocol over HTTPS.

It stands alone: it imports nothing from the rest of vmctl, so it cannot share a bug with the
client it is used to test.
"""

from .fleet import Fleet, FleetError, load_fleet
from .server import Simulator, running

__all__ = ["Fleet", "FleetError", "Simulator", "load_fleet", "running"]
