"""The vars CLI as users run it (import with a preview, export, template, diff, check), and key
rotation that re-encrypts every value while readers keep reading."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pilothouse.access import SYSTEM
from pilothouse.config import Settings
from pilothouse.core.crypto import load_keyring, rotate_key_file
from pilothouse.core.db import Database
from pilothouse.rotation import reseal_all
from pilothouse.setup import ensure_master_key
from pilothouse.variables import service
from pilothouse.variables.models import EnvVar, EnvVarVersion
from tests.conftest import LiveServer, one_store

SENTINEL = "sntl-cli-0b7d"


def run_cli(server: LiveServer, token: str, *args: str, stdin: str | None = None) -> Any:
    env = {**os.environ, "PILOTHOUSE_URL": server.url, "PILOTHOUSE_TOKEN": token, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "pilothouse", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


@one_store
def test_import_export_template_diff_check(
    settings: Settings, admin_token: str, tmp_path: Path
) -> None:
    ensure_master_key(settings.master_key_path)
    with LiveServer(settings) as server:

        def cli(*args: str, stdin: str | None = None) -> Any:
            return run_cli(server, admin_token, *args, stdin=stdin)

        assert cli("env", "create", "prod", "--type", "production").returncode == 0
        assert cli("env", "create", "staging", "--type", "staging").returncode == 0
        dotenv = tmp_path / "prod.env"
        dotenv.write_text(
            "# production\n"
            "export LOG_LEVEL=INFO\n"
            f'API_TOKEN="{SENTINEL}"\n'
            "WEBHOOK_URL=https://hooks.example.com/x\n"
        )
        preview = cli("vars", "import", str(dotenv), "--env", "prod", "--dry-run")
        assert preview.returncode == 0, preview.stderr
        assert "add    API_TOKEN  (secret)" in preview.stdout
        assert "3 to add, 0 to change, 0 unchanged" in preview.stdout
        assert cli("vars", "list", "--env", "prod", "--json").stdout.strip() == "[]"
        applied = cli("vars", "import", str(dotenv), "--env", "prod", "--yes")
        assert applied.returncode == 0 and "applied to prod" in applied.stdout
        again = cli("vars", "import", str(dotenv), "--env", "prod", "--yes")
        assert "0 to add, 0 to change, 3 unchanged" in again.stdout

        listed = cli("vars", "list", "--env", "prod")
        assert "********" in listed.stdout and SENTINEL not in listed.stdout
        exported = cli("vars", "export", "--env", "prod")
        assert 'LOG_LEVEL="INFO"' in exported.stdout and SENTINEL not in exported.stdout
        assert "API_TOKEN: secret, not exported" in exported.stdout
        revealed = cli("vars", "export", "--env", "prod", "--reveal")
        assert f'API_TOKEN="{SENTINEL}"' in revealed.stdout

        template = tmp_path / ".env.prod.template"
        cli("vars", "require", "DATABASE_URL", "--env", "prod", "--rule", "postgres_dsn")
        assert cli("vars", "template", "--env", "prod", "-o", str(template)).returncode == 0
        text = template.read_text()
        assert 'API_TOKEN=""' in text and "DATABASE_URL" in text and SENTINEL not in text
        assert "# required, format: postgres_dsn" in text
        assert oct(template.stat().st_mode & 0o777) == "0o600"

        check = cli("vars", "check", "prod")
        assert check.returncode == 1
        assert "DATABASE_URL: is required" in check.stdout
        assert check.stderr.strip() == ("error: prod: 1 problem(s); deployments will be refused")

        cli("vars", "set", "LOG_LEVEL=DEBUG", "--env", "staging")
        cli("vars", "set", "ONLY_STAGING=1", "--env", "staging")
        diff = cli("vars", "diff", "staging", "prod")
        assert "only in staging: ONLY_STAGING" in diff.stdout
        assert "different: LOG_LEVEL" in diff.stdout
        assert "only in prod: API_TOKEN, WEBHOOK_URL" in diff.stdout

        # secrecy sticks: set again without --secret, still masked; --plain makes it visible
        assert cli("vars", "set", "API_TOKEN=rotated-1", "--env", "prod").returncode == 0
        assert "********" in cli("vars", "list", "--env", "prod").stdout
        plain = tmp_path / "plain.env"
        plain.write_text("API_TOKEN=now-public\n")
        preview = cli("vars", "import", str(plain), "--env", "prod", "--dry-run")
        assert "change API_TOKEN  (secret)" in preview.stdout
        cli("vars", "import", str(plain), "--env", "prod", "--plain", "API_TOKEN", "--yes")
        assert "now-public" in cli("vars", "list", "--env", "prod").stdout

        history = cli("vars", "history", "LOG_LEVEL", "--env", "staging")
        assert history.returncode == 0 and "set" in history.stdout
        bad = cli("vars", "import", str(tmp_path / "missing.env"), "--env", "prod")
        assert bad.returncode == 1 and bad.stderr.startswith("error: cannot read")
        broken = tmp_path / "broken.env"
        broken.write_text(f'GOOD=1\nBAD="{SENTINEL}\n')
        parsed = cli("vars", "import", str(broken), "--env", "prod")
        assert parsed.returncode == 1 and "line 2" in parsed.stderr
        assert SENTINEL not in parsed.stderr


def test_rotation_reencrypts_everything_while_readers_read(settings: Settings, world: Any) -> None:
    """Rotation rewrites every value (current and history) in batches while another task keeps
    reading the whole environment: every read sees every value, before and after."""
    ensure_master_key(settings.master_key_path)
    db = Database(settings.effective_database_url())
    expected = {f"VAR_{i:03d}": f"value-{i}-{'x' * (i % 7)}" for i in range(120)}

    async def go() -> None:
        ring = load_keyring(None, settings.master_key_path)
        async with db.session() as session:
            for key, value in expected.items():
                await service.set_var(
                    session, SYSTEM, ring, "prod", key, value, is_secret=key.endswith("7")
                )
            await service.set_var(session, SYSTEM, ring, "prod", "VAR_000", "changed")
        old_kid = ring.current.hex()
        new_kid, _ = rotate_key_file(settings.master_key_path)
        ring = load_keyring(None, settings.master_key_path)
        reads = 0
        stop = asyncio.Event()

        async def reader() -> None:
            nonlocal reads
            while not stop.is_set():
                async with db.session(write=False) as session:
                    views = await service.list_vars(session, SYSTEM, ring, "prod", reveal=False)
                values = {v.key: v.value for v in views if not v.is_secret}
                want = {k: v for k, v in expected.items() if not k.endswith("7")}
                want["VAR_000"] = "changed"
                assert values == want
                reads += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(reader())
        rewritten = await reseal_all(db, ring, batch=25)
        stop.set()
        await task
        assert rewritten == 120 + 121 and reads > 0
        async with db.session(write=False) as session:
            kids = set(await session.scalars(sa.select(EnvVar.key_id)))
            kids |= set(
                await session.scalars(
                    sa.select(EnvVarVersion.key_id).where(EnvVarVersion.key_id.is_not(None))
                )
            )
            views = await service.list_vars(session, SYSTEM, ring, "prod", reveal=True)
        assert kids == {new_kid} and old_kid != new_kid
        got = {v.key: v.value for v in views}
        assert got == {**expected, "VAR_000": "changed"}
        # a value sealed with a key that is gone fails naming the variable and the key id
        settings.master_key_path.write_text(
            settings.master_key_path.read_text().splitlines()[0] + "\n"
        )
        lost = load_keyring(None, settings.master_key_path)
        async with db.session(write=False) as session:
            try:
                await service.list_vars(session, SYSTEM, lost, "prod", reveal=True)
            except service.KeyMissing as exc:
                assert exc.message.startswith("variable VAR_000: encrypted with key " + new_kid)
            else:
                raise AssertionError("a missing key must be reported")
        await db.dispose()

    asyncio.run(go())
