"""Many hosts over SSH: rollout across 3 hosts against 1, a host failure under load, and what
listing replicas on the hosts costs.

    ./dev bench multihost          (or .venv/bin/python bench/multihost.py; needs root)

Makes 3 network-namespace hosts with their own sshd (tests/support/netns.py), starts
`pilothouse serve` (SQLite in a temp dir, PILOTHOUSE_NODE_UNREACHABLE_AFTER=--after) and adds
the hosts as nodes through the API (host key trusted by fingerprint). The hosts are namespaces
of THIS 2-core machine: they share its CPUs, so "more hosts" adds SSH concurrency, not CPU.
Their capacity is raised in the store so 6 replicas of 0.5 CPU fit on one host. Then:

  0. listing cost: for --list-seconds, every node listed every second the old way (one
     `python3 -c LISTER` command per listing: a login shell and an interpreter start on the
     node each time) and the new way (one long-running listing channel per node); CPU seconds
     per second spent on the hosts (every process of the namespaces, reaped children included)
     and in this process (the SSH client), for the 3 hosts;
  a. rollout: a service of 6 replicas pinned to ONE host (node_labels) deployed (v1) and rolled
     to v2, then stopped; the same service spread over the 3 hosts deployed and rolled; times
     (deployment started -> completed), ratio 3 hosts / 1 host (target <= 1.2x);
  b. host failure: with clients sending GET / through the nginx router the whole time, one
     host's link is cut; the node watch marks it unreachable after --after seconds, its replicas
     failed, the replacement deployment starts 2 on the other hosts; time from the cut to the
     router config without the cut host and to the first answer of a replacement replica
     through the router (target <= after + readiness + 2 s), and failed requests after the
     router reload (target 0); then the link is restored and the stale replicas fenced.
Asserts nothing; prints figures. The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SHA  # noqa: E402
from tests.engine_support import CHILD_PYTHON, SAMPLE_APP, Client, ServerProcess, free_port  # noqa: E402
from tests.engine_support import cleanup as cleanup_dir  # noqa: E402
from tests.support.netns import Host, Hosts, namespace_hosts  # noqa: E402

from pilothouse import migrations  # noqa: E402
from pilothouse.drivers import remote, ssh  # noqa: E402
from pilothouse.drivers.transport import LocalTransport  # noqa: E402
from pilothouse.setup import _bootstrap  # noqa: E402

COMMAND = f"{CHILD_PYTHON} {SAMPLE_APP} --host {{host}} --port {{port}}"


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def host_cpu(hosts: list[Host]) -> float:
    """CPU seconds used so far by every process in the hosts' namespaces (reaped children
    included: a command's CPU lands in its sshd session process when it ends)."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for host in hosts:
        pids = subprocess.run(
            ["ip", "netns", "pids", host.netns], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in rest[11:15])
            except (OSError, ValueError, IndexError):
                pass
    return total / tick


async def listing_cost(hosts: Hosts, duration: float) -> list[tuple[str, float, float, int]]:
    """(way, host CPU s/s, client CPU s/s, listings) for each way of listing every second."""
    transports = [ssh.SSHTransport(h.access()) for h in hosts]
    listers = [remote.Lister(t, None) for t in transports]
    for t in transports:  # connect first: the connection is not what is measured
        await t.run(["true"])
    out = []
    try:
        for way in ("command per listing", "one listing channel"):
            await asyncio.sleep(1.0)
            cpu0, me0, t0, count = host_cpu(hosts), time.process_time(), time.monotonic(), 0
            while time.monotonic() - t0 < duration:
                began = time.monotonic()
                if way == "command per listing":
                    await asyncio.gather(*(remote.running(t) for t in transports))
                else:
                    await asyncio.gather(*(lister.list() for lister in listers))
                count += len(transports)
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
            await asyncio.sleep(0.5)  # let the last commands be reaped
            elapsed = time.monotonic() - t0
            out.append(
                (
                    way,
                    (host_cpu(hosts) - cpu0) / elapsed,
                    (time.process_time() - me0) / elapsed,
                    count,
                )
            )
    finally:
        for lister in listers:
            await lister.close()
        for t in transports:
            await t.close()
    return out


class Requests:
    """Threads sending GET / through the router on keep-alive connections, recording
    (when it was sent, ok, pid) per request; one retry of a reused connection closed by a
    reload; 5 s client timeout."""

    def __init__(self, port: int, threads: int = 8) -> None:
        self.port = port
        self.rows: list[tuple[float, bool, int]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _once(self, conn: http.client.HTTPConnection) -> int:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return int(json.loads(body)["pid"])

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            reused = conn is not None
            began = time.monotonic()
            conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                try:
                    pid = self._once(conn)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    if not reused:
                        raise
                    pid = self._once(conn)
                row = (began, True, pid)
            except Exception as exc:
                conn.close()
                conn = None
                row = (began, False, 0)
                with self.lock:
                    if len(self.errors) < 5:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
            with self.lock:
                self.rows.append(row)

    def __enter__(self) -> Requests:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)


