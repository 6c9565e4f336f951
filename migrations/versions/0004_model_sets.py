"""model sets: one model per training seed; models.model_set_id names a model's set

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00
"""
import sqlalchemy as sa
from alembic import op

import api.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('seeds', sa.JSON(), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_model_sets_dataset_id_datasets'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_model_sets_owner_id_owners'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_sets'))
    )
    with op.batch_alter_table('model_sets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_sets_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_sets_owner_id'), ['owner_id'], unique=False)

    # Nullable: models trained before this revision, and lone models, belong to no set.
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_set_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_models_model_set_id'), ['model_set_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_models_model_set_id_model_sets'), 'model_sets',
                                    ['model_set_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_models_model_set_id_model_sets'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_models_model_set_id'))
        batch_op.drop_column('model_set_id')

    with op.batch_alter_table('model_sets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_sets_owner_id'))
        batch_op.drop_index(batch_op.f('ix_model_sets_dataset_id'))

    op.drop_table('model_sets')
