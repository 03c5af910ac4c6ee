"""Certificates benchmark: 1,000 TLS endpoints checked by real handshakes, against
blackbox_exporter's `tls` probe on the same endpoints; ACME issuance from pebble (HTTP-01)
against pebble's own validation delay.

    ./dev bench certs          (or .venv/bin/python bench/certs.py)

1. One server process (asyncio) listens on 1,000 loopback ports with a trustme certificate
   (`*.bench.test`, from a trustme CA).
2. pilothouse: 1,000 tracked certificates in a SQLite store, one `check` pass (the worker's
   path: handshake, parse, status, alerts bookkeeping, one commit). Reports wall time (target
   < 10 s) and this process's CPU per check.
3. blackbox_exporter (Debian's prometheus-blackbox-exporter) with a `tcp` + `tls: true` module
   trusting the same CA: 1,000 `/probe` requests, 50 at a time. Reports blackbox_exporter's
   own CPU per check (the client's CPU is not counted, which favours blackbox_exporter).
   Target: pilothouse's CPU per check within 2x of it.
4. ACME: pebble (Debian's `pebble`) and pebble-challtestsrv as its DNS; pilothouse's API
   serves the HTTP-01 answers. Issues `--issuances` certificates with pebble's random
   validation delay on (its log says how long it slept) and as many with PEBBLE_VA_NOSLEEP=1.
   Reports issuance time against the delay.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import trustme
import uvicorn

from pilothouse import migrations
from pilothouse.access import Principal
from pilothouse.app import create_app
from pilothouse.certificates import issue, service
from pilothouse.config import Settings
from pilothouse.core.clock import utcnow
from pilothouse.core.crypto import load_keyring
from pilothouse.core.db import Database
from pilothouse.setup import ensure_master_key
from pilothouse.users import service as users

TLS_SERVER = textwrap.dedent(
    """
    import asyncio, ssl, sys

    async def main(first, count, cert, key):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        async def handle(reader, writer):
            try:
                await reader.read(1)
            except Exception:
                pass
            writer.close()

        for port in range(first, first + count):
            await asyncio.start_server(handle, "127.0.0.1", port, ssl=context, backlog=512)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_range(count: int) -> int:
    """The first of `count` consecutive free ports (from 20000 up)."""
    first = 20000
    while first < 60000:
        try:
            socks = []
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            first += count
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port range")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def run_pilothouse(first: int, count: int, ca_file: str, tmp: Path) -> dict[str, float]:
    url = f"sqlite:///{tmp}/certs.db"
    migrations.upgrade(url)
    db = Database(url)
    async with db.session() as session:
        user, _ = await users.bootstrap_admin(session, "bench")
        admin = Principal(user.id, "bench", "admin")
        for i in range(count):
            await service.track(
                session, admin, host="127.0.0.1", port=first + i, server_name=f"e{i}.bench.test"
            )
    me = psutil.Process()
    start_cpu, start = cpu(me), time.perf_counter()
    checked = await service.check_due(db, utcnow(), 60, ca_file=ca_file)
    wall = time.perf_counter() - start
    used = cpu(me) - start_cpu
    async with db.session(write=False) as session:
        statuses = [c.status for c in await service.list_certificates(session, admin)]
    await db.dispose()
    return {
        "checked": checked,
        "active": statuses.count("active"),
        "wall": wall,
        "cpu": used,
    }


