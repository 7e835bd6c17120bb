"""users, sessions, refresh tokens, audit events

Revision ID: 0001
Revises: 

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Frozen copies of the model types: a migration must not change when app code does.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Naive UTC with microseconds (MariaDB keeps none unless fsp=6); see app.db.UTCDateTime.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def exact_string(length):
    """Compared byte for byte; see app.db.exact_string."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('auth_events',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('at', UTC_DATETIME, nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('user_id', BIG_ID, nullable=True),
    sa.Column('session_id', exact_string(64), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_events'))
    )
    with op.batch_alter_table('auth_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_events_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_auth_events_user_id'), ['user_id'], unique=False)

    op.create_table('users',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('email', exact_string(254), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=64), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('password_changed_at', UTC_DATETIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_table('auth_sessions',
    sa.Column('id', exact_string(64), nullable=False),
    sa.Column('user_id', BIG_ID, nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('last_used_at', UTC_DATETIME, nullable=False),
    sa.Column('expires_at', UTC_DATETIME, nullable=False),
    sa.Column('revoked_at', UTC_DATETIME, nullable=True),
    sa.Column('revoked_reason', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_auth_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_sessions'))
    )
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_auth_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('refresh_tokens',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('token_hash', exact_string(64), nullable=False),
    sa.Column('user_id', BIG_ID, nullable=False),
    sa.Column('session_id', exact_string(64), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('expires_at', UTC_DATETIME, nullable=False),
    sa.Column('used_at', UTC_DATETIME, nullable=True),
    sa.Column('parent_id', BIG_ID, nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['auth_sessions.id'], name=op.f('fk_refresh_tokens_session_id_auth_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_refresh_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_tokens_token_hash'))
    )
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_tokens_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_user_id'), ['user_id'], unique=False)



def downgrade():
    # Dropping a table drops its indexes; MariaDB refuses to drop an index a foreign key uses.
    op.drop_table('refresh_tokens')
    op.drop_table('auth_sessions')
    op.drop_table('users')
    op.drop_table('auth_events')
