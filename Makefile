# make demo: the whole local journey on embedded defaults.
# make test: lint, type checks, layer contracts and the test suite.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.shipml-installed
# pytest-xdist workers: most tests wait on subprocesses, servers and sockets, so more
# workers than the CI machine's 2 cores pays off; podman tests share one worker. The
# longest groups go first (tests/conftest.py; --no-loadscope-reorder keeps that order).
TEST_WORKERS ?= 3

.PHONY: demo test lint lint-fast unit bench bench-containers clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) ./scripts/bootstrap.sh
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/shipml demo

lint: lint-fast $(STAMP)
	$(BIN)/mypy

lint-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

# The team-mode tests need PostgreSQL: scripts/postgres.sh installs and starts it and
# prints its URL. The browser tests need Chromium: scripts/chromium.sh installs Debian's
# chromium. The container and deploy tests need podman: scripts/podman.sh installs it and
# prints the containers.conf to use. The alert tests need Prometheus and promtool:
# scripts/prometheus.sh installs Debian's prometheus. Without them those tests are skipped, except in CI
# (CI=true), where they fail.
unit: $(STAMP)
	./scripts/chromium.sh >/dev/null || echo "no Chromium: the browser tests cannot run" >&2
	./scripts/prometheus.sh >/dev/null || echo "no Prometheus: the alert tests cannot run" >&2
	conf="$$(VENV=$(VENV) ./scripts/podman.sh || true)"; \
	if [ -n "$$conf" ]; then export CONTAINERS_CONF="$$conf"; fi; \
	POSTGRES_TEST_URL="$$(./scripts/postgres.sh || true)" \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=25

# mypy (half a minute on one core) runs beside the suite; its report follows the suite's
# and either failing fails `make test`.
test: lint-fast
	@$(BIN)/mypy > $(VENV)/mypy.log 2>&1 & mypy=$$!; \
	$(MAKE) --no-print-directory unit; suite=$$?; \
	wait $$mypy; typed=$$?; echo "$(BIN)/mypy"; cat $(VENV)/mypy.log; \
	[ $$suite -eq 0 ] && [ $$typed -eq 0 ]

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_cache.py

# Build time with and without the layer cache, and the serve image's size (podman).
bench-containers: $(STAMP)
	CONTAINERS_CONF="$$(VENV=$(VENV) ./scripts/podman.sh)" $(BIN)/python benchmarks/containers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
