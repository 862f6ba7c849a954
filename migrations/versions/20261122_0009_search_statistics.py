"""Multivariate statistics on the token index: which codes are common *for which parameter*.

PostgreSQL estimates `param = <gender> AND code = 'female'` as if the two were independent (`female` is
rare among all token rows, so: 9,800 expected, 50,000 actual at 100,000 Patients in 1M resources), and
then plans `Patient?birthdate=ge…&gender=female` by collecting every match and sorting them (850 ms)
instead of walking the default order and stopping at the page size (1.6 ms). A most-common-values list
over (param, code) and (param, system) gives it the real frequencies; ANALYZE (autovacuum) keeps them.

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-22
"""

from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

STATISTICS = {
    "search_token_param_code": "param, code",
    "search_token_param_system": "param, system",
}


def upgrade() -> None:
    for name, columns in STATISTICS.items():
        op.execute(f"CREATE STATISTICS {name} (mcv) ON {columns} FROM search_token")
        # The default target (100 combinations) is too few for thousands of (parameter, code) pairs.
        op.execute(f"ALTER STATISTICS {name} SET STATISTICS 1000")
    op.execute("ANALYZE search_token")


def downgrade() -> None:
    for name in STATISTICS:
        op.execute(f"DROP STATISTICS IF EXISTS {name}")
