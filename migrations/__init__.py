"""Alembic migrations of tweetchat's schema (run by `tweetchat` itself on start)."""
