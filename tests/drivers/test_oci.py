"""Engine-neutral container command lines (drivers/oci.py): exact argument lists, and the
parsers of the engines' answers."""

from __future__ import annotations

import json

import pytest

from pilothouse.drivers import oci

LABELS = {"pilothouse.service": "s1", "pilothouse.replica": "r1"}


def spec(**changes: object) -> oci.RunSpec:
    base: dict[str, object] = {
        "name": "ph-r1",
        "image": "localhost/sample:1",
        "labels": LABELS,
        "host_port": 41000,
        "container_port": 8000,
    }
    base.update(changes)
    return oci.RunSpec(**base)  # type: ignore[arg-type]


HEAD = ["run", "--detach", "--name", "ph-r1"]
LABEL_ARGS = ["--label", "pilothouse.replica=r1", "--label", "pilothouse.service=s1"]
PUBLISH = ["--publish", "127.0.0.1:41000:8000"]

RUN_CASES = [
    pytest.param(spec(), [*HEAD, *LABEL_ARGS, *PUBLISH, "localhost/sample:1"], id="minimal"),
    pytest.param(
        spec(cpus=1.5, memory_mb=512),
        [
            *HEAD,
            *LABEL_ARGS,
            *PUBLISH,
            "--cpus",
            "1.5",
            "--memory",
            "512m",
            "--memory-swap",
            "512m",
            "localhost/sample:1",
        ],
        id="cpus-memory",
    ),
    pytest.param(
        spec(cpus=0.1 + 0.2, memory_mb=511.2),
        [
            *HEAD,
            *LABEL_ARGS,
            *PUBLISH,
            "--cpus",
            "0.3",
            "--memory",
            "512m",
            "--memory-swap",
            "512m",
            "localhost/sample:1",
        ],
        id="no-float-noise-memory-rounded-up",
    ),
    pytest.param(
        spec(volume="ph-data-s1", gpus=2),
        [
            *HEAD,
            *LABEL_ARGS,
            *PUBLISH,
            "--volume",
            "ph-data-s1:/data",
            "--device",
            "nvidia.com/gpu=0",
            "--device",
            "nvidia.com/gpu=1",
            "localhost/sample:1",
        ],
        id="volume-and-cdi-gpus",
    ),
    pytest.param(
        spec(env_file="/tmp/ph-env-x", network="host", command=("python3", "/app/s.py")),
        [
            *HEAD,
            *LABEL_ARGS,
            "--network",
            "host",
            "--env-file",
            "/tmp/ph-env-x",
            "localhost/sample:1",
            "python3",
            "/app/s.py",
        ],
        id="env-file-host-network-command",
    ),
]


@pytest.mark.parametrize(("run", "expected"), RUN_CASES)
@pytest.mark.parametrize("engine", ["podman", "docker"])
def test_run_argv(engine: str, run: oci.RunSpec, expected: list[str]) -> None:
    assert oci.run_argv(engine, run) == [engine, *expected]


def test_no_variable_value_on_the_command_line() -> None:
    argv = oci.run_argv("podman", spec(env_file="/tmp/f"))
    assert not any("=" in a and a.startswith("SECRET") for a in argv)
    assert "--env" not in argv and "-e" not in argv


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: oci.stop_argv("podman", "c1", 10), ["podman", "stop", "--time", "10", "c1"]),
        (lambda: oci.stop_argv("docker", "c1", 0.2), ["docker", "stop", "--time", "1", "c1"]),
        (lambda: oci.stop_argv("podman", "c1", 0), ["podman", "stop", "--time", "0", "c1"]),
        (lambda: oci.rm_argv("podman", "c1"), ["podman", "rm", "--force", "c1"]),
        (lambda: oci.rm_argv("podman", "c1", "c2"), ["podman", "rm", "--force", "c1", "c2"]),
        (
            lambda: oci.remove_argvs("/usr/bin/podman", "c1", 2.5),
            [["/usr/bin/podman", "rm", "--force", "--time", "3", "c1"]],
        ),
        (
            lambda: oci.remove_argvs("docker", "c1", 10),
            [["docker", "stop", "--time", "10", "c1"], ["docker", "rm", "--force", "c1"]],
        ),
        (
            lambda: oci.ps_argv("docker", {"pilothouse.service": "s1"}, names=True),
            [
                "docker",
                "ps",
                "--all",
                "--no-trunc",
                "--format",
                "{{.ID}} {{.Names}}",
                "--filter",
                "label=pilothouse.service=s1",
            ],
        ),
        (lambda: oci.volume_inspect_argv("podman", "v"), ["podman", "volume", "inspect", "v"]),
        (lambda: oci.volume_create_argv("docker", "v"), ["docker", "volume", "create", "v"]),
        (
            lambda: oci.volume_create_argv("podman", "v", device="/d/v.ext4"),
            [
                "podman",
                "volume",
                "create",
                "--opt",
                "type=ext4",
                "--opt",
                "device=/d/v.ext4",
                "--opt",
                "o=loop",
                "v",
            ],
        ),
        (lambda: oci.inspect_argv("docker", "c1"), ["docker", "container", "inspect", "c1"]),
        (lambda: oci.image_inspect_argv("podman", "i:1"), ["podman", "image", "inspect", "i:1"]),
        (lambda: oci.pull_argv("docker", "i:1"), ["docker", "pull", "--quiet", "i:1"]),
        (
            lambda: oci.ps_argv("podman", {"pilothouse.service": "s1"}),
            [
                "podman",
                "ps",
                "--all",
                "--no-trunc",
                "--format",
                "{{.ID}}",
                "--filter",
                "label=pilothouse.service=s1",
            ],
        ),
        (
            lambda: oci.stats_argv("docker", ["c1", "c2"]),
            [
                "docker",
                "stats",
                "--no-stream",
                "--format",
                "{{.ID}}\t{{.CPUPerc}}\t{{.MemUsage}}",
                "c1",
                "c2",
            ],
        ),
        (lambda: oci.logs_argv("podman", "c1", follow=True), ["podman", "logs", "--follow", "c1"]),
    ],
)
def test_other_argv(call: object, expected: list[str]) -> None:
    assert call() == expected  # type: ignore[operator]


