"""xnatd: XNAT's image-session intake pipeline as one daemon."""

__version__ = "0.1.0"
