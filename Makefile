# Two commands on a fresh machine: `make demo` and `make test`. Both create (or reuse) .venv
# and install xraystyle from this checkout.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= runs/demo

.PHONY: demo test install clean-demo wheel-check lint

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Phantom cohort -> StarGAN v2 training (CPU-sized) -> sample grids in $(DEMO_OUT)/samples.
demo: $(STAMP)
	$(PY) -m xraystyle train --domains normal,effusion --config demo --out $(DEMO_OUT) $(if $(wildcard $(DEMO_OUT)/checkpoints/index.json),--resume,)
	test -f $(DEMO_OUT)/unseen/manifest.csv || $(PY) -m xraystyle cohort phantom --out $(DEMO_OUT)/unseen \
		--n 4 --size 64 --seed 7 --findings effusion --prevalence effusion=0.5
	$(PY) -m xraystyle report --checkpoint $(DEMO_OUT) --manifest $(DEMO_OUT)/unseen/manifest.csv \
		--limit 4 --n-styles 3 --out $(DEMO_OUT)/report
	$(PY) -m xraystyle bench phantom --checkpoint $(DEMO_OUT) --out $(DEMO_OUT)/bench
	@echo "sample grids: $$(ls $(DEMO_OUT)/samples/latent_*.png | tail -n 1) and $$(ls $(DEMO_OUT)/samples/reference_*.png | tail -n 1)"
	@echo "counterfactual reports (unseen phantoms): $(DEMO_OUT)/report/index.html"
	@echo "truth benchmark (outputs vs ideal counterfactuals, baselines): $(DEMO_OUT)/bench/truth.md"

test: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The built wheel in a fresh venv (dependencies borrowed from $(VENV)): --help and a demo dry run
# from outside the checkout. Offline, under a minute.
wheel-check: $(STAMP)
	VENV=$(VENV) bash .ci/wheel_check.sh

clean-demo:
	rm -rf $(DEMO_OUT)