def service(client: Client, name: str, env: str, router_port: int) -> None:
    body = {
        "environment": env,
        "name": name,
        "command": COMMAND,
        "target_replicas": 6,
        "resources": {"cpu_cores": 0.5, "memory_mb": 512},
        "driver_config": {
            "router": "nginx",
            "router_port": router_port,
            "drain_seconds": 0.2,
            "grace_seconds": 5,
        },
        "health_check": {"path": "/health", "timeout": 30, "interval": 0.05},
    }
    svc = client.ok("POST", "/services", 201, json=body)
    for version in ("v1", "v2"):
        art = {"service": svc["id"], "version": version, "commit_sha": SHA}
        client.ok("POST", "/artifacts", 201, json=art)


def deploy(client: Client, name: str, version: str) -> float:
    dep = client.wait(client.deploy(name, version)["id"], timeout=300)
    assert dep["status"] == "success", dep
    return seconds(dep["started_at"], dep["completed_at"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--after", type=float, default=3.0, help="node_unreachable_after, s")
    parser.add_argument("--list-seconds", type=float, default=10.0)
    args = parser.parse_args()
    load0 = os.getloadavg()

    with namespace_hosts(3) as hosts, tempfile.TemporaryDirectory() as tmp:
        print(f"3 namespace hosts: {', '.join(h.address for h in hosts)}")
        cost = asyncio.run(listing_cost(hosts, args.list_seconds))

        data_dir = Path(tmp) / "data"
        db_file = f"{tmp}/bench.db"
        url = f"sqlite:///{db_file}"
        migrations.upgrade(url)
        token = asyncio.run(_bootstrap(url, "bench"))
        assert token
        env = {
            **os.environ,
            "PILOTHOUSE_DATA_DIR": str(data_dir),
            "PILOTHOUSE_DATABASE_URL": url,
            "PILOTHOUSE_TEST_MARK": str(data_dir),
            "PILOTHOUSE_NODE_UNREACHABLE_AFTER": str(args.after),
        }
        server = ServerProcess(env).start()
        try:
            client = Client(server.url, token)
            ids = {}
            for host in hosts:
                labels = {"pool": "web", **({"solo": "yes"} if host.name == "h1" else {})}
                body = {
                    "name": host.name,
                    "address": host.address,
                    "private_key": hosts.private_key,
                    "trust": host.fingerprint,
                    "labels": labels,
                }
                ids[host.name] = client.ok("POST", "/nodes", 201, json=body)["id"]
            with sqlite3.connect(db_file) as conn:  # 6 x 0.5 CPU must fit on one host
                capacity = json.dumps({"cpu_cores": 16, "memory_mb": 65536, "storage_gb": 100})
                conn.execute("UPDATE nodes SET capacity = ? WHERE transport = 'ssh'", (capacity,))
            client.ok(
                "POST",
                "/environments",
                201,
                json={
                    "name": "one",
                    "driver": "process",
                    "config": {"node_labels": {"solo": "yes"}},
                },
            )
            client.ok(
                "POST",
                "/environments",
                201,
                json={
                    "name": "three",
                    "driver": "process",
                    "config": {"node_labels": {"pool": "web"}},
                },
            )
            solo_port, spread_port = free_port(), free_port()
            service(client, "solo", "one", solo_port)
            service(client, "spread", "three", spread_port)

            print("rollout: 6 replicas on one host")
            one = (deploy(client, "solo", "v1"), deploy(client, "solo", "v2"))
            where = {r["node_id"] for r in client.replicas("solo")}
            assert where == {ids["h1"]}, where
            stop = client.ok("POST", "/services/solo/stop", 202, json={})
            client.wait(stop["deployment_id"], timeout=120)
            print("rollout: 6 replicas over three hosts")
            three = (deploy(client, "spread", "v1"), deploy(client, "spread", "v2"))
            spread = sorted(
                sum(1 for r in client.replicas("spread") if r["node_id"] == i) for i in ids.values()
            )

            print(f"host failure: cutting h3 ({hosts[2].address}) under load")
            cut_id = ids["h3"]
            before = {r["id"] for r in client.replicas("spread")}
            conf_dir = data_dir / "nginx" / "services"
            marks: dict[str, float] = {}
            replacements: set[int] = set()
            with Requests(spread_port) as load:
                time.sleep(1.0)
                t_cut = time.monotonic()
                hosts[2].cut()
                while time.monotonic() - t_cut < 60 and "served" not in marks:
                    now = time.monotonic()
                    if "unreachable" not in marks:
                        node = client.ok("GET", "/nodes/h3")
                        if node["status"] == "unreachable":
                            marks["unreachable"] = now
                    if "router" not in marks:
                        text = "".join(p.read_text() for p in conf_dir.glob("*.conf"))
                        if "unreachable" in marks and hosts[2].address not in text:
                            marks["router"] = now
                    if "replaced" not in marks:
                        live = client.replicas("spread")
                        if len(live) == 6 and all(r["node_id"] != cut_id for r in live):
                            marks["replaced"] = now
                            replacements = {r["pid"] for r in live if r["id"] not in before}
                    if replacements and "served" not in marks:
                        with load.lock:
                            if any(ok and pid in replacements for _, ok, pid in load.rows):
                                first = min(
                                    t for t, ok, pid in load.rows if ok and pid in replacements
                                )
                                marks["served"] = first
                    time.sleep(0.1)
                time.sleep(1.0)
            rows = load.rows
            new_ids = [r["id"] for r in client.replicas("spread") if r["id"] not in before]
            ready = []
            for rid in new_ids:
                hist = client.ok("GET", f"/history/replica/{rid}")
                at = {h["to_status"]: h["changed_at"] for h in hist}
                if "starting" in at and "running" in at:
                    ready.append(seconds(at["starting"], at["running"]))
            hosts[2].restore()
            t_restore = time.monotonic()
            back = fenced = float("nan")
            while time.monotonic() - t_restore < 40:
                if back != back and client.ok("GET", "/nodes/h3")["status"] == "ready":
                    back = time.monotonic() - t_restore
                # The hosts share this machine's processes: a local listing sees h3's shims.
                left_on_h3 = asyncio.run(remote.running(LocalTransport(), uuid.UUID(cut_id)))
                if back == back and not left_on_h3:
                    fenced = time.monotonic() - t_restore
                    break
                time.sleep(0.2)
            notes = [
                line[:300]
                for log in data_dir.glob("serve-*.log")
                for line in log.read_text(errors="replace").splitlines()
                if "stray" in line or "on_node_returned" in line or "node answers" in line
            ]
        finally:
            server.stop()
            cleanup_dir(data_dir)

    load1 = os.getloadavg()
    reload_at = marks.get("router", float("inf"))
    failed_before = sum(1 for t, ok, _ in rows if not ok and t < reload_at)
    failed_after = sum(1 for t, ok, _ in rows if not ok and t >= reload_at)
    readiness = max(ready) if ready else float("nan")
    budget = args.after + readiness + 2.0

    def since(name: str) -> str:
        return f"{marks[name] - t_cut:.2f} s" if name in marks else "not reached"

    print()
    print("| figure | value | baseline (same run) | ratio / target |")
    print("|---|---|---|---|")
    for way, host, me, count in cost:
        print(
            f"| listing 3 hosts every second: {way} | {host:.3f} CPU s/s on the hosts, "
            f"{me:.3f} in the client | - | {count} listings |"
        )
    print(
        f"| first deploy, 6 replicas over 3 hosts | {three[0]:.2f} s | 6 on one host "
        f"{one[0]:.2f} s | {three[0] / one[0]:.3f}x (target <= 1.2x) |"
    )
    print(
        f"| rollout v1 -> v2, 6 replicas over 3 hosts (spread {spread}) | {three[1]:.2f} s | "
        f"6 on one host {one[1]:.2f} s | {three[1] / one[1]:.3f}x (target <= 1.2x) |"
    )
    print(
        f"| host cut -> node unreachable (after = {args.after:g} s) | "
        f"{since('unreachable')} | - | - |"
    )
    print(f"| host cut -> 6 running on the other hosts | {since('replaced')} | - | - |")
    print(f"| host cut -> router config without the host | {since('router')} | - | - |")
    print(
        f"| host cut -> a replacement replica serves through the router | {since('served')} | "
        f"after + readiness ({readiness:.2f} s, slowest replacement) + 2 s = {budget:.2f} s | "
        f"target <= {budget:.2f} s |"
    )
    print(
        f"| requests through the router during the failure | {sum(1 for r in rows if r[1]):,} ok, "
        f"{failed_before} failed (sent before the router reload), {failed_after} failed (sent "
        "after it) | - | target 0 after |"
    )
    print(
        f"| link restored -> h3 ready / its stale replicas stopped (fenced) | {back:.2f} s / "
        f"{fenced:.2f} s | - | {len(left_on_h3)} left (target 0) |"
    )
    print(f"\nload average before {load0[0]:.2f}, after {load1[0]:.2f} (2 cores, shared machine)")
    for line in notes:
        print(line)
    if load.errors:
        print("errors:", load.errors)
    print(
        "mean readiness of the replacements:", f"{statistics.mean(ready):.2f} s" if ready else "-"
    )


if __name__ == "__main__":
    main()