def run_blackbox(first: int, count: int, ca_file: str, tmp: Path) -> dict[str, float]:
    port = free_port()
    (tmp / "blackbox.yml").write_text(
        "modules:\n  tls:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      tls: true\n"
        f"      tls_config:\n        ca_file: {ca_file}\n        server_name: e0.bench.test\n"
    )
    blackbox = subprocess.Popen(
        [
            shutil.which("prometheus-blackbox-exporter") or "prometheus-blackbox-exporter",
            f"--config.file={tmp}/blackbox.yml",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def probe(i: int) -> bool:
        target = f"127.0.0.1:{first + i}"
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/probe?module=tls&target={target}", timeout=30
        ) as answer:
            return "probe_success 1" in answer.read().decode()

    try:
        wait_port(port)
        proc = psutil.Process(blackbox.pid)
        probe(0)  # warm
        start_cpu, start = cpu(proc), time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            ok = sum(pool.map(probe, range(count)))
        wall = time.perf_counter() - start
        used = cpu(proc) - start_cpu
    finally:
        blackbox.terminate()
        blackbox.wait(20)
    return {"checked": count, "active": ok, "wall": wall, "cpu": used}


def run_acme(count: int, tmp: Path) -> dict[str, list[float]]:
    """Issuances with pebble's validation delay on, then off; seconds each, and the delays."""
    dns_port, mgmt_port = free_port(), free_port()
    challtest = subprocess.Popen(
        [
            shutil.which("pebble-challtestsrv") or "pebble-challtestsrv",
            "-dns01",
            f"127.0.0.1:{dns_port}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            f"127.0.0.1:{mgmt_port}",
            "-defaultIPv6",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    data = tmp / "acme"
    data.mkdir()
    ensure_master_key(data / "master.key")
    url = f"sqlite:///{data}/pilothouse.db"
    migrations.upgrade(url)
    api_port = free_port()
    settings = Settings(data_dir=data, database_url=url, role="api", port=api_port)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=api_port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp / "pebble.pem"))
    leaf.private_key_pem.write_to_path(str(tmp / "pebble.key"))
    ca.cert_pem.write_to_path(str(tmp / "pebble-ca.pem"))
    results: dict[str, list[float]] = {"delayed": [], "delays": [], "nosleep": []}
    try:
        wait_port(api_port)
        for mode in ("delayed", "nosleep"):
            pebble_port = free_port()
            config = {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{pebble_port}",
                    "managementListenAddress": f"127.0.0.1:{free_port()}",
                    "certificate": str(tmp / "pebble.pem"),
                    "privateKey": str(tmp / "pebble.key"),
                    "httpPort": api_port,
                    "tlsPort": free_port(),
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
            (tmp / "pebble.json").write_text(json.dumps(config))
            env = {**os.environ, "PEBBLE_WFE_NONCEREJECT": "0"}
            if mode == "nosleep":
                env["PEBBLE_VA_NOSLEEP"] = "1"
            log = tmp / f"pebble-{mode}.log"
            with open(log, "wb") as out:
                pebble = subprocess.Popen(
                    [
                        shutil.which("pebble") or "pebble",
                        "-config",
                        str(tmp / "pebble.json"),
                        "-dnsserver",
                        f"127.0.0.1:{dns_port}",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                try:
                    wait_port(pebble_port)
                    config_ = issue.AcmeConfig(
                        directory_url=f"https://127.0.0.1:{pebble_port}/dir",
                        ca_file=str(tmp / "pebble-ca.pem"),
                    )
                    for i in range(count):
                        start = time.perf_counter()
                        asyncio.run(_issue(url, data, config_, f"{mode}{i}.bench.test"))
                        results[mode].append(time.perf_counter() - start)
                finally:
                    pebble.terminate()
                    pebble.wait(10)
            if mode == "delayed":
                # pebble validates each challenge from several vantage points at once, each
                # after its own random sleep: an issuance waits for the longest of them.
                sleeps = [float(m) for m in re.findall(r"Sleeping for ([0-9.]+)", log.read_text())]
                per = max(len(sleeps) // max(count, 1), 1)
                results["delays"] = [max(sleeps[i : i + per]) for i in range(0, len(sleeps), per)][
                    :count
                ]
    finally:
        server.should_exit = True
        thread.join(10)
        challtest.terminate()
        challtest.wait(10)
    return results


async def _issue(url: str, data: Path, config: issue.AcmeConfig, name: str) -> None:
    db = Database(url)
    try:
        keyring = load_keyring(None, data / "master.key")
        got = await issue.obtain(db, keyring, config, [name])
        assert got.fields["sans"] == [name]
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--issuances", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ca = trustme.CA()
        leaf = ca.issue_cert("*.bench.test")
        leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp / "both.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(tmp / "key.pem"))
        ca_file = str(tmp / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        first = free_range(args.endpoints)
        (tmp / "server.py").write_text(TLS_SERVER)
        server = subprocess.Popen(
            [
                sys.executable,
                str(tmp / "server.py"),
                str(first),
                str(args.endpoints),
                str(tmp / "cert.pem"),
                str(tmp / "key.pem"),
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert server.stdout is not None
            server.stdout.readline()  # "ready"
            print(f"pilothouse: {args.endpoints} TLS endpoints, one check pass")
            ours = asyncio.run(run_pilothouse(first, args.endpoints, ca_file, tmp))
            theirs: dict[str, float] | None = None
            if shutil.which("prometheus-blackbox-exporter"):
                print("blackbox_exporter: the same endpoints, tls module")
                theirs = run_blackbox(first, args.endpoints, ca_file, tmp)
            else:
                print("prometheus-blackbox-exporter is not installed: no baseline")
        finally:
            server.terminate()
            server.wait(10)
        acme: dict[str, list[float]] | None = None
        if shutil.which("pebble") and shutil.which("pebble-challtestsrv"):
            print(f"ACME: {args.issuances} issuances from pebble with its delay, then without")
            acme = run_acme(args.issuances, tmp)
        else:
            print("pebble is not installed: no ACME figures")
    report(args.endpoints, ours, theirs, acme)


def report(
    count: int,
    ours: dict[str, float],
    theirs: dict[str, float] | None,
    acme: dict[str, list[float]] | None,
) -> None:
    per = ours["cpu"] / max(ours["checked"], 1) * 1000
    print()
    print("| figure | pilothouse | blackbox_exporter tls | ratio / target |")
    print("|---|---|---|---|")
    their_ok = f"{theirs['active']:,.0f}" if theirs else "-"
    print(
        f"| endpoints checked / valid | {ours['checked']:,.0f} / {ours['active']:,.0f} | "
        f"{count:,} / {their_ok} | - |"
    )
    their_wall = f"{theirs['wall']:.2f} s" if theirs else "-"
    print(f"| wall time | {ours['wall']:.2f} s | {their_wall} | target < 10 s |")
    if theirs:
        their_per = theirs["cpu"] / max(theirs["checked"], 1) * 1000
        print(
            f"| CPU ms per check | {per:.2f} | {their_per:.2f} | "
            f"{per / their_per:.2f}x (target <= 2x) |"
        )
    else:
        print(f"| CPU ms per check | {per:.2f} | not installed | - |")
    if acme:
        delayed, nosleep, delays = acme["delayed"], acme["nosleep"], acme["delays"]
        print()
        print("| ACME issuance (HTTP-01, pebble) | median s | runs | pebble's validation delay |")
        print("|---|---|---|---|")
        print(
            f"| with pebble's random delay | {statistics.median(delayed):.2f} | "
            f"{', '.join(f'{s:.2f}' for s in delayed)} | "
            f"{', '.join(f'{d:.1f}' for d in delays) or 'not logged'} s (longest sleep) |"
        )
        print(
            f"| PEBBLE_VA_NOSLEEP=1 | {statistics.median(nosleep):.2f} | "
            f"{', '.join(f'{s:.2f}' for s in nosleep)} | 0 |"
        )


if __name__ == "__main__":
    main()
