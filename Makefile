# One command to run it, one to test it. Both create and reuse .venv here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test bench lint install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is needed (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	@# The cashier page's browser test drives Debian's headless Chromium (skipped without it).
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver (for the browser test)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
		echo "could not install chromium/chromium-driver: the browser test will be skipped"; \
	else echo "chromium/chromedriver not found: the browser test will be skipped" \
		"(apt-get install chromium chromium-driver to run it)"; fi
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	exec $(BIN)/payments up

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy domain services adapters web workers cli devstack sandbox_provider config.py beat_schedule.py

clean:
	rm -rf $(VENV) .run
