from ..upgrade.conftest import legacy, world  # noqa: F401  (the same small world of 150 indexed images; its legacy copy)
