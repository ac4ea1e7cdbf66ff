"""The tracker's store: what reads the database into typed records (docs/architecture.md).
Readers here take a DB-API connection (sqlite3's, or the one under a SQLAlchemy session), so
the fast sqlite3-only paths and the full one share the same statements and records."""
