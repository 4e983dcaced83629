"""Flow45: a passive store of truth about workflow task instances."""

__version__ = "0.1.0"
