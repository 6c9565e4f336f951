"""audit scores: discovered subgroup and under-representation score per sample

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 01:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: audits stored before this revision have neither.
    with op.batch_alter_table('audit_scores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subgroup', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('under_representation', sa.Float(), nullable=True))
        batch_op.create_index('ix_audit_scores_by_under_representation',
                              ['audit_id', 'under_representation', 'sample_index'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_scores_by_under_representation')
        batch_op.drop_column('under_representation')
        batch_op.drop_column('subgroup')
