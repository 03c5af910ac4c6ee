"""An operator deploys a release whose build command and replica try to read the master key,
the store and pilothouse's own environment: they get nothing. The tests run as root, so the
replica and the command really run as the unprivileged run-as user."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pilothouse.drivers import process, sandbox
from tests.engine_support import CHILD_PYTHON, SAMPLE_APP, Client


def probe(data_dir: Path, db_file: str | None, server_pid: int) -> str:
    """A shell script printing what it could read; `denied` is the only right answer."""
    key = shlex.quote(str(data_dir / "master.key"))
    checks = [
        ("key", f"cat {key}"),
        ("datadir", f"ls {shlex.quote(str(data_dir))}"),
        ("environ", f"cat /proc/{server_pid}/environ"),
    ]
    if db_file:
        checks.append(("db", f"cat {shlex.quote(db_file)}"))
    else:  # PostgreSQL: through the store URL, if the child could learn it
        checks.append(("db", 'psql "${PILOTHOUSE_DATABASE_URL:?}" -c "select count(*) from users"'))
    lines = [
        'echo "probe uid=$(id -u)"',
        'echo "probe ids=$(id -ru):$(id -g):$(id -rg):$(id -G)"',
        'echo "probe caps=$(grep -E "^Cap(Inh|Prm|Eff|Amb):" /proc/self/status'
        ' | tr -s "\\t\\n" " ")"',
    ]
    for name, command in checks:
        lines.append(
            f'if ( {command} ) >/dev/null 2>&1; then echo "probe {name}: READ"; '
            f'else echo "probe {name}: denied"; fi'
        )
    lines += [
        'echo "probe env: $(env | cut -d= -f1 | grep ^PILOTHOUSE_ | sort | tr "\\n" " ")"',
        'echo "probe fds: $(ls /proc/self/fd | tr "\\n" " ")"',
        f"cat {key} /proc/{server_pid}/environ 2>&1 | head -c 2000; echo",
        f"tr '\\0' ' ' < /proc/{server_pid}/cmdline; echo",
    ]
    return "; ".join(lines)


def test_an_operator_release_reads_nothing_of_pilothouse(
    stack: dict[str, Any], db_url: str
) -> None:
    assert os.geteuid() == 0, "this test exercises the unprivileged run-as user"
    admin: Client = stack["client"]
    data_dir: Path = stack["data_dir"]
    server_pid = stack["server"].proc.pid
    db_file = None if db_url.startswith("postgresql") else str(sa.engine.make_url(db_url).database)
    script = probe(data_dir, db_file, server_pid)
    # The admin defines what runs; the operator only deploys it.
    admin.setup_service(
        replicas=1,
        versions=("v1.0.0",),
        command="sh -c "
        + shlex.quote(f"{script}; exec {CHILD_PYTHON} {SAMPLE_APP} --port {{port}}"),
        driver_config={"build_command": script},
    )
    made = admin.ok("POST", "/users", 201, json={"name": "otto", "role": "operator"})
    admin.ok("POST", "/environments/dev/grants", 204, json={"user": "otto"})
    otto = Client(stack["server"].url, made["token"]["token"])
    dep = otto.wait(otto.deploy("web", "v1.0.0")["id"])
    assert dep["status"] == "success", dep
    logs = otto.ok("GET", f"/deployments/{dep['id']}/logs", params={"limit": 10000})["items"]
    text = "\n".join(line["message"] for line in logs)
    run_uid = sandbox.identity(None)
    assert run_uid is not None and run_uid.pw_uid != 0
    for source in ("build", "replica"):
        said = [
            line["message"]
            for line in logs
            if line["source"].startswith(source) and line["message"].startswith("probe ")
        ]
        assert f"probe uid={run_uid.pw_uid}" in said, (source, said)
        # real and effective ids the run-as user's, no supplementary group, no capability
        gid = run_uid.pw_gid
        assert f"probe ids={run_uid.pw_uid}:{gid}:{gid}:{gid}" in said, (source, said)
        caps = next(s for s in said if s.startswith("probe caps="))
        assert caps.split("=", 1)[1].split() == [
            word for cap in ("Inh", "Prm", "Eff", "Amb") for word in (f"Cap{cap}:", "0" * 16)
        ], caps
        for name in ("key", "datadir", "environ", "db"):
            assert f"probe {name}: denied" in said, (source, name, said)
        env_line = next(s for s in said if s.startswith("probe env:"))
        assert set(env_line.split(":", 1)[1].split()) <= {
            "PILOTHOUSE_VERSION",
            "PILOTHOUSE_SERVICE",
            "PILOTHOUSE_ENVIRONMENT",
            "PILOTHOUSE_COMMIT_SHA",
            "PILOTHOUSE_TEST_MARK",
        }, env_line
        # nothing beyond stdin, stdout, stderr (and ls's own directory handle)
        assert next(s for s in said if s.startswith("probe fds:")).split()[2:] == [
            "0",
            "1",
            "2",
            "3",
        ]
    master_key = (data_dir / "master.key").read_text().strip()
    assert master_key not in text
    assert db_url not in text and str(sa.engine.make_url(db_url).database) not in text


@pytest.mark.parametrize(
    ("listed", "passed"),
    [
        ("", []),
        ("AWS_REGION, LANGUAGE", ["AWS_REGION", "LANGUAGE"]),
        ("PILOTHOUSE_DATABASE_URL,PILOTHOUSE_MASTER_KEY,PILOTHOUSE_TOKEN,X", ["X"]),
        ("PILOTHOUSE_DATA_DIR,,PILOTHOUSE_CHILD_ENV", []),
    ],
)
def test_only_listed_names_pass_and_never_pilothouse_secrets(
    listed: str, passed: list[str]
) -> None:
    assert sandbox.passed_names(listed) == passed


def test_child_environment_is_an_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTHOUSE_DATA_DIR", "/srv/ph")
    monkeypatch.setenv("PILOTHOUSE_DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("PILOTHOUSE_CHILD_ENV", "AWS_REGION,PILOTHOUSE_DATA_DIR")
    env = sandbox.child_environ()
    assert env["LC_ALL"] == "C.UTF-8" and env["AWS_REGION"] == "eu-west-1" and "PATH" in env
    assert not {"PILOTHOUSE_DATA_DIR", "PILOTHOUSE_DATABASE_URL", "AWS_SECRET_ACCESS_KEY"} & set(
        env
    )


def test_a_replica_starts_as_the_run_as_user_with_no_group_or_capability(child_tmp: Path) -> None:
    """Real, effective, saved and file-system ids the run-as user's, no supplementary group, no
    inheritable, permitted, effective or ambient capability (the runner has none inheritable;
    the bounding set is not narrowed)."""
    assert os.geteuid() == 0, "this test exercises the unprivileged run-as user"
    user = sandbox.identity(None)
    assert user is not None
    log = child_tmp / "replica.log"
    script = 'grep -E "^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapAmb):" /proc/self/status'
    spawned = process.spawn(
        f"sh -c {shlex.quote(script)}",
        port=1,
        version="v1",
        env={},
        log_path=log,
        cwd=str(child_tmp),
    )
    assert spawned.popen is not None and spawned.popen.wait(10) == 0
    uid, gid = str(user.pw_uid), str(user.pw_gid)
    assert [line.split() for line in log.read_text().splitlines()] == [
        ["Uid:", uid, uid, uid, uid],
        ["Gid:", gid, gid, gid, gid],
        ["Groups:"],
        *([f"Cap{cap}:", "0" * 16] for cap in ("Inh", "Prm", "Eff", "Amb")),
    ]
