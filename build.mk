# shadowtee build: the rules behind every goal of Makefile, which runs this
# file in a new make once scripts/deps.sh has installed and checked the
# packages, so pkg-config and $(LLHTTP_DIR) (both set by Makefile) are asked
# only when they are there. `all` builds the binaries into $(BUILD)/, `check`
# runs unit + integration tests, `asan` runs them under ASan+UBSan, `tsan`
# under ThreadSanitizer. Sources are picked up by directory, so a new file
# needs no edit here.

BUILD      ?= build
PREFIX     ?= /usr/local
PYTHON     ?= /usr/bin/python3
VERSION    := 0.1.0

PKGS      := libuv libssl libcrypto hiredis jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka)

CFLAGS   ?= -O2 -g
WARN     := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CPPFLAGS += -D_GNU_SOURCE -DST_VERSION='"$(VERSION)"' -Iinclude -I$(LLHTTP_INC) $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lpthread -lm

PROXY_SRC := $(filter-out proxy/main.c,$(wildcard proxy/*.c))
CMP_SRC   := $(wildcard comparator/*.c)
REPORT_SRC := $(wildcard report/*.c)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
LLHTTP_SRC := $(LLHTTP_DIR)/llhttp.c $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c

PROXY_OBJ  := $(PROXY_SRC:%.c=$(BUILD)/obj/%.o)
CMP_OBJ    := $(CMP_SRC:%.c=$(BUILD)/obj/%.o)
REPORT_OBJ := $(REPORT_SRC:%.c=$(BUILD)/obj/%.o)
LLHTTP_OBJ := $(patsubst $(LLHTTP_DIR)/%.c,$(BUILD)/obj/llhttp/%.o,$(LLHTTP_SRC))
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

LIBPROXY  := $(BUILD)/libstproxy.a
LIBCMP    := $(BUILD)/libstcmp.a
LIBLLHTTP := $(BUILD)/libllhttp.a

BINS := $(BUILD)/shadowtee
ifneq ($(REPORT_SRC),)
BINS += $(BUILD)/shadowtee-report
endif

.PHONY: all check unit integration asan tsan valgrind bench install clean format format-check fuzz
.SECONDARY: # keep the test objects (no "rm build/obj/..." after a run)
all: $(BINS)

$(BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(LLHTTP_INC) -w -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(CMOCKA_CFLAGS) -MMD -MP -c $< -o $@

$(LIBLLHTTP): $(LLHTTP_OBJ)
	rm -f $@ && $(AR) rcs $@ $^
$(LIBPROXY): $(PROXY_OBJ)
	rm -f $@ && $(AR) rcs $@ $^
$(LIBCMP): $(CMP_OBJ)
	rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/shadowtee: $(BUILD)/obj/proxy/main.o $(LIBPROXY) $(LIBCMP) $(LIBLLHTTP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The test build: the same program plus the test-only options of config.c
# (-DST_TEST_HOOKS: --test-compare-delay, a comparator held artificially
# slow). Only the integration tests run it; it is not part of `all` and never
# installed, and build/shadowtee rejects those flags like any unknown one.
TEST_BIN := $(BUILD)/shadowtee-test
$(BUILD)/obj/testhooks/proxy/config.o: proxy/config.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DST_TEST_HOOKS $(CFLAGS) $(WARN) -MMD -MP -c $< -o $@

# its config.o comes first, so the archive's copy is never pulled in
$(TEST_BIN): $(BUILD)/obj/proxy/main.o $(BUILD)/obj/testhooks/proxy/config.o $(LIBPROXY) $(LIBCMP) $(LIBLLHTTP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/shadowtee-report: $(REPORT_OBJ) $(LIBCMP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The comparator's previous engine (jansson trees), kept as the oracle of the
# differential test and the baseline of cmp_bench; shadowtee never links it.
REF_SRC   := $(wildcard comparator/ref/*.c)
LIBCMPREF := $(BUILD)/libstcmp_ref.a
$(LIBCMPREF): $(REF_SRC:%.c=$(BUILD)/obj/%.o)
	rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBPROXY) $(LIBCMPREF) $(LIBCMP) $(LIBLLHTTP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS)

# Unit tests first (fast, no sockets), then the integration suite, which
# starts real upstreams, redis-server and the real binaries on loopback.
check: all $(UNIT_BIN) $(TEST_BIN)
	@$(MAKE) --no-print-directory -f build.mk unit BUILD=$(BUILD)
	@$(MAKE) --no-print-directory -f build.mk integration BUILD=$(BUILD)

# test_stats_redis and test_stats_fill need a redis-server / are drivers: the
# integration suite runs them with one (tests/integration/test_redis_sink.py, report_fill.py).
UNIT_RUN := $(filter-out %/test_stats_redis %/test_stats_fill,$(UNIT_BIN))
unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_RUN); do echo "== $$t"; $(TEST_WRAP) $$t; done

integration: all $(TEST_BIN)
	SHADOWTEE_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -rfEs -p no:cacheprovider tests/integration $(PYTEST_ARGS)

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) --no-print-directory -f build.mk BUILD=build-asan CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" check

# ThreadSanitizer: the same suite with every thread's memory accesses checked
# (workers, comparator threads, admin); a report fails the test that caused it.
TSAN_FLAGS := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
tsan:
	TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 \
	  $(MAKE) --no-print-directory -f build.mk BUILD=build-tsan CFLAGS="$(TSAN_FLAGS)" LDFLAGS="-fsanitize=thread" check

# Memory errors and leaks under valgrind: the unit tests, and the integration
# tests that reach every module (two are left out: they time the client
# against a comparator or count the process's threads, and valgrind runs
# threads one at a time and names them after itself).
valgrind: all $(UNIT_BIN) $(TEST_BIN)
	$(MAKE) --no-print-directory -f build.mk unit TEST_WRAP="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"
	SHADOWTEE_VALGRIND=1 $(MAKE) --no-print-directory -f build.mk integration PYTEST_ARGS="-k '(basic or keepalive or chunked or tee_content or tee_breaker or tls or comparator_e2e or resolve or unix or edge or compare_thread or fuzz_regressions or drain_answers or mesh) and not below_the_workers and not costs_the_client_nothing'"

# Test-only LD_PRELOAD getaddrinfo for the resolver tests (tests/shim/resolve_shim.c);
# plain flags under `make asan` too: an uninstrumented preload needs no sanitizer runtime.
SHIM := $(BUILD)/tests/resolve_shim.so
$(SHIM): tests/shim/resolve_shim.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -shared -fPIC -o $@ $< -ldl
integration: $(SHIM)

$(BUILD)/head_bench: bench/head_bench.c $(LIBPROXY) $(LIBCMP) $(LIBLLHTTP)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $^ $(LDLIBS)

$(BUILD)/cmp_bench: bench/cmp_bench.c $(LIBCMPREF) $(LIBCMP)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $^ $(LDLIBS)

$(BUILD)/sample_bench: bench/sample_bench.c $(LIBCMP)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $^ $(LDLIBS)

bench: all $(BUILD)/cmp_bench
	bash bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/

FORMAT_SRC := $(wildcard proxy/*.[ch] comparator/*.[ch] comparator/ref/*.[ch] report/*.[ch] \
                include/shadowtee/*.h tests/unit/*.[ch] tests/fuzz/*.[ch] bench/*.c)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run -Werror $(FORMAT_SRC)

clean:
	rm -rf build build-asan build-tsan build-fuzz

include tests/fuzz/fuzz.mk
include bench/faults/faults.mk

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
