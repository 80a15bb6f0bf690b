from tests.serving.conftest import penguins_data, penguins_package  # noqa: F401  (shared)
