# The two commands of the quick start are `make run` and `make test`; everything else is optional.
# Python packages come from uv.lock and Node packages from package-lock.json, nothing else
# (docs/dependencies.md); scripts/uv is the project's pinned uv, installed into .cache/ on first use.
PYTHON ?= python3
export PYTHON
export UV_PYTHON_DOWNLOADS = never
UV := scripts/uv
BIN := .venv/bin

.PHONY: run test test-latest lock upgrade sbom image sync lint bench bench-quick browser-matrix clean monitoring

## sync: make .venv exactly what uv.lock pins (the runtime and the dev group)
sync:
	$(UV) sync --locked --quiet --python $(PYTHON)

## run: serve ./data as dataset "local" on http://127.0.0.1:8080 (loopback only)
run: sync
	$(BIN)/gateway serve

## test: ruff, mypy --strict and the whole pytest suite, on the locked versions (installs what the tests need)
test:
	./scripts/test

## test-latest: the same suite on the newest versions pyproject.toml allows, in .cache/venv-latest;
## uv.lock is not changed. Green here means `make upgrade` will pass.
test-latest:
	./scripts/test --latest

## lock: update uv.lock after an edit of pyproject.toml (keeps every other pin where it is)
lock:
	$(UV) lock

## upgrade: move uv.lock and package-lock.json to the newest versions the ranges allow, then run `make test`
upgrade:
	$(UV) lock --upgrade
	npm update --ignore-scripts --no-audit --no-fund
	./scripts/test

## sbom: CycloneDX JSON of the runtime dependencies, installed from uv.lock as the image does, in dist/
sbom:
	rm -rf .cache/sbom-venv
	scripts/install-image .cache/sbom-venv "$$(git rev-parse HEAD 2>/dev/null || echo unknown)"
	scripts/sbom .cache/sbom-venv dist/sbom.cdx.json

## image: the container image, labelled with the version and the git revision
image:
	docker build -t url-signing-gateway \
	  --build-arg VERSION="$$($(UV) version --short)" \
	  --build-arg REVISION="$$(git rev-parse HEAD)" \
	  --build-arg CREATED="$$(date -u +%Y-%m-%dT%H:%M:%SZ)" .

lint: sync
	$(BIN)/ruff check gateway tests bench deploy
	$(BIN)/mypy --strict
	$(BIN)/mypy --strict deploy/monitoring/generate.py

clean:
	rm -rf .venv .cache .mypy_cache .ruff_cache .pytest_cache node_modules dist

## bench: the full benchmark (about 14 minutes); writes bench/results/latest.{json,md} and the docs' figures
bench: sync
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.docs

## browser-matrix: every loader in Chromium, Firefox and WebKitGTK (about 1 min); rewrites docs/browsers.md
browser-matrix: sync
	scripts/browser-matrix

## bench-quick: the regression guard (about 30 s), also run by the test suite
bench-quick: sync
	$(BIN)/python -m bench.run --quick

## monitoring: regenerate the Grafana dashboard and the chart's copies of it and of the alerting rules
monitoring:
	$(PYTHON) deploy/monitoring/generate.py
