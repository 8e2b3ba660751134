"""The campaign database: SQLAlchemy models, sessions, queries and Alembic migrations.

``db`` imports nothing from voltloop and nothing outside the standard library,
NumPy and SQLAlchemy/Alembic.
"""
