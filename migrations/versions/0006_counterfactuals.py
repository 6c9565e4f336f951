"""counterfactuals: a model's counterfactual tests (an attribute's values translated by a CycleGAN, decisions
that flip), with the earlier test whose translator each reuses

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 03:00:00
"""
import sqlalchemy as sa
from alembic import op

import api.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('counterfactuals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attribute', sa.String(length=255), nullable=False),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('translator_from', sa.Integer(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_counterfactuals_dataset_id_datasets'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_counterfactuals_job_id_jobs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_counterfactuals_model_id_models'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_counterfactuals_owner_id_owners'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['translator_from'], ['counterfactuals.id'],
                            name=op.f('fk_counterfactuals_translator_from_counterfactuals'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_counterfactuals'))
    )
    with op.batch_alter_table('counterfactuals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_counterfactuals_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_counterfactuals_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_counterfactuals_owner_id'), ['owner_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('counterfactuals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_counterfactuals_owner_id'))
        batch_op.drop_index(batch_op.f('ix_counterfactuals_model_id'))
        batch_op.drop_index(batch_op.f('ix_counterfactuals_dataset_id'))

    op.drop_table('counterfactuals')
