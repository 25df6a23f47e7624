"""CLI tests share the root conftest's ``make_world``."""
