"""Data contract, simulation and grouping of scan positions."""

from ptychopinn.data.types import PtychoData

__all__ = ["PtychoData"]
