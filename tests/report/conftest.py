from tests.monitor.conftest import monitored_package, split  # noqa: F401  (shared fixtures)
from tests.serving.conftest import penguins_data  # noqa: F401
