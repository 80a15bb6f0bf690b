from tests.containers.conftest import base_image, engine  # noqa: F401  (shared, session-scoped)
