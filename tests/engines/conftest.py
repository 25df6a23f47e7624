from ..upgrade.conftest import world  # noqa: F401  (the same small world of 150 indexed images)
