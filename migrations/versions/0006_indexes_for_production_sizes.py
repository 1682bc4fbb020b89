"""indexes the hot paths need at production sizes (bench/datasize.py's EXPLAIN findings)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 11:20:00.000000

`flask prune` finds dead app sessions and web sessions by `expires_at`, `revoked_at` and
`last_seen_at`, and delivered back-channel logouts by `sent_at`: without these indexes each
batch read the whole table. The outbox claims (`flask outbox retry`) read unsent rows due by
`next_attempt_at`; a partial index on unsent rows keeps that independent of the delivered
history. The dashboard's activity list is one user's events newest first: (user_id,
created_at) answers it from the index without sorting the user's whole history.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

UNSENT_BACKCHANNEL = sa.text('backchannel_logouts.sent_at IS NULL')
UNSENT_REVOCATION = sa.text('apple_revocations.sent_at IS NULL')


def upgrade():
    op.create_index('ix_token_families_expires_at', 'token_families', ['expires_at'])
    op.create_index('ix_token_families_revoked_at', 'token_families', ['revoked_at'])
    op.create_index('ix_web_sessions_revoked_at', 'web_sessions', ['revoked_at'])
    op.create_index('ix_web_sessions_last_seen_at', 'web_sessions', ['last_seen_at'])
    op.create_index('ix_backchannel_logouts_sent_at', 'backchannel_logouts', ['sent_at'])
    op.create_index('ix_notification_events_received_at', 'notification_events',
                    ['received_at'])
    op.create_index('ix_audit_events_user_id_created_at', 'audit_events',
                    ['user_id', 'created_at'])
    op.create_index('ix_backchannel_logouts_unsent_due', 'backchannel_logouts',
                    ['next_attempt_at'], postgresql_where=UNSENT_BACKCHANNEL,
                    sqlite_where=UNSENT_BACKCHANNEL)
    op.create_index('ix_apple_revocations_unsent_due', 'apple_revocations',
                    ['next_attempt_at'], postgresql_where=UNSENT_REVOCATION,
                    sqlite_where=UNSENT_REVOCATION)


def downgrade():
    op.drop_index('ix_apple_revocations_unsent_due', table_name='apple_revocations')
    op.drop_index('ix_backchannel_logouts_unsent_due', table_name='backchannel_logouts')
    op.drop_index('ix_audit_events_user_id_created_at', table_name='audit_events')
    op.drop_index('ix_notification_events_received_at', table_name='notification_events')
    op.drop_index('ix_backchannel_logouts_sent_at', table_name='backchannel_logouts')
    op.drop_index('ix_web_sessions_last_seen_at', table_name='web_sessions')
    op.drop_index('ix_web_sessions_revoked_at', table_name='web_sessions')
    op.drop_index('ix_token_families_revoked_at', table_name='token_families')
    op.drop_index('ix_token_families_expires_at', table_name='token_families')
