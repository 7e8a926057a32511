# Incremental build; scripts/setup installs the tools and calls `make all`.
CLANG ?= clang
BPFTOOL ?= bpftool
CC ?= cc
ARCH := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')

BPF_OBJ := build/twtrace.bpf.o
OPEN_SOCKETS_OBJ := build/open-sockets.bpf.o
HELPERS := build/tcp-scenario build/churn build/floor.bpf.o build/pieces.bpf.o
TS_SRC := $(shell find src native -name "*.ts")

.PHONY: all bpf helpers ts layout clean
all: bpf helpers ts

bpf: $(BPF_OBJ) $(OPEN_SOCKETS_OBJ)
helpers: $(HELPERS)
ts: dist/src/cli.js

# vmlinux.h comes from the running kernel's BTF; CO-RE relocations make the object portable anyway.
build/vmlinux.h:
	@mkdir -p build
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BPF_OBJ): bpf/twtrace.bpf.c bpf/twtrace.h build/vmlinux.h
	$(CLANG) -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -Ibuild -Ibpf -c $< -o $@

$(OPEN_SOCKETS_OBJ): bpf/open-sockets.bpf.c bpf/twtrace.h build/vmlinux.h
	$(CLANG) -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -Ibuild -Ibpf -c $< -o $@

# bench/: the floor, two empty programs on the tracepoint twtrace uses; the pieces of its primary.
build/floor.bpf.o: bench/floor.bpf.c build/vmlinux.h
	$(CLANG) -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -Ibuild -c $< -o $@

build/pieces.bpf.o: bench/pieces.bpf.c build/vmlinux.h
	$(CLANG) -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -Ibuild -c $< -o $@

build/tcp-scenario: test/helpers/tcp-scenario.c
	@mkdir -p build
	$(CC) -O2 -Wall -Werror -o $@ $<

build/churn: bench/churn.c
	@mkdir -p build
	$(CC) -O2 -Wall -Werror -pthread -o $@ $<

dist/src/cli.js: $(TS_SRC) tsconfig.json package.json
	npx tsc -p .
	chmod +x dist/src/cli.js

# Regenerate the checked-in TypeScript view of bpf/twtrace.h (test/unit/layout.test.ts checks for drift).
layout: $(BPF_OBJ)
	node --import tsx scripts/gen-layout.ts $(BPF_OBJ) > src/event/layout.generated.ts

clean:
	rm -rf build dist
