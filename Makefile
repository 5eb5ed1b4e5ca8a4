# Entry points. `make serve` builds the wasm runtime and serves the site on 127.0.0.1;
# `make test` runs every check CI runs. Both install what they need first.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := serve

PORT ?= 8080
WASM_BINDGEN_VERSION := $(shell sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
DEBIAN_PACKAGES := chromium mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist python3-venv gcc
WASM := target/wasm32-unknown-unknown/release/web_sampler.wasm
PKG := www/pkg
BNS := target/debug/bns
BNS_RELEASE := target/release/bns
BNS_SOURCES := $(shell find distiller/src web-sampler/src -name '*.rs') distiller/Cargo.toml web-sampler/Cargo.toml
export XDG_RUNTIME_DIR ?= /tmp/bns-xdg-runtime

.PHONY: serve test setup system-packages rust-tools npm-packages wasm FORCE model \
        check-format lint cargo-test browser-test clean cuda cuda-bundle cuda-check

## serve: build the wasm runtime and serve www/ on http://127.0.0.1:$(PORT)/
serve: rust-tools npm-packages wasm
	node www/serve.mjs --port $(PORT)

## test: formatting, lints, the CUDA build, Rust tests, the wasm build and the browser tests
test: setup check-format lint cuda-check cargo-test wasm browser-test
	@echo "All tests passed."

setup: system-packages rust-tools npm-packages

# Debian packages: installed when run as root, otherwise the exact command is printed.
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "Missing Debian packages. Run:"; \
	    echo "  sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

rust-tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@if [ "$$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$(WASM_BINDGEN_VERSION)" ]; then \
	  echo "Installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (takes a few minutes once)"; \
	  cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

npm-packages: node_modules/.package-lock.json
node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund

## wasm: the runtime for the browser, in www/pkg (wasm-bindgen + wasm-opt from npm's binaryen),
## rebuilt only when the runtime's sources, Cargo.toml or the npm packages changed
wasm: $(PKG)/web_sampler_bg.wasm

# cargo knows the runtime's inputs (sources, shaders, Cargo.lock): it runs every time and leaves
# $(WASM) untouched when nothing changed, so make skips wasm-bindgen and wasm-opt (~45 s).
$(WASM): rust-tools FORCE
	cargo build --release -p web-sampler --target wasm32-unknown-unknown

# Built in $(PKG).tmp and moved in at the end, so an interrupted build leaves no www/pkg that
# looks up to date.
$(PKG)/web_sampler_bg.wasm: $(WASM) Cargo.toml node_modules/.package-lock.json
	rm -rf $(PKG).tmp
	wasm-bindgen --target web --out-dir $(PKG).tmp $(WASM)
	node_modules/.bin/wasm-opt -O3 --enable-bulk-memory --enable-nontrapping-float-to-int \
	  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-simd \
	  $(PKG).tmp/web_sampler_bg.wasm -o $(PKG).tmp/web_sampler_bg.wasm
	rm -rf $(PKG) && mv $(PKG).tmp $(PKG)
	@ls -l $@ | awk '{print "wasm module: " $$5 " bytes after wasm-opt"}'

FORCE:

$(BNS): $(BNS_SOURCES)
	cargo build -p distiller

$(BNS_RELEASE): $(BNS_SOURCES)
	cargo build --release -p distiller

## model: a model of your own, from a dataset to the page (bns pipeline; README, "Make your own
## model"): make model DATA=moons NAME=my-moons [ARGS='--steps 2000']
# The arguments are checked before the (long, first time) release build.
model:
	@if [ -z "$(DATA)" ] || [ -z "$(NAME)" ]; then \
	  echo "usage: make model DATA=<dataset> NAME=<name> [ARGS='<more bns pipeline flags>']" >&2; exit 2; \
	fi
	@$(MAKE) --no-print-directory $(BNS_RELEASE)
	$(BNS_RELEASE) pipeline --dataset $(DATA) --name $(NAME) $(ARGS)

## cuda: bns with --features cuda, release, in target/cuda/release/bns (no GPU needed to build;
## scripts/cuda-toolkit.sh fetches NVIDIA's CUDA 13.0 wheels once, ~1.2 GB, ~20 min first build)
cuda:
	scripts/cuda-toolkit.sh cargo build --release -p distiller --features cuda --target-dir target/cuda

## cuda-bundle: what a GPU machine needs besides its driver and NVIDIA wheels: target/cuda-bundle.tar.gz
cuda-bundle: cuda
	rm -rf target/cuda-bundle && mkdir -p target/cuda-bundle
	cp target/cuda/release/bns target/cuda-bundle/
	cp -L target/cuda-toolkit/root/lib/libcudart.so.13 target/cuda-bundle/
	tar -C target/cuda-bundle -czf target/cuda-bundle.tar.gz .
	@ls -l target/cuda-bundle.tar.gz | awk '{print "bundle: " $$5 " bytes (bns + libcudart.so.13)"}'

# The CUDA code paths keep compiling and linking, the GPU-only tests included: a debug build in
# the shared target folder, so the dependencies the feature does not touch are reused. It replaces
# target/debug/bns, so it runs before cargo-test, which builds the CPU binary the others use.
cuda-check:
	scripts/cuda-toolkit.sh cargo test -p distiller --features cuda --no-run

check-format:
	cargo fmt --all -- --check

lint:
	cargo clippy --workspace --all-targets -- -D warnings

cargo-test:
	mkdir -p $(XDG_RUNTIME_DIR)
	cargo test --workspace

browser-test: wasm $(BNS)
	BNS=$(BNS) node --test --test-concurrency=1 tests/browser/

clean:
	cargo clean
	rm -rf $(PKG) $(PKG).tmp node_modules
