# shadowtee build. `make` builds the binaries into $(BUILD)/, `make check`
# runs unit + integration tests, `make asan` runs them under ASan+UBSan.
# Sources are picked up by directory, so a new file needs no edit here.

BUILD      ?= build
PREFIX     ?= /usr/local
CC         ?= cc
PYTHON     ?= /usr/bin/python3
LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
VERSION    := 0.1.0

PKGS      := libuv libssl libcrypto hiredis jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null)

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

.PHONY: all check unit integration asan valgrind bench demo deps install clean format format-check
.SECONDARY: # keep the test objects (no "rm build/obj/..." after a run)
all: $(BINS)

$(BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(LLHTTP_INC) -w -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $(CMOCKA_CFLAGS) -MMD -MP -c $< -o $@

$(LIBLLHTTP): $(LLHTTP_OBJ)
	$(AR) rcs $@ $^
$(LIBPROXY): $(PROXY_OBJ)
	$(AR) rcs $@ $^
$(LIBCMP): $(CMP_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/shadowtee: $(BUILD)/obj/proxy/main.o $(LIBPROXY) $(LIBCMP) $(LIBLLHTTP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/shadowtee-report: $(REPORT_OBJ) $(LIBCMP)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBPROXY) $(LIBCMP) $(LIBLLHTTP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS)

# Unit tests first (fast, no sockets), then the integration suite, which
# starts real upstreams, redis-server and the real binaries on loopback.
check: all $(UNIT_BIN)
	@$(MAKE) --no-print-directory unit BUILD=$(BUILD)
	@$(MAKE) --no-print-directory integration BUILD=$(BUILD)

# test_stats_redis and test_stats_fill need a redis-server / are drivers: the
# integration suite runs them with one (tests/integration/test_redis_sink.py, report_fill.py).
UNIT_RUN := $(filter-out %/test_stats_redis %/test_stats_fill,$(UNIT_BIN))
unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_RUN); do echo "== $$t"; $(TEST_WRAP) $$t; done

integration: all
	SHADOWTEE_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
asan:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) BUILD=build-asan CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" check

valgrind: all $(UNIT_BIN)
	$(MAKE) --no-print-directory unit TEST_WRAP="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"
	SHADOWTEE_VALGRIND=1 $(MAKE) --no-print-directory integration PYTEST_ARGS="-k 'basic or keepalive or chunked or tee_content or tee_breaker or tls or comparator_e2e or fuzz_regressions or drain_answers'"

$(BUILD)/cmp_bench: bench/cmp_bench.c $(LIBCMP)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $^ $(LDLIBS)

bench: all $(BUILD)/cmp_bench
	bash bench/run.sh

demo: deps all
	bash scripts/demo.sh

deps:
	bash scripts/deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/

format:
	clang-format -i $(wildcard proxy/*.[ch] comparator/*.[ch] report/*.[ch] include/shadowtee/*.h tests/unit/*.[ch] tests/fuzz/*.[ch])
format-check:
	clang-format --dry-run -Werror $(wildcard proxy/*.[ch] comparator/*.[ch] report/*.[ch] include/shadowtee/*.h tests/unit/*.[ch] tests/fuzz/*.[ch])

clean:
	rm -rf build build-asan build-fuzz

include tests/fuzz/fuzz.mk
include bench/faults/faults.mk

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
