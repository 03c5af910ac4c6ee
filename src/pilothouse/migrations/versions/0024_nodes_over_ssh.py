"""nodes over SSH: how a node is reached, its trusted host key and sealed client key

`nodes` gains `transport` (`local` or `ssh`), `ssh_user`, `ssh_port`, `host_key` (the trusted
OpenSSH public key line), `private_key_sealed` (the client key sealed with the keyring, never
shown) with its `key_id`, `software` (python3/podman versions found on the host) and
`status_reason` (why a node is unreachable). `nodes.status` may be `unreachable`: its CHECK
constraint (core/types.str_enum) is replaced by one that allows it. Downgrading refuses while
an ssh node exists (the old table could not reach it).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 00:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("ready", "draining", "down")
NEW = ("ready", "draining", "down", "unreachable")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _enum(values: tuple[str, ...], name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def _swap(before: tuple[str, ...], after: tuple[str, ...]) -> None:
    if op.get_context().dialect.name == "sqlite":
        # SQLite cannot alter a constraint: the batch copy rebuilds the table with the new one.
        with op.batch_alter_table("nodes") as batch:
            batch.drop_constraint(op.f("ck_nodes_node_status"), type_="check")
            batch.alter_column(
                "status",
                existing_type=_enum(before, "node_status"),
                type_=_enum(after, "node_status"),
                existing_nullable=False,
            )
        return
    allowed = ", ".join(f"'{v}'" for v in after)
    op.drop_constraint(op.f("ck_nodes_node_status"), "nodes", type_="check")
    op.create_check_constraint(op.f("ck_nodes_node_status"), "nodes", f"status IN ({allowed})")


def upgrade() -> None:
    _swap(OLD, NEW)
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column(
                "transport",
                _enum(("local", "ssh"), "node_transport"),
                nullable=False,
                server_default="local",
            )
        )
        batch.add_column(sa.Column("ssh_user", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("ssh_port", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("host_key", sa.Text(), nullable=True))
        batch.add_column(sa.Column("private_key_sealed", sa.Text(), nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("software", JSON, nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(sa.Column("status_reason", sa.String(length=500), nullable=True))
    with op.batch_alter_table("nodes") as batch:
        batch.alter_column("transport", server_default=None)
        batch.alter_column("software", server_default=None)


def downgrade() -> None:
    remote = op.get_bind().scalar(sa.text("SELECT count(*) FROM nodes WHERE transport = 'ssh'"))
    if remote:
        raise RuntimeError(f"{remote} ssh node(s) exist: remove them first")
    op.execute("UPDATE nodes SET status = 'down' WHERE status = 'unreachable'")
    with op.batch_alter_table("nodes") as batch:
        for column in (
            "status_reason",
            "software",
            "key_id",
            "private_key_sealed",
            "host_key",
            "ssh_port",
            "ssh_user",
        ):
            batch.drop_column(column)
        batch.drop_constraint(op.f("ck_nodes_node_transport"), type_="check")
        batch.drop_column("transport")
    _swap(NEW, OLD)
