"""evaluation predictions: per-sample label, prediction, probability and group of each evaluation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 18:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Evaluations stored before this revision have no rows here: compare asks to evaluate them again.
    op.create_table('evaluation_predictions',
    sa.Column('evaluation_id', sa.Integer(), nullable=False),
    sa.Column('sample_index', sa.Integer(), nullable=False),
    sa.Column('label', sa.Integer(), nullable=False),
    sa.Column('prediction', sa.Integer(), nullable=False),
    sa.Column('probability', sa.Float(), nullable=True),
    sa.Column('group_key', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['evaluation_id'], ['evaluations.id'],
                            name=op.f('fk_evaluation_predictions_evaluation_id_evaluations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('evaluation_id', 'sample_index', name=op.f('pk_evaluation_predictions'))
    )


def downgrade() -> None:
    op.drop_table('evaluation_predictions')
