"""Storage: the SQLAlchemy models, the engine and the schema upgrade."""
