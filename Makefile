# Two commands: `make demo` runs the whole method on the built-in toy world; `make test` runs the tests.
# Both install what they need into the active Python (use a virtualenv if you like).
PY ?= python
RUNS ?= runs

.PHONY: install install-libero demo test
install:
	$(PY) -m pip install -q -r requirements.txt

# the LIBERO simulator stack (libero_sim.py): headless-GL system libraries, then the pinned packages.
# robosuite's setup_macros.py only silences its "No private macro file" warnings.
APT_GL = libegl1 libgl1 libopengl0 libgl1-mesa-dri libglib2.0-0 libosmesa6
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
install-libero: install
	@$(SUDO) apt-get install -y -qq --no-install-recommends $(APT_GL) > /dev/null 2>&1 || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_GL) > /dev/null) || \
		echo "warning: apt-get could not install $(APT_GL); if rendering fails, install them with your package manager"
	$(PY) -m pip install -q -r requirements.txt -r requirements-libero.txt
	$(PY) -c "import robosuite, runpy, os; runpy.run_path(os.path.join(robosuite.__path__[0], 'scripts', 'setup_macros.py'), run_name='__main__')" > /dev/null 2>&1

# toy data -> stage 1 (latent pretraining on action-free source video) -> stage 2 (5 demos per task)
# -> closed-loop success of the pretrained and the from-scratch policy -> held-out CCA of the latents.
# --overwrite: a second `make demo` starts the runs again instead of stopping at the existing ones.
demo: install
	$(PY) convert.py toy
	$(PY) pretrain.py --out_dir $(RUNS)/pretrain --overwrite
	$(PY) finetune.py --init $(RUNS)/pretrain/ckpt.pt --out_dir $(RUNS)/finetune --overwrite
	$(PY) finetune.py --out_dir $(RUNS)/scratch --overwrite
	$(PY) evaluate.py --ckpt $(RUNS)/finetune/ckpt.pt
	$(PY) evaluate.py --ckpt $(RUNS)/scratch/ckpt.pt
	$(PY) cca.py --ckpt $(RUNS)/pretrain/ckpt.pt

# the tests also need requirements-test.txt: wandb, optional for users (--wandb), run offline by tests/test_tracking.py,
# and pytest-xdist: two worker processes, each test file on one of them (its module fixtures built once);
# --durations: the slowest tests last, to keep the suite under ~15 minutes on 2 cores
test:
	$(PY) -m pip install -q -r requirements.txt -r requirements-test.txt
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --durations 15 tests
