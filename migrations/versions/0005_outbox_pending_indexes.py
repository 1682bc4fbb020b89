"""outbox pending indexes: unsent rows by age, for the metrics' outbox gauges

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 10:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TABLES = ('apple_revocations', 'backchannel_logouts')
UNSENT = sa.text('sent_at IS NULL')


def upgrade():
    for table in TABLES:
        op.create_index(f'ix_{table}_pending', table, ['created_at'], unique=False,
                        postgresql_where=UNSENT, sqlite_where=UNSENT)


def downgrade():
    for table in TABLES:
        op.drop_index(f'ix_{table}_pending', table_name=table)
