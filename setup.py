"""Build hook: compiles the cffi libc layer (minirun/libc/declarations.py)."""

from setuptools import setup

setup(cffi_modules=["minirun/libc/declarations.py:ffibuilder"])
