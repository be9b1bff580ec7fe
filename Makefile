# redeem-kiosk developer entry points. Every target installs what it needs first:
# missing Debian packages (apt-get, as root or through sudo), then the virtual
# environment with the project and its dev extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tests and screenshots draw real Kivy windows; without a display they get a virtual one.
XRUN   := xvfb-run -a -s "-screen 0 1280x1280x24 -nolisten tcp"

.PHONY: venv system-deps demo demo-hq test vpi-test lint bench fuzz chaos clean catalogs hq-catalogs constraints

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

# HQ's dashboard on SQLite with a throwaway broker and three demo kiosks (docs/hq.md)
demo-hq: venv
	$(BIN)/kiosk-hq demo

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

# Translations (Babel, a dev-time tool; the kiosk and HQ read the committed .mo files with
# the stdlib gettext). Extract the marked strings into the .pot, merge them into every
# language's .po (translate the new, empty entries there: en too), compile the .mo files,
# commit all three. tests/test_i18n.py and tests/test_hq_i18n.py fail on anything missed.
# Kiosk: domain "kiosk" (babel.cfg, kiosk/assets/locale); HQ's dashboard: domain "hq".
KIOSK_LOCALE := kiosk/assets/locale
HQ_LOCALE := sync/hq/web/locale
catalogs: venv
	$(BIN)/pybabel -q extract -F babel.cfg -k tr -k N_ -k _ -k Msg --no-location --omit-header --sort-output -o $(KIOSK_LOCALE)/kiosk.pot .
	$(BIN)/pybabel -q update -D kiosk -i $(KIOSK_LOCALE)/kiosk.pot -d $(KIOSK_LOCALE) --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel -q compile -D kiosk -d $(KIOSK_LOCALE)
	$(BIN)/pybabel -q extract -F babel-hq.cfg -k N_ --no-location --omit-header -o $(HQ_LOCALE)/hq.pot .
	$(BIN)/pybabel -q update -D hq -i $(HQ_LOCALE)/hq.pot -d $(HQ_LOCALE)
	$(BIN)/pybabel -q compile -D hq -d $(HQ_LOCALE)

hq-catalogs: catalogs

# Long fuzzing pass over the parsers of untrusted input (tests/fuzz); `make test` runs
# the same targets with 100-150 inputs each. FUZZ_EXAMPLES=N sets the inputs per target.
FUZZ_EXAMPLES ?= 20000
fuzz: venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/fuzz tests/security/test_fuzz_mqtt.py \
	  -s -q --timeout=0 -p no:cacheprovider

# kill -9 of agents and collector and broker restarts while kiosks redeem (bench/chaos.py):
# prints cycles, confirmed, at HQ, lost, double-counted. CHAOS_CYCLES=N (default 200).
CHAOS_CYCLES ?= 200
chaos: venv
	$(BIN)/python bench/chaos.py --cycles $(CHAOS_CYCLES)

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
