# The README's two commands: `make demo` and `make test`. Everything the project needs is installed here.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is pinned so pip takes the CPU build that lies on disk instead of a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: install install-dev demo test readme-full typecheck clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/netfix demo $(DEMO_ARGS)

test: install-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Every block of README.md exactly as written, the lines marked [full] included (make test runs them small).
readme-full: install-dev
	mkdir -p runs
	NETFIX_README_FULL=1 NETFIX_README_TIMES=$(CURDIR)/runs/readme_full_times.json $(PY) -m pytest -q -p no:cacheprovider --durations=0 tests/test_readme.py

typecheck: install-dev
	$(VENV)/bin/mypy src/netfix --ignore-missing-imports

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
