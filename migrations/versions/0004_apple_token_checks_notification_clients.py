"""Apple token checks, relay forwarding per Apple ID, the client of each notification

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import siwa_web.models.base


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('apple_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checked_at', siwa_web.models.base.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('check_state', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('next_check_at', siwa_web.models.base.UTCDateTime(), nullable=True))
    # Tokens stored before the daily check existed are due at once, the oldest first.
    op.execute("UPDATE apple_tokens SET next_check_at = created_at")
    with op.batch_alter_table('apple_tokens', schema=None) as batch_op:
        batch_op.alter_column('next_check_at', existing_type=siwa_web.models.base.UTCDateTime(),
                              nullable=False)
        batch_op.create_index('ix_apple_tokens_next_check_at', ['next_check_at'], unique=False)

    with op.batch_alter_table('apple_identities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_forwarding', sa.Boolean(), nullable=True))

    with op.batch_alter_table('notification_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('aud', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('client_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('outcome', sa.String(length=20), nullable=True))


def downgrade():
    with op.batch_alter_table('notification_events', schema=None) as batch_op:
        batch_op.drop_column('outcome')
        batch_op.drop_column('client_id')
        batch_op.drop_column('aud')

    with op.batch_alter_table('apple_identities', schema=None) as batch_op:
        batch_op.drop_column('email_forwarding')

    with op.batch_alter_table('apple_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_apple_tokens_next_check_at')
        batch_op.drop_column('next_check_at')
        batch_op.drop_column('check_state')
        batch_op.drop_column('checked_at')
