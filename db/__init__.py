"""The campaign database: SQLAlchemy models, sessions, queries and Alembic migrations.

``db`` imports nothing from voltloop and nothing outside the standard library,
NumPy and SQLAlchemy/Alembic (plus pyarrow, imported lazily, for exports).
Modules: ``enums`` (statuses), ``models`` (typed ORM), ``blobs`` (array blob
format), ``engine`` (URLs, engines, sessions), ``migrate`` (Alembic), ``ingest``
and ``readback`` (cycles, spectra, predictions, events), ``leases``, ``queries``,
``sql`` (read-only SQL), ``export``, ``testing`` (throw-away PostgreSQL).
See docs/database.md.
"""
