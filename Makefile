# qkernels: the two commands a user needs are `make demo` and `make test`.
# Both create .venv on first use and install the pinned requirements from the package index.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deps-stamp
CC     ?= cc

# The C library by layer (see ARCHITECTURE.md); csrc/python (the NumPy glue) and
# csrc/examples are not part of it.
LIB_DIRS  := core elementwise ukernels operators
HEADERS   := $(wildcard csrc/include/*.h csrc/*.h $(LIB_DIRS:%=csrc/%/*.h))
LIB_SRCS  := $(wildcard $(LIB_DIRS:%=csrc/%/*.c))
LIB_OBJS  := $(patsubst csrc/%.c,build/clib/%.o,$(LIB_SRCS))
CFLAGS_LIB := -std=c11 -O2 -ffp-contract=off -fno-math-errno -Wall -Wextra -Werror -pthread \
              -Icsrc/include -Icsrc
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g

.PHONY: all venv build test demo lib ctest bench sanitize clean demo-layernorm fuzz fuzz-c fuzz-py fuzz-cov

all: build

$(STAMP): requirements-dev.txt requirements-zoo.txt
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing the pinned requirements into $(VENV) (first run only: about 1.6 GB --"
	@echo "PyTorch CPU, ONNX Runtime, transformers, scikit-learn -- a few minutes)"
	$(PY) -m pip install --progress-bar off -r requirements-dev.txt
	$(PY) -m pip install --progress-bar off -q --no-deps --upgrade --target $(VENV)/torchvision-zoo -r requirements-zoo.txt
	QKERNELS_WERROR=1 $(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

venv: $(STAMP)

# The extension, built in place (qkernels/_core*.so) with -Werror.
build: $(STAMP)
	QKERNELS_WERROR=1 $(PY) setup.py -q build_ext --inplace

test: build ctest
	$(PY) -m pytest -q tests

demo: build
	$(PY) scripts/demo.py

bench: build
	$(PY) scripts/bench.py

# The plain C library, no Python: build/libqkernels.a
lib: build/libqkernels.a

build/clib/%.o: csrc/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_LIB) -c $< -o $@

build/libqkernels.a: $(LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

# The C test programs (one per tests/c/test_*.c), linked against the static library only;
# tests/c/test_clib.py runs each of them.
CTEST_SRCS := $(wildcard tests/c/test_*.c)
CTESTS     := $(patsubst tests/c/%.c,build/ctest/%,$(CTEST_SRCS))

build/ctest/%: tests/c/%.c tests/c/qk_test.h build/libqkernels.a
	@mkdir -p build/ctest
	$(CC) $(CFLAGS_LIB) -Itests/c $< -Lbuild -lqkernels -lm -pthread -o $@

ctest: $(CTESTS)

# Sanitizer run: the C test programs (each on the best, the AVX2 and the scalar path) and the
# Python kernel tests against an -fsanitize=address,undefined build (tests marked
# torch/onnx/packaging stay out: see tests/conftest.py).
sanitize: $(STAMP)
	@mkdir -p build/asan
	for t in $(CTEST_SRCS); do \
	  $(CC) $(CFLAGS_LIB) $(SAN_FLAGS) -O1 -Itests/c $$t $(LIB_SRCS) -lm -pthread -o build/asan/$$(basename $$t .c) || exit 1; \
	  for simd in auto avx2 scalar; do \
	    echo "$$(basename $$t .c) QKERNELS_SIMD=$$simd"; \
	    QKERNELS_SIMD=$$simd ASAN_OPTIONS=detect_leaks=0 build/asan/$$(basename $$t .c) || exit 1; \
	  done; \
	done
	rm -rf build/asan/pkg && mkdir -p build/asan/pkg
	QKERNELS_WERROR=1 QKERNELS_SANITIZE=1 $(PY) setup.py -q build_ext --build-lib build/asan/pkg --build-temp build/asan/tmp --force
	cp qkernels/*.py build/asan/pkg/qkernels/
	for d in qkernels/*/; do [ -d "$$d" ] && [ "$$(basename $$d)" != "__pycache__" ] && cp -r "$$d" build/asan/pkg/qkernels/ || true; done
	mkdir -p build/asan/pkg/qkernels/include && cp csrc/include/qkernels.h build/asan/pkg/qkernels/include/
	cd build/asan/pkg && PYTHONPATH=$(CURDIR)/build/asan/pkg QKERNELS_SANITIZED=1 ASAN_OPTIONS=detect_leaks=0 \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ../../../$(PY) -P -m pytest -q -p no:cacheprovider -m "not torch and not onnx" ../../../tests

clean:
	rm -rf build qkernels/*.so qkernels/lib

# The C example of the PTF / integer LayerNorm pipeline (reads data/quantized/, see make demo-layernorm).
build/layernorm_golden: csrc/examples/layernorm_golden.c build/libqkernels.a
	$(CC) $(CFLAGS_LIB) $< -Lbuild -lqkernels -lm -pthread -o $@

demo-layernorm: build build/layernorm_golden
	$(PY) scripts/demo_layernorm.py

# The C example that runs one exported conv layer (IntegerModel.export) from its text files.
build/conv_layer_golden: csrc/examples/conv_layer_golden.c build/libqkernels.a
	$(CC) $(CFLAGS_LIB) $< -Lbuild -lqkernels -lm -pthread -o $@

# The C example that reproduces a whole integer encoder block (python -m qkernels collect --block N).
build/block_golden: csrc/examples/block_golden.c build/libqkernels.a
	$(CC) $(CFLAGS_LIB) $< -Lbuild -lqkernels -lm -pthread -o $@

# ---- fuzzing: `make fuzz` (FUZZ_SECONDS per fuzzer, default 60; corpora kept in build/fuzz) ------
# fuzz-c: libFuzzer over every C entry point (fuzz/c/ops.c), under ASan + UBSan, with the library
# linked twice: copy A on the CPU's best path, copy B (symbols renamed qkB_*, its getenv routed by
# fuzz/c/fuzz_c.c) forced to QKERNELS_SIMD=$$FUZZ_B_SIMD (default scalar); every status and output
# byte must agree, and copy A checks the contract against references.
# fuzz-py: atheris over the Python API (fuzz/py/fuzz_api.py) against a clang ASan/UBSan build of
# the extension. Needs clang with libFuzzer (Debian: apt-get install -y clang).
CLANG ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
FUZZ_FLAGS := -std=c11 -g -O1 -fno-omit-frame-pointer -ffp-contract=off -fno-math-errno \
              -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
              -Icsrc/include -Icsrc -Itests/c
FUZZ_SRCS := $(LIB_SRCS) fuzz/c/ops.c

build/fuzz/fuzz_c: fuzz/c/fuzz_c.c $(FUZZ_SRCS) $(HEADERS)
	@command -v $(CLANG) >/dev/null || { echo "make fuzz needs clang with libFuzzer (apt-get install -y clang)"; exit 1; }
	rm -rf build/fuzz/obj && mkdir -p build/fuzz/obj
	for s in $(FUZZ_SRCS); do \
	  $(CLANG) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $$s -o build/fuzz/obj/$$(echo $$s | tr / _).o || exit 1; \
	done
	ld -r -o build/fuzz/copy_a.o build/fuzz/obj/*.o
	nm -g --defined-only build/fuzz/copy_a.o | awk '{print $$3" qkB_"$$3}' > build/fuzz/rename_b.txt
	echo "getenv qkB_getenv" >> build/fuzz/rename_b.txt
	objcopy --redefine-syms=build/fuzz/rename_b.txt build/fuzz/copy_a.o build/fuzz/copy_b.o
	$(CLANG) $(FUZZ_FLAGS) -fsanitize=fuzzer $< build/fuzz/copy_a.o build/fuzz/copy_b.o -lm -pthread -o $@

fuzz-c: build/fuzz/fuzz_c
	@mkdir -p build/fuzz/corpus_c
	build/fuzz/fuzz_c -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=30 -rss_limit_mb=4096 \
	  -jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS) -artifact_prefix=build/fuzz/ -print_final_stats=1 \
	  build/fuzz/corpus_c

FUZZ_PY := build/fuzz/pyvenv/bin/python
$(FUZZ_PY): fuzz/requirements.txt
	@command -v $(CLANG) >/dev/null || { echo "make fuzz needs clang with libFuzzer (apt-get install -y clang)"; exit 1; }
	test -x $(FUZZ_PY) || $(PYTHON) -m venv build/fuzz/pyvenv
	$(FUZZ_PY) -m pip install -q -r fuzz/requirements.txt
	touch $@

# the extension built by clang with ASan + UBSan and libFuzzer's coverage hooks
build/fuzz/pkg/.stamp: $(FUZZ_PY) $(LIB_SRCS) $(wildcard csrc/python/*.c csrc/python/*.h) $(HEADERS) $(wildcard qkernels/*.py qkernels/*/*.py)
	rm -rf build/fuzz/pkg && mkdir -p build/fuzz/pkg
	CC=$(CLANG) CFLAGS="-fsanitize=fuzzer-no-link" QKERNELS_SANITIZE=1 $(FUZZ_PY) setup.py -q \
	  build_ext --build-lib build/fuzz/pkg --build-temp build/fuzz/pytmp --force
	cp qkernels/*.py build/fuzz/pkg/qkernels/
	for d in qkernels/*/; do [ -d "$$d" ] && [ "$$(basename $$d)" != "__pycache__" ] && cp -r "$$d" build/fuzz/pkg/qkernels/ || true; done
	touch $@

