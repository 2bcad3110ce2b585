"""sealdrop: a minimal anonymous dropbox whose uploads are sealed to an offline reviewer."""

__version__ = "0.1.0"
