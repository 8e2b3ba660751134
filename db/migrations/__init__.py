"""Alembic migration environment: the only way the schema is created or changed."""
