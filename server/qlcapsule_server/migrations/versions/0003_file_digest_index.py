"""version files indexed in the order of "versions containing this file"

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("version_files", schema=None) as batch_op:
        batch_op.create_index("ix_version_files_sha256_version", ["sha256", "version_id", "path"], unique=False)
        batch_op.drop_index(batch_op.f("ix_version_files_sha256"))


def downgrade() -> None:
    with op.batch_alter_table("version_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_version_files_sha256"), ["sha256"], unique=False)
        batch_op.drop_index("ix_version_files_sha256_version")
