# MLC-C top-level Makefile: `make chat` and `make test` do everything on a fresh Debian 12.
BUILD ?= build
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release -DMLC_WERROR=ON
MODEL ?=

.PHONY: all deps build test test-gpu chat clean
all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# the CUDA tests on a machine with a GPU (a missing GPU or driver is a failure here)
test-gpu: build
	cd $(BUILD) && MLC_TEST_REQUIRE_DEVICE=1 ctest --output-on-failure -L gpu

chat: build
	@$(BUILD)/mlc chat $(MODEL)

clean:
	rm -rf $(BUILD)
