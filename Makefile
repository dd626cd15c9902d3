# Two commands: `make demo` runs the whole method on the built-in toy world; `make test` runs the tests.
# Both install what they need into the active Python (use a virtualenv if you like).
PY ?= python

.PHONY: install demo test
install:
	$(PY) -m pip install -q -r requirements.txt

demo: install
	$(PY) data.py toy

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests
