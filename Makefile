# Accrual developer entry points. Every target installs what it needs first.
SHELL := /bin/bash
PY ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen
PROTO_FILES := $(shell find proto -name '*.proto' | sort)
GEN := libs/contracts/src

.PHONY: setup console console-types console-screenshots proto proto-check run demo keys grpc-walkthrough up migrate test test-unit lint openapi-lint openapi-lint-tools chromium bench profile fuzz clean

# Setup says what it does on stderr, so `KEY=$$(make keys ...)` captures only the command's output.
# pip first; a distribution's Python refuses --user installs (PEP 668) or has no pip, hence the
# fallbacks, the last being uv's own installer.
$(UV):
	@echo "installing uv into ~/.local/bin" >&2
	@$(PY) -m pip install --user --quiet uv >&2 \
		|| $(PY) -m pip install --user --quiet --break-system-packages uv >&2 \
		|| (curl -LsSf https://astral.sh/uv/install.sh | env UV_INSTALL_DIR=$(HOME)/.local/bin UV_NO_MODIFY_PATH=1 sh) >&2

.venv/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	@$(UV) sync --frozen --all-packages >&2
	@touch $@

setup: .venv/.synced

## The operator console (console/): npm ci when the lock changed, then the build into
## console/dist, which the gateway serves at /console/; both skipped when up to date.
CONSOLE_SRC := $(shell find console/src -type f 2>/dev/null) console/index.html console/vite.config.ts console/tsconfig.json
console/node_modules/.ci-done: console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund >&2
	@touch $@
console/dist/index.html: console/node_modules/.ci-done $(CONSOLE_SRC)
	cd console && npm run build >&2
	@touch $@
console: console/dist/index.html

## Regenerate console/src/api/schema.d.ts and scopes.json from the gateway's /openapi.json
## (a test checks both).
console-types: setup console/node_modules/.ci-done
	$(RUN) python -m accrual_gateway.spec var/openapi.json console/src/api/scopes.json
	cd console && npx openapi-typescript ../var/openapi.json -o src/api/schema.d.ts

## The README's console screenshots (docs/screenshots/), made by the browser tests.
console-screenshots: setup console chromium
	CONSOLE_SCREENSHOTS=1 $(RUN) pytest -q tests/console -m readme_screenshot

## Regenerate the Python code of the contracts (checked fresh by CI).
proto: setup
	rm -rf $(GEN)/accrual
	$(RUN) python -m accrual_platform.protogen proto $(GEN)

## Fail when the generated code is not what `make proto` produces.
proto-check: setup
	$(RUN) python -m accrual_platform.protogen proto $(GEN) --check

## The whole suite in one process: SQLite under ./var/, in-process broker.
run: setup console
	$(RUN) accrual run

## Create the seed-001 demo program on the running suite (`make run`) and print requests to try.
demo: setup
	@$(RUN) accrual demo $(ARGS)

## API keys: make keys ARGS="create --tenant acme --scopes events:write" (or list, revoke).
keys: setup
	@$(RUN) accrual keys $(ARGS)

## The gRPC walkthrough (examples/grpc_walkthrough.py) against the running suite.
grpc-walkthrough: setup
	@$(RUN) python examples/grpc_walkthrough.py $(ARGS)

## Apply every service's migrations to DATABASE_URL.
migrate: setup
	$(RUN) accrual migrate

## Per-service deployment (one process per service, worker and gateway) from the Procfile.
up: setup console
	set -a && . deploy/local.env && set +a && $(RUN) accrual migrate
	$(RUN) honcho start -f Procfile -e deploy/local.env

test: setup proto-check chromium openapi-lint-tools console
	$(RUN) pytest

test-unit: setup
	$(RUN) pytest -m "not integration and not e2e"

lint: setup openapi-lint
	$(RUN) ruff check .
	$(RUN) mypy libs/platform/src services/*/src bench
	npx --yes @bufbuild/buf@1.47.2 lint

## Debian's Chromium for the /docs browser test (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| (sudo apt-get update -qq && sudo apt-get install -y -qq chromium)

## Spectral, pinned by tools/openapi-lint/package-lock.json.
OPENAPI_LINT := tools/openapi-lint/node_modules/.bin/spectral
$(OPENAPI_LINT): tools/openapi-lint/package.json tools/openapi-lint/package-lock.json
	cd tools/openapi-lint && npm ci --no-audit --no-fund
	@touch $@
openapi-lint-tools: $(OPENAPI_LINT)

## Lint the gateway's served /openapi.json with the committed ruleset (.spectral.yaml).
openapi-lint: setup $(OPENAPI_LINT)
	$(RUN) pytest -q tests/contract/test_openapi_lint.py

## Longer schemathesis run against every route of /openapi.json (the test suite runs a bounded one).
fuzz: setup
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200} $(RUN) pytest -s tests/fuzz

## Benchmark (SPEC section 9): per-service deployment on PostgreSQL + RabbitMQ; wrk from Debian.
bench: setup
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk) \
		|| echo "wrk could not be installed; the Python open-loop generator stands in"
	$(RUN) python -m bench $(BENCH_ARGS)

## Where the time goes (py-spy and per-process CPU; pg_stat_statements when loaded).
profile: setup
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk >/dev/null 2>&1 || sudo apt-get install -y -qq wrk) \
		|| echo "wrk could not be installed; the REST phase is skipped"
	$(RUN) python -m bench.profile

clean:
	rm -rf var .venv console/dist console/node_modules
