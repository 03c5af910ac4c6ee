"""Running a scanner for `scan run`: the argument list is a pure function (tested as an exact
list); running it is `run_scanner`, with a timeout and the process killed on every failure path.

- sast: `python -m bandit -r DIR -f json -o OUT -q` (exit 1 means "issues found", not failure);
- dependency: `python -m pip_audit -r REQUIREMENTS --no-deps -f json -o OUT --progress-spinner off`
  (exit 1 means "vulnerabilities found"). pip-audit asks a vulnerability service (PyPI's JSON API
  by default, or OSV); dependencies it cannot look up are reported as skipped, and a scan with
  skipped dependencies is partial (it resolves nothing).
Both come from the `scanners` extra (`pip install 'pilothouse[scanners]'`), run by the same
Python as pilothouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TOOLS = {"sast": ("bandit", "bandit"), "dependency": ("pip-audit", "pip_audit")}
#: Exit codes that mean "ran and found something" rather than failure.
FOUND = {"bandit": {0, 1}, "pip-audit": {0, 1}}


class ScanFailed(Exception):
    pass


def command(scan_type: str, source: str, out: Path, *, python: str = sys.executable) -> list[str]:
    """The scanner's argument list for a scan type and a source path."""
    if scan_type == "sast":
        return [python, "-m", "bandit", "-r", source, "-f", "json", "-o", str(out), "-q"]
    if scan_type == "dependency":
        return [
            python, "-m", "pip_audit", "-r", source, "--no-deps", "-f", "json",
            "-o", str(out), "--progress-spinner", "off",
        ]  # fmt: skip
    raise ScanFailed(f"scan type {scan_type} cannot be run here (only sast and dependency)")


def installed(scan_type: str) -> bool:
    tool = TOOLS.get(scan_type)
    return tool is not None and importlib.util.find_spec(tool[1]) is not None


def check_source(scan_type: str, source: str) -> None:
    """The path a scan reads must exist: a directory (sast) or a requirements file."""
    path = Path(source)
    if scan_type == "sast" and not path.is_dir():
        raise ScanFailed(f"source directory {source} does not exist")
    if scan_type == "dependency" and not path.is_file():
        raise ScanFailed(f"requirements file {source} does not exist")


@dataclass(frozen=True)
class Outcome:
    report: Path
    tool: str
    exit_code: int


async def run_scanner(scan_type: str, source: str, workdir: Path, timeout: float) -> Outcome:
    """Run the scanner for `scan_type` on `source`; its JSON report lands in `workdir`."""
    if not installed(scan_type):
        name = TOOLS.get(scan_type, (scan_type,))[0]
        raise ScanFailed(f"{name} is not installed (pip install 'pilothouse[scanners]')")
    check_source(scan_type, source)
    tool = TOOLS[scan_type][0]
    out = workdir / f"{tool}.json"
    argv = command(scan_type, source, out)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTHOUSE_")}
    proc = subprocess.Popen(  # the stdlib's Popen closes inherited descriptors (engine note)
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        loop = asyncio.get_running_loop()
        _, err = await asyncio.wait_for(
            loop.run_in_executor(None, proc.communicate), timeout=timeout
        )
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise ScanFailed(f"{tool} did not finish within {timeout:.0f}s") from None
    code = proc.returncode
    if code not in FOUND[tool] or not out.exists():
        tail = (err or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise ScanFailed(f"{tool} exited with {code}: {' | '.join(tail)}"[:1000])
    return Outcome(out, tool, code)
