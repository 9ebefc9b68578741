"""Run directories, their event logs, and the SQLite index over them."""
