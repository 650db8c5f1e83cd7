# The one interface to the project. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --no-print-directory

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# BOOTSTRAP=0 in the container image, whose environment is built when the image is.
BOOTSTRAP ?= 1
ENV_READY := $(if $(filter 1,$(BOOTSTRAP)),venv)
PACKAGES := storage-links scraping modelling forecasting

# ---- variables a user sets, checked before anything runs -------------------------
STAGES := scraping modelling forecasting upload
LOG_LEVELS := DEBUG INFO WARNING ERROR
PROFILES := local prod
SKIP ?=
LOG_LEVEL ?= INFO
# The environment's PIPELINE_PROFILE (the container's, set by compose or ACI) unless PROFILE is given.
PROFILE ?= $(or $(PIPELINE_PROFILE),local)
PROFILE_FROM := $(if $(and $(filter file,$(origin PROFILE)),$(PIPELINE_PROFILE)), (from PIPELINE_PROFILE))
DRY_RUN ?=
# Upper case without a shell: a level is accepted in any case, as the stages' --log-level takes it.
uppercase = $(subst a,A,$(subst b,B,$(subst c,C,$(subst d,D,$(subst e,E,$(subst f,F,$(subst g,G,$(subst h,H,$(subst i,I,$(subst j,J,$(subst k,K,$(subst l,L,$(subst m,M,$(subst n,N,$(subst o,O,$(subst p,P,$(subst q,Q,$(subst r,R,$(subst s,S,$(subst t,T,$(subst u,U,$(subst v,V,$(subst w,W,$(subst x,X,$(subst y,Y,$(subst z,Z,$(1)))))))))))))))))))))))))))
override LOG_LEVEL := $(call uppercase,$(LOG_LEVEL))

# Checked only for the targets that use them, so that an unrelated LOG_LEVEL or PIPELINE_PROFILE
# in the environment does not stop `make help` or `make test`.
ifneq ($(filter run stages,$(MAKECMDGOALS)),)
ifneq ($(filter-out $(STAGES),$(SKIP)),)
$(error SKIP: unknown stage '$(filter-out $(STAGES),$(SKIP))'; allowed: $(STAGES))
endif
ifneq ($(words $(LOG_LEVEL)),1)
$(error LOG_LEVEL: '$(LOG_LEVEL)' is not one level; allowed: $(LOG_LEVELS))
endif
ifeq ($(filter $(LOG_LEVEL),$(LOG_LEVELS)),)
$(error LOG_LEVEL: unknown level '$(LOG_LEVEL)'; allowed: $(LOG_LEVELS))
endif
ifneq ($(words $(PROFILE)),1)
$(error PROFILE: '$(PROFILE)'$(PROFILE_FROM) is not one profile; allowed: $(PROFILES))
endif
ifeq ($(filter $(PROFILE),$(PROFILES)),)
$(error PROFILE: unknown profile '$(PROFILE)'$(PROFILE_FROM); allowed: $(PROFILES))
endif
endif
ifneq ($(filter deploy-prod,$(MAKECMDGOALS)),)
ifneq ($(filter-out 0 1,$(DRY_RUN)),)
$(error DRY_RUN: '$(DRY_RUN)' must be 1 or 0)
endif
endif
ifneq ($(filter-out 0 1,$(BOOTSTRAP)),)
$(error BOOTSTRAP: '$(BOOTSTRAP)' must be 1 or 0)
endif

# One run id ties the stages' outputs and the log file together.
# Computed once (:=) and exported, so the sub-make for the stages sees the same id.
ifndef RUN_ID
RUN_ID := $(shell date -u +%Y%m%dT%H%M%SZ)-$(shell od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
endif
export RUN_ID
export PIPELINE_RUN_ID := $(RUN_ID)
export PIPELINE_PROFILE := $(PROFILE)

.PHONY: help venv run stages validate-links test test-services lint bench image deploy-prod clean

help:
	@echo "make run             links -> scraping -> modelling -> forecasting -> upload"
	@echo "                     SKIP='$(STAGES)' (any subset)  LOG_LEVEL=$(LOG_LEVELS)  PROFILE=$(PROFILES)"
	@echo "make validate-links  check every data-dir symlink against the contracts"
	@echo "make test            every package in isolation (tox), cross-package tests, ruff, import contract"
	@echo "make bench           benchmarks; results under bench/results/"
	@echo "make image           build the container image (needs a Docker engine)"
	@echo "make deploy-prod     build, push, deploy to Azure Container Instances (DRY_RUN=1: render and validate only)"

# ---- environment -------------------------------------------------------------
# The stamp is rebuilt whenever a pyproject changes, so a pull that adds a dependency installs it.
$(VENV)/.stamp: pyproject.toml $(foreach p,$(PACKAGES),packages/$(p)/pyproject.toml) requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	@$(BIN)/uv pip install --quiet --python $(BIN)/python $(foreach p,$(PACKAGES),-e packages/$(p)) -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.stamp

# ---- the pipeline --------------------------------------------------------------
run: $(ENV_READY)
	@$(BIN)/storage-links init
	@$(MAKE) stages

# The stage sequence, without link set-up (the container's entrypoint runs init itself).
stages: $(ENV_READY)
	@echo "run $(RUN_ID): profile $(PROFILE), log level $(LOG_LEVEL), skipping: $(or $(SKIP),nothing)" >&2
	$(if $(filter scraping,$(SKIP)),@echo "skip scraping" >&2,@$(BIN)/python -m scraping run --log-level $(LOG_LEVEL))
	$(if $(filter modelling,$(SKIP)),@echo "skip modelling" >&2,@$(BIN)/python -m modelling run --log-level $(LOG_LEVEL))
	$(if $(filter forecasting,$(SKIP)),@echo "skip forecasting" >&2,@$(BIN)/python -m forecasting run --log-level $(LOG_LEVEL))
	$(if $(filter upload,$(SKIP)),@echo "skip upload" >&2,@$(BIN)/python -m forecasting upload --log-level $(LOG_LEVEL))

validate-links: $(ENV_READY)
	@$(BIN)/storage-links validate

# ---- checks --------------------------------------------------------------------
test-services:
	@bash scripts/install-test-services.sh

lint: venv
	@$(BIN)/ruff check .
	@$(BIN)/lint-imports

test: venv test-services lint
	@$(BIN)/tox run-parallel --parallel 2 --parallel-no-spinner -q
	@$(BIN)/pytest tests

bench: venv
	@for script in bench/bench_*.py; do echo "== $$script" >&2; $(BIN)/python "$$script"; done

# ---- container and deployment ----------------------------------------------------
image:
	@bash docker/build.sh

deploy-prod: venv
	@DRY_RUN=$(DRY_RUN) bash docker/deploy.sh

clean:
	rm -rf $(VENV) .tox .pytest_cache .ruff_cache

# Make must not try to rebuild these through the catch-all below.
Makefile requirements-dev.txt pyproject.toml $(foreach p,$(PACKAGES),packages/$(p)/pyproject.toml): ;

%:
	@echo "make: unknown target '$@'; run 'make help' for the targets" >&2; exit 2
