"""A small OCI image of examples/sampleapp.py for the container tests and bench, built offline.

No registry is reachable here, so the image is made from this host's own Debian python3.11:
the interpreter, its standard library (without tests, tkinter, idle...) and the shared
libraries `ldd` names, plus the sample app, tarred and `podman import`ed (~50 MB, a few
seconds). The image is named by a hash of its inputs and kept in podman's storage, so it is
built once and found again by every later run (`image exists`: milliseconds). `variant`
builds another image (a different id) from the same files, for rolling to a new image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sampleapp.py"
PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
SKIP = {"test", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo", "pydoc_data"}
BUILDER = "1"  # bump when the rootfs recipe changes
CONF = (
    "[containers]\n"
    'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
    '\n[engine]\nruntime = "runc"\n'
)


class Unavailable(RuntimeError):
    """podman (or the host python the image is made from) is not there."""


def containers_conf() -> Path:
    path = Path(tempfile.gettempdir()) / "pilothouse-test-containers.conf"
    if not path.exists() or path.read_text() != CONF:
        path.write_text(CONF)
    return path


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(containers_conf())}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=engine_env(), check=check
    )


def _libraries(files: list[Path]) -> set[Path]:
    found: set[Path] = set()
    for path in files:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for word in out.split():
            if word.startswith("/"):
                found.add(Path(word))
    return found


def _rootfs_tar(target: Path) -> None:
    binaries = [PYTHON, *sorted((STDLIB / "lib-dynload").glob("*.so"))]
    with tarfile.open(target, "w") as tar:
        for path in sorted({PYTHON, *_libraries(binaries)}):  # lib-dynload: with the stdlib
            tar.add(os.path.realpath(path), arcname=str(path).lstrip("/"))
        for entry in sorted(STDLIB.iterdir()):
            if entry.name in SKIP or entry.name.startswith(("config-", "site-", "dist-")):
                continue
            tar.add(entry, arcname=str(entry).lstrip("/"))
        link = tarfile.TarInfo("usr/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, "python3.11"
        tar.addfile(link)
        tar.add(SAMPLE, arcname="app/sampleapp.py")
        for folder in ("tmp", "data", "etc"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)


def image(variant: str = "1") -> tuple[str, str]:
    """(reference, digest) of the sample image `variant`, built when not present yet."""
    if shutil.which("podman") is None or not PYTHON.exists():
        raise Unavailable("podman or /usr/bin/python3.11 is not installed")
    key = hashlib.sha256(SAMPLE.read_bytes() + BUILDER.encode()).hexdigest()[:12]
    ref = f"localhost/pilothouse-sample:{key}-{variant}"
    if podman("image", "exists", ref, check=False).returncode != 0:
        with tempfile.TemporaryDirectory() as folder:
            tar = Path(folder) / "rootfs.tar"
            _rootfs_tar(tar)
            done = podman(
                "import",
                "--change",
                'CMD ["/usr/bin/python3", "/app/sampleapp.py", "--host", "0.0.0.0"]',
                "--change",
                f"LABEL pilothouse.sample.variant={variant}",
                str(tar),
                ref,
                check=False,
            )
            if done.returncode != 0:
                raise Unavailable(f"podman import failed: {done.stderr.strip()[-300:]}")
    digest = podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    return ref, f"sha256:{digest.removeprefix('sha256:')}"
