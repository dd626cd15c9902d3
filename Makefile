# Two commands: `make demo` runs the whole method on the built-in toy world; `make test` runs the tests.
# Both install what they need into the active Python (use a virtualenv if you like).
PY ?= python
RUNS ?= runs

.PHONY: install demo test
install:
	$(PY) -m pip install -q -r requirements.txt

# toy data -> stage 1 (latent pretraining on action-free source video) -> stage 2 (5 demos per task)
# -> closed-loop success of the pretrained and the from-scratch policy -> CCA of the latents
demo: install
	$(PY) data.py toy
	$(PY) pretrain.py --out_dir $(RUNS)/pretrain
	$(PY) finetune.py --init $(RUNS)/pretrain/ckpt.pt --out_dir $(RUNS)/finetune
	$(PY) finetune.py --out_dir $(RUNS)/scratch
	$(PY) evaluate.py --ckpt $(RUNS)/finetune/ckpt.pt
	$(PY) evaluate.py --ckpt $(RUNS)/scratch/ckpt.pt
	$(PY) cca.py --ckpt $(RUNS)/pretrain/ckpt.pt

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests
