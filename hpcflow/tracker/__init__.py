"""The SQLite tracker: submit, refresh, recovery, the sync loop."""
