# make demo: the whole local journey on embedded defaults.
# make test: lint, type checks, layer contracts and the test suite.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.shipml-installed

.PHONY: demo test lint unit bench clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) ./scripts/bootstrap.sh
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/shipml demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# The team-mode tests need PostgreSQL: scripts/postgres.sh installs and starts it and
# prints its URL. The browser tests need Chromium: scripts/chromium.sh installs Debian's
# chromium. The deploy tests need podman: scripts/podman.sh installs and configures it and
# prints its containers.conf. Without them those tests are skipped, except in CI
# (CI=true), where they fail.
unit: $(STAMP)
	./scripts/chromium.sh >/dev/null || echo "no Chromium: the browser tests cannot run" >&2
	POSTGRES_TEST_URL="$$(./scripts/postgres.sh || true)" \
	CONTAINERS_CONF="$$(./scripts/podman.sh || true)" \
	$(BIN)/python -m pytest

test: lint unit

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_cache.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
