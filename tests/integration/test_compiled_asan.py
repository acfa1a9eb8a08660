"""The compiled parts' own tests, run again against builds with AddressSanitizer: a read or write
outside a buffer, or of memory already freed, fails the run even where it happens not to crash.
(The interleave's first build kept pointers into an array it then grew: only a daemon with a
1,610-column table crashed, and only sometimes; AddressSanitizer reports it on every run.)"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = {
    "conduitd.core._bytescan": ROOT / "conduitd" / "core" / "_bytescan.c",
    "conduitd.destinations.postgres._interleave": ROOT / "conduitd" / "destinations" / "postgres" / "_interleave.c",
}
TESTS = ["tests/unit/test_bytescan.py", "tests/unit/test_copy_interleave.py", "tests/unit/test_copy_binary.py"]

DRIVER = """
import importlib.util, sys
for name, path in {modules!r}.items():
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
import conduitd.core.bytescan as scans
import conduitd.destinations.postgres.copy_binary as copy
assert scans._bytescan.__file__.startswith({build!r}) and copy._interleave.__file__.startswith({build!r})
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:benchmark", "-x", "-k", "not rate", *{tests!r}]))
"""


def _sanitizer_library() -> str:
    found = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True)
    path = found.stdout.strip()
    assert os.path.isabs(path) and os.path.exists(path), f"gcc has no AddressSanitizer runtime ({path!r})"
    return path


def test_the_compiled_parts_pass_their_tests_under_address_sanitizer(tmp_path: Path) -> None:
    library = _sanitizer_library()
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    modules = {}
    for name, source in EXTENSIONS.items():
        target = tmp_path / f"{name.rpartition('.')[2]}{suffix}"
        subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer", "-shared",
                        "-fPIC", f"-I{include}", str(source), "-o", str(target)], check=True, capture_output=True)
        modules[name] = str(target)
    env = {**os.environ, "LD_PRELOAD": library, "PYTHONMALLOC": "malloc",
           "ASAN_OPTIONS": f"detect_leaks=0:exitcode=86:log_path={tmp_path / 'asan'}"}
    driver = DRIVER.format(modules=modules, build=str(tmp_path), tests=TESTS)
    run = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    reports = "".join(path.read_text() for path in tmp_path.glob("asan.*"))  # what the sanitizer found
    assert run.returncode == 0 and not reports, (run.returncode, reports[:3000], run.stdout[-3000:], run.stderr[-3000:])
    assert "passed" in run.stdout
