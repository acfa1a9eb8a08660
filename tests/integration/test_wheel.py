"""The project's own build makes a platform wheel that carries the compiled parts (the byte scans,
binary COPY's interleave), and they load from an installation of that wheel (not the checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_compiled_scans(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "conduitd", source / "conduitd",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("conduitd-*.whl")
    assert "-none-any" not in wheel.name  # a platform wheel: it holds compiled code
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert f"conduitd/core/_bytescan{suffix}" in names
    assert f"conduitd/destinations/postgres/_interleave{suffix}" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--target", str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    probe = ("import conduitd.core.bytescan as b, conduitd.core._bytescan as c; "
             "import conduitd.destinations.postgres.copy_binary as e, pyarrow as pa; "
             "print(b.COMPILED, c.__file__, b.digit_run(b'x' + b'1' * 19, 19), b.opens_over(b'{[{', 2), "
             "e._interleave.__file__, e.encode_copy_binary(pa.table({'a': ['xy']}), ['text']).hex())")
    shown = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
                           capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path)
    compiled, location, run, deep, interleave, encoded = shown.stdout.split()
    assert compiled == "True" and location.startswith(str(target)) and run == "True" and deep == "True"
    assert interleave.startswith(str(target))
    assert bytes.fromhex(encoded) == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\x00\x01\x00\x00\x00\x02xy\xff\xff"
