# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run run-real test lint format bench simulator clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## start the bot with the embedded PixVerse simulator (needs DISCORD_TOKEN)
	$(PY) -m bot --simulate

run-real: $(STAMP)  ## start the bot against the real PixVerse API (needs PIXVERSE_API_KEY too)
	$(PY) -m bot

simulator: $(STAMP)  ## run the PixVerse simulator alone on port 8765
	$(PY) -m bot.simulator --port 8765

test: $(STAMP)  ## ruff, mypy, then the whole test suite
	$(PY) -m ruff check .
	$(PY) -m mypy bot cogs
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)  ## print the benchmark figures recorded in the README
	$(PY) bench/ledger.py
	$(PY) bench/startup.py
	$(PY) bench/delivery.py --jobs 1000
	$(PY) bench/delivery.py --jobs 1000 --webhooks
	$(PY) bench/delivery.py --scenario expired-tokens
	$(PY) bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
