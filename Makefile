# Every target installs what it needs itself and is safe to re-run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
NAME ?= pgha
DEBS := systemd-container debootstrap nftables iproute2 openssh-client nodejs
# The headless browser the report's test renders report.html with (without its recommends).
BROWSER_DEBS := chromium
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# One directory per invocation of `make test` or `make drill`: every pytest run it starts (the
# detection run's many) writes reports/<target>-<time>/<run id>/ (deployer/paths.py).
STAMP := $(shell date +%Y%m%d-%H%M%S)
drill test: export PGHA_INVOCATION_DIR = reports/$@-$(STAMP)

.PHONY: drill test unit e2e deps venv checkov image azurite bench-deploy lint down clean mutation bench-smoke bench-failover bench-restore

## drill: deploy the staged stack on the local target, run the suites, write reports/, tear down
drill: deps venv image azurite
	$(PY) -m pytest suites --stack $(NAME) -p no:cacheprovider -v

## test: the project's tests: unit tests first, then a real local deploy, its checks and teardown
test: deps venv checkov image azurite
	$(PY) -m pytest tests -m "not e2e" -p no:cacheprovider -q -n 2
	cd ansible && ../$(VENV)/bin/ansible-lint
	$(PY) -m pytest tests -m e2e -p no:cacheprovider -v

unit: venv
	$(PY) -m pytest tests -m "not e2e" -p no:cacheprovider -q -n 2

# $(call install_debs,PACKAGES,APT-GET OPTIONS): install those of PACKAGES not installed yet.
define install_debs
@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
if [ -n "$$missing" ]; then echo "installing Debian packages: $$missing"; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing; fi
endef

deps:
	$(call install_debs,$(DEBS),)
	$(call install_debs,$(BROWSER_DEBS),--no-install-recommends)

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

checkov: .venv-checkov/.installed
.venv-checkov/.installed: requirements-checkov.txt
	test -x .venv-checkov/bin/python || python3 -m venv .venv-checkov
	.venv-checkov/bin/pip install -q -r requirements-checkov.txt
	touch $@

## azurite: install the blob endpoint's emulator the local target runs (npm, pinned, outside the checkout)
azurite: deps venv
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
	$(PY) -c 'from deployer.targets.local import storage; storage.install()'

## image: bake the VM image (cached by content hash under /var/cache/pgha/images)
image: deps venv
	$(PY) -m deployer.cli image

## mutation: mutmut over the contract checks, the checkers and the spec model -> reports/mutation.json
mutation: venv
	rm -rf mutants
	$(VENV)/bin/mutmut run > /dev/null || true
	$(VENV)/bin/mutmut export-cicd-stats
	$(PY) -m deployer.mutation mutants/mutmut-cicd-stats.json reports/mutation.json

## bench-smoke: seconds of `pytest -m smoke` on a live stack (deployed first if absent), proof it changed nothing
bench-smoke: deps venv image
	$(PY) -m deployer.cli status --name $(NAME) > /dev/null 2>&1 || $(PY) -m deployer.cli up --name $(NAME)
	$(PY) -m deployer.smoke_bench --name $(NAME)

## bench-failover: crash, isolation, switchover and postmaster-kill drills 5 times each for three
## profiles -> reports/failover.json and reports/failover.png (about 70 minutes; tears the stack down)
bench-failover: deps venv image
	$(PY) -m deployer.drills.bench --name $(NAME)

## bench-restore: pgBackRest's restore time and throughput for pgbench -i databases of each scale in SCALES, beside a
## plain copy of the data directory -> reports/restore.json (deploys the stack $(BENCH_STACK) if absent, restores it
## in place, tears it down)
BENCH_STACK ?= bench
SCALES ?= 1,10,50
bench-restore: deps venv image azurite
	( $(PY) -m deployer.cli status --name $(BENCH_STACK) > /dev/null 2>&1 || $(PY) -m deployer.cli up --name $(BENCH_STACK) ) \
	  && $(PY) -m deployer.restore_bench --stack $(BENCH_STACK) --scales $(SCALES); \
	  rc=$$?; $(PY) -m deployer.cli down --name $(BENCH_STACK); exit $$rc

bench-deploy: deps venv
	$(PY) -m deployer.targets.local.bench --name $(NAME)

lint: venv
	cd ansible && ../$(VENV)/bin/ansible-lint

down: venv
	$(PY) -m deployer.cli down --name $(NAME)
