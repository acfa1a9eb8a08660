"""The package's compiled parts (everything else is in pyproject.toml): the byte scans of
conduitd.core.bytescan and the row interleaving of PostgreSQL's binary COPY (copy_binary).
Optional: where they do not compile, the package installs without them and the pure-Python twins
do the same work, slower."""

from setuptools import Extension, setup

_OPTIONS = {"optional": True, "extra_compile_args": ["-O3", "-std=c99"]}

setup(ext_modules=[
    Extension("conduitd.core._bytescan", ["conduitd/core/_bytescan.c"], **_OPTIONS),
    Extension("conduitd.destinations.postgres._interleave", ["conduitd/destinations/postgres/_interleave.c"],
              **_OPTIONS),
])
