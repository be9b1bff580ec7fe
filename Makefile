# redeem-kiosk developer entry points. Every target installs what it needs first:
# missing Debian packages (apt-get, as root or through sudo), then the virtual
# environment with the project and its dev extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tests and screenshots draw real Kivy windows; without a display they get a virtual one.
XRUN   := xvfb-run -a -s "-screen 0 1280x1280x24 -nolisten tcp"

.PHONY: venv system-deps demo test vpi-test lint bench clean

venv: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml scripts/system-deps.sh
	@bash scripts/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: venv
	$(BIN)/kiosk demo

test: venv
	$(BIN)/ruff check .
	$(XRUN) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The virtual Raspberry Pi (issue 12): builds or reuses the arm64 kiosk image (cached in
# /var/cache/redeem-kiosk-vpi, keyed by a hash of its inputs) and boots it under
# qemu-system-aarch64. Needs root (mmdebstrap, loop devices). Results and screenshots
# in build/vpi/. See docs/appliance.md "The virtual Pi".
vpi-test: venv
	$(if $(filter 0,$(shell id -u)),,sudo) $(BIN)/python scripts/vpi/vpi_test.py $(VPI_ARGS)

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/codes.py
	@for b in scan ui sync printing; do \
	  if [ -f bench/$$b.py ]; then $(XRUN) $(BIN)/python bench/$$b.py || exit 1; fi; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
