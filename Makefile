# rctasks: build the C core once per Lua ABI (5.4 and 5.1/LuaJIT), run the specs, the demo.
# `make test` and `make demo` install their own Debian packages first (scripts/deps).

CC       ?= cc
OPT      ?= -O2 -g
WARN     := -std=c99 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
DEFS     := -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden
# Lua headers only: the interpreter exports the API, never link liblua into the module (a second copy of the Lua runtime in one process corrupts its state).
LUA54_INC = $(shell pkg-config --cflags lua5.4)
JIT_INC   = $(shell pkg-config --cflags luajit)
CURL_LIBS = $(shell pkg-config --libs libcurl)
SRC      := $(wildcard csrc/*.c)
HDR      := $(wildcard csrc/*.h)

SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

.PHONY: all build deps test demo clean lint valgrind test-asan fuzz bench bench-fleet sim luarocks-check fuzz-ci

all: build
build: build/5.4/rctasks/core.so build/jit/rctasks/core.so

build/5.4/rctasks/core.so: $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(OPT) $(WARN) $(DEFS) $(LUA54_INC) -shared -o $@ $(SRC) $(CURL_LIBS)

build/jit/rctasks/core.so: $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(OPT) $(WARN) $(DEFS) $(JIT_INC) -shared -o $@ $(SRC) $(CURL_LIBS)

# Sanitizer build for Lua 5.4; -z nodelete keeps stacks readable after Lua unloads the module (its leak stacks then name functions, not "???").
build/asan/rctasks/core.so: $(SRC) $(HDR)
	@mkdir -p $(@D)
	clang -O1 -g $(WARN) $(DEFS) $(SAN) $(LUA54_INC) -shared -Wl,-z,nodelete -o $@ $(SRC) $(CURL_LIBS)

deps:
	@scripts/deps

test: deps build
	@scripts/test

demo: deps build
	@scripts/demo

# luacheck, and the layer check: no require cycle, no upward require, no file in lua/ over 500 lines.
lint:
	luacheck -q lua bin sim spec examples bench
	lua5.4 scripts/layers.lua

clean:
	rm -rf build

# The rockspec installs offline into a throwaway tree and the installed module loads (5.4, LuaJIT).
luarocks-check:
	@scripts/luarocks-check

# Leak loop: >= 1000 requests (successes and failures) through the 5.4 build under valgrind (scripts/valgrind).
valgrind: build
	@scripts/valgrind

# Fuzzing: libFuzzer over the decoder and task model in a Lua 5.4 state. liblua is linked
# into the fuzzer only, never the module. Runs on a copy of the seed corpus; any crash fails the target.
FUZZ_SECONDS ?= 60
FUZZ_SRC := fuzz/fuzz_decode.c csrc/json.c csrc/task.c
build/fuzz/fuzz_decode: $(FUZZ_SRC) $(HDR)
	@mkdir -p $(@D)
	clang -O1 -g $(WARN) -D_POSIX_C_SOURCE=200809L -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined $(LUA54_INC) -o $@ $(FUZZ_SRC) $(shell pkg-config --libs lua5.4)

fuzz: build/fuzz/fuzz_decode
	rm -rf build/fuzz/corpus && mkdir -p build/fuzz/corpus && cp fuzz/corpus/* build/fuzz/corpus/
	build/fuzz/fuzz_decode -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -dict=fuzz/json.dict \
	  -artifact_prefix=build/fuzz/ -print_final_stats=1 build/fuzz/corpus

# The short bounded fuzz run that make test gates on (about a minute).
fuzz-ci:
	@mkdir -p build; $(MAKE) -s fuzz FUZZ_SECONDS=60 > build/fuzz-ci.log 2>&1; rc=$$?; \
	  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)' build/fuzz-ci.log; \
	  [ $$rc -eq 0 ] || tail -30 build/fuzz-ci.log; exit $$rc

# The whole Lua 5.4 suite once under ASan + UBSan with LeakSanitizer on (scripts/asan); any finding fails.
test-asan: build/asan/rctasks/core.so
	@scripts/asan

# Benchmarks against the alternatives: starts its own sim and nginx, writes bench/RESULTS.md.
bench: deps build
	@lua5.4 bench/run.lua $(BENCH_ARGS)

# Fleet benchmarks (issue 12): budgets and watches shared through Redis by many processes and nginx
# workers, Redis killed mid-run, 10,000 background waits; starts its own sim, redis and nginx; writes
# the Fleet section of bench/RESULTS.md. BENCH_FLEET_ARGS=smoke=1 for the quick run.
bench-fleet: deps build
	@lua5.4 bench/fleet.lua $(BENCH_FLEET_ARGS)