def test_parse_ps_names() -> None:
    out = "c1 ph-r1\nc2 ph-r2\n\ngarbage\n"
    assert oci.parse_ps_names(out) == {"c1": "ph-r1", "c2": "ph-r2"}


def test_env_file_text() -> None:
    assert oci.env_file_text({"B": "x y", "A": "p=q"}) == "A=p=q\nB=x y\n"
    with pytest.raises(ValueError, match="TOKEN has a line break") as caught:
        oci.env_file_text({"TOKEN": "sec\nret"})
    assert "sec" not in str(caught.value).replace("TOKEN", "")
    with pytest.raises(ValueError, match="not a valid name"):
        oci.env_file_text({"1BAD": "x"})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("abc\t12.50%\t10.5MB / 512MB", oci.StatsLine("abc", 12.5, 10.5 * 1e6 / 1048576)),
        ("abc\t0.00%\t1.5GiB / 2GiB", oci.StatsLine("abc", 0.0, 1536.0)),
        ("abc\t--\t-- / --", oci.StatsLine("abc", 0.0, 0.0)),
        ("abc\t3%\t0B / 0B", oci.StatsLine("abc", 3.0, 0.0)),
    ],
)
def test_parse_stats_line(line: str, expected: oci.StatsLine) -> None:
    assert oci.parse_stats_line(line) == expected


def test_parse_stats_line_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        oci.parse_stats_line("nonsense")


HEX = "ab" * 32
OTHER = "cd" * 32


def test_image_digests() -> None:
    podman = json.dumps([{"Id": HEX, "Digest": f"sha256:{OTHER}", "RepoDigests": []}])
    assert oci.image_digests(podman) == {f"sha256:{HEX}", f"sha256:{OTHER}"}
    docker = json.dumps([{"Id": f"sha256:{HEX}", "RepoDigests": [f"reg/app@sha256:{OTHER}"]}])
    assert oci.image_digests(docker) == {f"sha256:{HEX}", f"sha256:{OTHER}"}
    assert oci.image_digests(json.dumps([{"Id": "short"}])) == set()


def test_container_state() -> None:
    out = json.dumps(
        [
            {
                "Id": "c" * 64,
                "Image": HEX,
                "State": {"Running": False, "Status": "exited", "ExitCode": 137, "OOMKilled": True},
                "Config": {"Labels": {"pilothouse.replica": "r1"}},
            }
        ]
    )
    state = oci.container_state(out)
    assert (state.running, state.exit_code, state.oom_killed) == (False, 137, True)
    assert state.labels == {"pilothouse.replica": "r1"}
    assert state.image_id == f"sha256:{HEX}"


def test_containers_conf() -> None:
    text = oci.containers_conf(runtime="runc", nofile=20000, nproc=32768)
    assert text == (
        "[containers]\n"
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        "\n[engine]\n"
        'runtime = "runc"\n'
    )
    assert "[engine]" not in oci.containers_conf(runtime=None, nofile=1, nproc=1)


CID = "09bbcffa2a8c" + "0" * 52
KERNEL = [
    "python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    f"oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/libpod_parent/libpod-{CID},task=python3,"
    "pid=19047,uid=0",
    "Memory cgroup out of memory: Killed process 19047 (python3) total-vm:760220kB",
]


