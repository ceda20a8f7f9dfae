# Two entry points do all set-up on a fresh machine:
#   make run    install, then the control track's main job on its default (CPU, laptop) budget
#   make test   install, then the test suite
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# torch 2.13.0 is a CPU build on this workplace's disk; override TORCH_SPEC elsewhere (e.g. a CUDA build).
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install sysdeps run test bench

sysdeps:
	@bash scripts/install_sysdeps.sh

install: sysdeps
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,llm]"
	# imitation 1.0.1 pins gymnasium 0.29 / SB3 2.2; it runs with the newer stack, so skip its pins.
	$(PIP) install -q --no-deps "imitation==1.0.1"
	# Optional C++ kernel for the rr loss on CPU (faster; needs a C++ compiler; built once, then cached).
	$(PYTHON) -m rlpref.kernels build --optional

run: install
	$(PYTHON) -m rlpref.run

test: install
	@$(PYTHON) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as a failure"; exit 1; fi; exit $$rc
