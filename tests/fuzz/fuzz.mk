# libFuzzer harnesses: tests/fuzz/fuzz_<name>.c, built with clang, ASan and
# UBSan (and libFuzzer's coverage) into $(FUZZ_BUILD), every source of the
# proxy, the comparator and the report compiled again for it. Included by the
# build.mk; needs clang and libclang-rt-14-dev (scripts/deps.sh --fuzz).
# A harness with a tests/fuzz/<name>.dict gets it as its libFuzzer dictionary.
#
#   make fuzz-build               the harnesses
#   make fuzz FUZZ_SECONDS=60     runs each for that long, one after another,
#                                 from tests/fuzz/corpus/<name> (seeds, read
#                                 only) and $(FUZZ_BUILD)/corpus/<name> (what
#                                 it finds); fails on a crash, a leak, a
#                                 sanitizer report or an input over 20 s.
#   make fuzz FUZZERS="rules"     only some of them
# A failing input is kept as $(FUZZ_BUILD)/artifacts/<name>-crash-<sha1>;
# replay it with $(FUZZ_BUILD)/fuzz_<name> FILE.

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 32768
FUZZERS      ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   := -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_WARN     := -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter
FUZZ_LLHTTP   ?= /usr/share/llhttp
FUZZ_LLINC    ?= /usr/share/include/llhttp
FUZZ_PKGS     := libuv libssl libcrypto hiredis jansson
FUZZ_CPPFLAGS := -D_GNU_SOURCE -DST_VERSION='"fuzz"' -Iinclude -I$(FUZZ_LLINC) \
                 $(shell pkg-config --cflags $(FUZZ_PKGS) 2>/dev/null)
FUZZ_LIBS     := $(shell pkg-config --libs $(FUZZ_PKGS) 2>/dev/null) -lpthread -lm

FUZZ_DEP_SRC := $(filter-out proxy/main.c report/main.c,$(wildcard proxy/*.c comparator/*.c report/*.c)) \
                $(wildcard comparator/ref/*.c) \
                tests/fuzz/proxy_fixture.c
FUZZ_DEP_OBJ := $(FUZZ_DEP_SRC:%.c=$(FUZZ_BUILD)/obj/%.o) \
                $(patsubst %,$(FUZZ_BUILD)/obj/llhttp/%.o,llhttp api http)

$(FUZZ_BUILD)/obj/llhttp/%.o: $(FUZZ_LLHTTP)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I$(FUZZ_LLINC) -w -c $< -o $@
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(FUZZ_WARN) -MMD -MP -c $< -o $@
$(FUZZ_BUILD)/libfuzzdeps.a: $(FUZZ_DEP_OBJ)
	rm -f $@ && $(AR) rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libfuzzdeps.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(FUZZ_LIBS)

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)
fuzz: fuzz-build
	@set -e; for f in $(FUZZERS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$f $(FUZZ_BUILD)/artifacts; \
	  echo "== fuzz_$$f: $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(FUZZ_BUILD)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2048 \
	    -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 -detect_leaks=1 \
	    $$([ -f tests/fuzz/$$f.dict ] && echo -dict=tests/fuzz/$$f.dict) \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$f- \
	    $(FUZZ_BUILD)/corpus/$$f tests/fuzz/corpus/$$f \
	    || { echo "fuzz_$$f FAILED (artifacts in $(FUZZ_BUILD)/artifacts)"; exit 1; }; \
	done

-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
