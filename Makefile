# The two commands of the README's quick start:
#   make demo   sets up .venv and runs the main job (the seed's login flow, model vs kernel)
#   make test   sets up .venv (and the Debian packages the tests use) and runs every check
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests and benchmarks use; installed only when running as root.
DEB_PACKAGES := libpam-python pamtester python3-venv util-linux procps tini bubblewrap graphviz uidmap dumb-init catatonit \
  qemu-system-x86 man-db groff-base zsh
# Kernels `pidns check --kernel` boots in `make test` (docs/check.md): Linux 3.8.13, the
# seed's line, where this machine keeps one (no registry has it), and Debian's 6.1,
# fetched into KERNEL_CACHE. A missing one is skipped with a note.
KERNEL_3_8   ?= $(abspath $(firstword $(wildcard ../shared/kernels/bzImage-3.8.13 /work/shared/kernels/bzImage-3.8.13)))
KERNEL_CACHE ?= $(HOME)/.cache/pidns/kernels
KERNELS = $(KERNEL_3_8) $(shell tools/fetch-kernel-6.1 $(KERNEL_CACHE) 2>/dev/null)

BUILD  ?= build

.PHONY: demo test lint typecheck pytest scenarios kernels bench deps clean coverage man completion

demo: $(STAMP)
	$(BIN)/pidns demo

test: deps $(STAMP) lint typecheck pytest scenarios kernels

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "pidns needs Python 3.11 or newer ($(PYTHON) is older)"; exit 2; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  [ "$$(id -u)" = 0 ] && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); } || \
	  { echo "cannot create a virtual environment: install python3-venv"; exit 2; }
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,dev]'
	@touch $@

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    (apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	     { apt-get update -qq >/dev/null && apt-get install -y -qq $$missing >/dev/null; }) || \
	    echo "warning: could not install $$missing; tests that need them will be skipped"; \
	  else echo "note: not root, so not installing $$missing; tests that need them are skipped"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	PIDNS_TEST_KERNELS="$(subst $(eval) ,:,$(strip $(KERNELS)))" $(BIN)/pytest -q

scenarios: $(STAMP)
	$(BIN)/pidns check examples/*.pidns
	$(BIN)/pidns check --random 200 --seed 1
	$(BIN)/pidns check --random 100 --seed $$(date +%s)

# Every example on each kernel, in one boot each (TCG where /dev/kvm is no real KVM).
kernels: $(STAMP)
	@[ -n "$(KERNEL_3_8)" ] || echo "note: no Linux 3.8.13 image (KERNEL_3_8): not checked on 3.8"
	@command -v qemu-system-x86_64 >/dev/null || echo "note: no qemu-system-x86_64: kernels not checked"
	@if command -v qemu-system-x86_64 >/dev/null; then \
	  for k in $(KERNELS); do \
	    echo "pidns check --kernel $$k examples/*.pidns"; \
	    out=$$($(BIN)/pidns check --kernel $$k examples/*.pidns); status=$$?; \
	    echo "$$out" | grep -v '^ok\|^skip\|^  note' ; [ $$status = 0 ] || exit 1; \
	  done; \
	fi

# pidns.1 and pidns-COMMAND.1, made from each command's --help and option table (man -l FILE)
man: $(STAMP)
	$(BIN)/python -m pidns.cli.manual man $(BUILD)/man >/dev/null

# bash: source $(BUILD)/completion/pidns.bash; zsh: $(BUILD)/completion on $$fpath (_pidns)
completion: $(STAMP)
	$(BIN)/python -m pidns.cli.manual bash $(BUILD)/completion/pidns.bash >/dev/null
	$(BIN)/python -m pidns.cli.manual zsh $(BUILD)/completion/_pidns >/dev/null

bench: $(STAMP)
	$(BIN)/python benchmarks/model_bench.py
	$(BIN)/python benchmarks/check_bench.py
	$(BIN)/python benchmarks/check_cost.py
	$(BIN)/python benchmarks/run_bench.py
	$(BIN)/python benchmarks/tree_bench.py
	$(BIN)/python benchmarks/launcher_conformance.py
	$(BIN)/python benchmarks/kernel_bench.py $(KERNELS)

# the suite under coverage, subprocesses, forks and os._exit included (pyproject.toml)
coverage: $(STAMP)
	rm -rf .coverage-data && mkdir -p .coverage-data && chmod 1777 .coverage-data
	$(BIN)/coverage run -m pytest -q -p no:cacheprovider; status=$$?; \
	  $(BIN)/coverage combine -q; $(BIN)/coverage report; exit $$status

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage-data $(BUILD)
