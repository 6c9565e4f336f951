"""audit reviews: an auditor's decision (reviewed / keep / exclude), tags and note per sample of an audit

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

import api.db

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_reviews',
    sa.Column('audit_id', sa.Integer(), nullable=False),
    sa.Column('sample_index', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=True),
    sa.Column('reviewer', sa.String(length=200), nullable=False),
    sa.Column('reviewed_at', api.db.UTCDateTime(timezone=True), nullable=False),
    # The reviewed sample's score row: a decision goes with it, and so with its audit.
    sa.ForeignKeyConstraint(['audit_id', 'sample_index'], ['audit_scores.audit_id', 'audit_scores.sample_index'],
                            name=op.f('fk_audit_reviews_audit_id_audit_scores'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reviewer_id'], ['owners.id'], name=op.f('fk_audit_reviews_reviewer_id_owners'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('audit_id', 'sample_index', name=op.f('pk_audit_reviews'))
    )
    with op.batch_alter_table('audit_reviews', schema=None) as batch_op:
        batch_op.create_index('ix_audit_reviews_by_decision', ['audit_id', 'decision', 'sample_index'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_reviews_reviewer_id'), ['reviewer_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_reviews_reviewer_id'))
        batch_op.drop_index('ix_audit_reviews_by_decision')

    op.drop_table('audit_reviews')
