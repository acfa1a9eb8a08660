"""The package's one compiled part (everything else is in pyproject.toml): the byte scans of
conduitd.core.bytescan. Optional: where it does not compile, the package installs without it and
the pure-Python twins do the same work, slower."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("conduitd.core._bytescan", ["conduitd/core/_bytescan.c"], optional=True,
                             extra_compile_args=["-O3", "-std=c99"])])
