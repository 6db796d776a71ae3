# qkernels: the two commands a user needs are `make demo` and `make test`.
# Both create .venv on first use and install the pinned requirements from the package index.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deps-stamp
CC     ?= cc

# The C library by layer (see docs-csrc-architecture.md); csrc/python (the NumPy glue) and
# csrc/examples are not part of it.
LIB_DIRS  := core elementwise ukernels operators
HEADERS   := $(wildcard csrc/include/*.h csrc/*.h $(LIB_DIRS:%=csrc/%/*.h))
LIB_SRCS  := $(wildcard $(LIB_DIRS:%=csrc/%/*.c))
LIB_OBJS  := $(patsubst csrc/%.c,build/clib/%.o,$(LIB_SRCS))
CFLAGS_LIB := -std=c11 -O2 -ffp-contract=off -fno-math-errno -Wall -Wextra -Werror -pthread \
              -Icsrc/include -Icsrc
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g

.PHONY: all venv build test demo lib ctest bench sanitize clean demo-layernorm

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

# Sanitizer run: the C test program and the Python kernel tests against an
# -fsanitize=address,undefined build (tests marked torch/onnx/packaging stay out: see tests/conftest.py).
sanitize: $(STAMP)
	@mkdir -p build/asan
	for t in $(CTEST_SRCS); do \
	  $(CC) $(CFLAGS_LIB) $(SAN_FLAGS) -O1 -Itests/c $$t $(LIB_SRCS) -lm -pthread -o build/asan/$$(basename $$t .c) && \
	  ASAN_OPTIONS=detect_leaks=0 build/asan/$$(basename $$t .c) || exit 1; \
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
