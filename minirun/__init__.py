"""minirun: a teaching container runtime that makes real kernel objects."""

__version__ = "0.1.0"
OCI_VERSION = "1.0.2"
