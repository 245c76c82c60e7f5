"""PtychoPINN: physics-informed neural-network reconstruction of X-ray ptychography."""

__version__ = "0.1.0"
