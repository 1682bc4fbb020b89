"""apple identities: transfer_sub and friends, for moving the app to another Apple team

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 10:05:00.000000

"""
from alembic import op
import sqlalchemy as sa

import siwa_web.models.base


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('apple_identities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfer_sub', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('transfer_team', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('transfer_exported_at', siwa_web.models.base.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('transferred_at', siwa_web.models.base.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('previous_sub', sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f('ix_apple_identities_transfer_sub'), ['transfer_sub'], unique=False)


def downgrade():
    with op.batch_alter_table('apple_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apple_identities_transfer_sub'))
        batch_op.drop_column('previous_sub')
        batch_op.drop_column('transferred_at')
        batch_op.drop_column('transfer_exported_at')
        batch_op.drop_column('transfer_team')
        batch_op.drop_column('transfer_sub')
