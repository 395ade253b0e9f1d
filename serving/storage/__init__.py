"""The service database: engine and migrations (`db`), tables, and query functions."""

from serving.storage.db import init_db, make_engine, migrate, session_factory

__all__ = ["init_db", "make_engine", "migrate", "session_factory"]
