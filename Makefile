# shadowtee. `make` builds build/shadowtee and build/shadowtee-report, `make
# check` runs the unit and integration tests, `make asan` the same under
# ASan+UBSan, `make tsan` under ThreadSanitizer, `make deps` installs the
# Debian packages (scripts/deps.sh).
#
# This file installs and checks; build.mk builds. Each goal first runs
# `scripts/deps.sh --check` (one line naming the Debian packages that are
# missing, instead of an empty flag list and a link error), then build.mk in
# a new make, which asks pkg-config and looks for the llhttp sources only
# then: after `make deps` has installed them in the same `make deps check`.

export LLHTTP_DIR ?= /usr/share/llhttp
export LLHTTP_INC ?= /usr/share/include/llhttp

GOALS := all check unit integration asan tsan valgrind bench install format format-check clean fuzz fuzz-build faults
.PHONY: $(GOALS) deps demo FORCE
# Goals run one at a time, in the order given: `make -j2 deps check`
# installs before it builds. build.mk still builds in parallel.
.NOTPARALLEL:

# what a goal needs, as groups of scripts/deps.sh
NEED := build
check integration asan tsan: NEED := build test
valgrind: NEED := build test valgrind
fuzz fuzz-build: NEED := build fuzz
faults: NEED := build test bench
bench: NEED := build bench
format format-check: NEED := format
clean: NEED :=

$(GOALS):
	@$(if $(NEED),bash scripts/deps.sh --check $(NEED))
	@$(MAKE) --no-print-directory -f build.mk $@

# a file of the build, such as build/tests/test_http
build/% build-asan/% build-tsan/%: FORCE
	@bash scripts/deps.sh --check build
	@$(MAKE) --no-print-directory -f build.mk $@
FORCE:

demo: deps
	@bash scripts/deps.sh --check build test
	@$(MAKE) --no-print-directory -f build.mk all
	bash scripts/demo.sh

deps:
	bash scripts/deps.sh
