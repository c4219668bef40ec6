"""textractd: document uploads over HTTP in, their text out."""

__version__ = "0.2.0"
