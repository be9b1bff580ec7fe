# redeem-kiosk developer entry points. Every target installs what it needs first:
# missing Debian packages (apt-get, as root or through sudo), then the virtual
# environment with the project and its dev extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tests and screenshots draw real Kivy windows; without a display they get a virtual one.
XRUN   := xvfb-run -a -s "-screen 0 1280x1280x24 -nolisten tcp"

.PHONY: venv system-deps demo test lint bench fuzz clean hq-catalogs constraints

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

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/codes.py
	@for b in scan ui sync printing; do \
	  if [ -f bench/$$b.py ]; then $(XRUN) $(BIN)/python bench/$$b.py || exit 1; fi; \
	done

# HQ dashboard translations (Babel): extract the strings, merge them into the .po
# files (translate the new ones there), compile the .mo files.
HQ_LOCALE := sync/hq/web/locale
hq-catalogs: venv
	$(BIN)/pybabel -q extract -F babel-hq.cfg -k N_ --no-location --omit-header -o $(HQ_LOCALE)/hq.pot .
	$(BIN)/pybabel -q update -D hq -i $(HQ_LOCALE)/hq.pot -d $(HQ_LOCALE)
	$(BIN)/pybabel -q compile -D hq -d $(HQ_LOCALE)

# Long fuzzing pass over the parsers of untrusted input (tests/fuzz); `make test` runs
# the same targets with 150 inputs each. FUZZ_EXAMPLES=N sets the inputs per target.
FUZZ_EXAMPLES ?= 20000
fuzz: venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz -s -q --timeout=0 -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

# The image's lock file: the base dependencies (no extras) resolved for Python 3.11
# (bookworm's), around the apt numpy that picamera2 needs (image-build/apt-pins.txt).
# pip-tools resolves on the machine it runs on; none of these packages has a
# dependency that differs between linux x86_64 and aarch64, so the lock holds for a Pi.
constraints: venv
	CUSTOM_COMPILE_COMMAND="make constraints" $(BIN)/pip-compile --quiet --strip-extras \
	  --no-emit-index-url --no-emit-find-links --allow-unsafe --constraint image-build/apt-pins.txt \
	  --output-file image-build/constraints.txt pyproject.toml
