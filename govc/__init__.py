"""govc: a git-compatible version-control service over gRPC."""

__version__ = "0.1.0"