fuzz-py: build/fuzz/pkg/.stamp
	@mkdir -p build/fuzz/corpus_py
	cd build/fuzz/pkg && PYTHONPATH=$(CURDIR)/build/fuzz/pkg \
	  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  LD_PRELOAD="$$($(CURDIR)/$(FUZZ_PY) -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')" \
	  $(CURDIR)/$(FUZZ_PY) -P $(CURDIR)/fuzz/py/fuzz_api.py -max_total_time=$(FUZZ_SECONDS) -timeout=60 \
	  -rss_limit_mb=4096 -artifact_prefix=$(CURDIR)/build/fuzz/py- -print_final_stats=1 $(CURDIR)/build/fuzz/corpus_py

fuzz: fuzz-c fuzz-py

# Source-based line/region coverage of the C library reached by the fuzz-c corpus (replayed on
# the auto, avx2 and scalar paths).
fuzz-cov:
	$(CLANG) -std=c11 -O1 -g -ffp-contract=off -fprofile-instr-generate -fcoverage-mapping \
	  -fsanitize=fuzzer -DQK_FUZZ_COVERAGE -Icsrc/include -Icsrc -Itests/c fuzz/c/fuzz_c.c \
	  fuzz/c/ops.c $(LIB_SRCS) -lm -pthread -o build/fuzz/fuzz_cov
	for simd in auto avx2 scalar; do \
	  QKERNELS_SIMD=$$simd LLVM_PROFILE_FILE=build/fuzz/cov_$$simd.profraw build/fuzz/fuzz_cov -runs=0 build/fuzz/corpus_c 2>/dev/null; \
	done
	llvm-profdata merge -sparse build/fuzz/cov_auto.profraw build/fuzz/cov_avx2.profraw \
	  build/fuzz/cov_scalar.profraw -o build/fuzz/cov.profdata
	llvm-cov report build/fuzz/fuzz_cov -instr-profile=build/fuzz/cov.profdata $(LIB_SRCS)
