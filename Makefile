# Two commands for a fresh clone:
#   make demo   set up .venv and run the whole job on the embedded synthetic data, then the shipped model
#   make test   set up .venv and run the tests
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
DEMO   ?= demo
EPOCHS ?= 8

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py constraints.txt scripts/ensure_pillow_simd.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[train,cluster,dev]"
	bash scripts/ensure_pillow_simd.sh $(PY)
	touch $@

demo: setup
	$(VENV)/bin/galaxyprep synth --n 2000 --n-test 200 --out $(DEMO)/data --overwrite
	$(VENV)/bin/galaxyprep synth --n 400 --seed 1 --out $(DEMO)/holdout --overwrite
	$(VENV)/bin/galaxyprep build --images $(DEMO)/data/images_training_rev1 --labels $(DEMO)/data/training_solutions_rev1.csv --crop 200 --size 64 --out $(DEMO)/train.h5
	$(VENV)/bin/galaxyprep build --images $(DEMO)/holdout/images_training_rev1 --labels $(DEMO)/holdout/training_solutions_rev1.csv --crop 200 --size 64 --out $(DEMO)/holdout.h5
	$(VENV)/bin/galaxyprep build --images $(DEMO)/data/images_test_rev1 --crop 200 --size 64 --out $(DEMO)/test.h5
	$(VENV)/bin/galaxyprep info $(DEMO)/train.h5
	$(VENV)/bin/galaxyprep preview $(DEMO)/train.h5 --out $(DEMO)/preview.png
	$(VENV)/bin/galaxytrain fit --data $(DEMO)/train.h5 --out $(DEMO)/runs/vgg6 --model vgg6 --epochs $(EPOCHS) --batch-size 64 --augment dihedral --overwrite
	$(VENV)/bin/galaxytrain score --run $(DEMO)/runs/vgg6 --data $(DEMO)/holdout.h5 --report $(DEMO)/report.json --tta 4
	$(VENV)/bin/galaxytrain predict --run $(DEMO)/runs/vgg6 --data $(DEMO)/test.h5 --out $(DEMO)/submission.csv --tta 4
	$(VENV)/bin/galaxytrain predict --pretrained best --images $(DEMO)/data/images_test_rev1 --out $(DEMO)/submission_pretrained.csv --no-progress

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(DEMO) .pytest_cache
