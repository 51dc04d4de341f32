"""FUME: dual-gas (CO2 + CH4) optical gas imaging for rumen acidosis detection."""

__version__ = "0.1.0"