@pytest.mark.parametrize(
    ("lines", "container", "pid", "expected"),
    [
        (KERNEL, CID, None, True),  # podman's cgroup path carries the id
        (KERNEL, "f" * 64, 19047, True),  # by the main process
        (KERNEL, "f" * 64, 19048, False),
        (KERNEL[:1], CID, 19047, False),
        ([], CID, 19047, False),
    ],
)
def test_oom_in_kernel_log(
    lines: list[str], container: str, pid: int | None, expected: bool
) -> None:
    assert oci.oom_in_kernel_log(lines, container, pid) is expected


def test_run_argv_on_another_node() -> None:
    """The engine picks the host port on the node's address; variables on stdin; ulimits."""
    run = spec(
        host_port=None,
        publish_address="198.18.16.2",
        env_file="/dev/stdin",
        ulimits=("nofile=20000:20000", "nproc=32768:32768"),
    )
    assert oci.run_argv("podman", run) == [
        "podman",
        *HEAD,
        *LABEL_ARGS,
        "--publish",
        "198.18.16.2::8000",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        "--env-file",
        "/dev/stdin",
        "localhost/sample:1",
    ]


@pytest.mark.parametrize(
    ("argv", "runtime", "expected"),
    [
        (["podman", "ps"], "runc", ["podman", "--runtime", "runc", "ps"]),
        (["/usr/bin/podman", "ps"], "runc", ["/usr/bin/podman", "--runtime", "runc", "ps"]),
        (["podman", "ps"], None, ["podman", "ps"]),
        (["docker", "ps"], "runc", ["docker", "ps"]),
    ],
)
def test_with_globals(argv: list[str], runtime: str | None, expected: list[str]) -> None:
    assert oci.with_globals(argv, runtime) == expected


def test_merged_output_keeps_each_argument() -> None:
    argv = oci.merged_output(oci.logs_argv("podman", "c1", follow=True))
    assert argv == ["sh", "-c", 'exec "$@" 2>&1', "sh", "podman", "logs", "--follow", "c1"]


def test_ps_json_argv_and_parse() -> None:
    assert oci.ps_json_argv("podman", {"pilothouse.node": "n1"}) == [
        "podman",
        *["ps", "--all", "--no-trunc", "--format", "json"],
        *["--filter", "label=pilothouse.node=n1"],
    ]
    answer = [
        {"Id": "a" * 64, "State": "running", "Pid": 42, "Labels": {"pilothouse.replica": "r1"}},
        {"Id": "b" * 64, "State": "exited", "Exited": True, "ExitCode": 137, "Pid": 0},
        {"Id": "c" * 64, "State": "created", "ExitCode": 0, "Labels": None},
        {"State": "running"},  # no id: left out
        "garbage",
    ]
    assert oci.parse_ps_json(json.dumps(answer)) == [
        oci.Listed("a" * 64, True, None, 42, {"pilothouse.replica": "r1"}),
        oci.Listed("b" * 64, False, 137, 0, {}),
        oci.Listed("c" * 64, False, None, 0, {}),
    ]
    assert oci.parse_ps_json("") == [] and oci.parse_ps_json("[]\n") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-02T01:24:00.129830663Z", 1796174640.129830663),
        ("2026-12-02T01:24:00Z", 1796174640.0),
        ("2026-12-02T02:24:00.5+01:00", 1796174640.5),
        ("0001-01-01T00:00:00Z", 0.0),  # the zero time: not started
        ("", 0.0),
        ("yesterday", 0.0),
    ],
)
def test_epoch(text: str, expected: float) -> None:
    assert oci.epoch(text) == pytest.approx(expected, abs=1e-6)


def test_container_state_reads_the_published_ports_and_start() -> None:
    answer = [
        {
            "Id": "c" * 64,
            "State": {"Running": True, "Pid": 7, "StartedAt": "2026-12-02T01:24:00Z"},
            "NetworkSettings": {
                "Ports": {
                    "8000/tcp": [{"HostIp": "198.18.16.2", "HostPort": "34655"}],
                    "9000/tcp": None,
                }
            },
        }
    ]
    state = oci.container_state(json.dumps(answer))
    assert state.host_ports == {8000: 34655} and state.started_at == 1796174640.0


def test_remove_many_argv() -> None:
    assert oci.remove_many_argv("podman", ["a", "b"], 2.5) == [
        *["podman", "rm", "--force", "--time", "3", "a", "b"]
    ]
    assert oci.remove_many_argv("docker", ["a"], 2) == ["docker", "rm", "--force", "a"]
