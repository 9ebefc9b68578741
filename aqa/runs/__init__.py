"""Run directories, their event logs, their status, and the SQLite index over them."""
