from tests.serving.conftest import (  # noqa: F401  (shared fixtures)
    cancer_data,
    cancer_package,
    cancer_server,
    penguins_data,
    penguins_package,
    penguins_server,
)
