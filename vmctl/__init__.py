"""vmctl: safe maintenance of Azure VM fleets. Imports nothing heavy: start-up time matters."""

__version__ = "0.1.0"
