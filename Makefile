# Entry points for developers and CI. See README.md.

CARGO ?= cargo

.PHONY: all deps build test bench bench-peers fmt clippy check fuzz-smoke run

all: build

deps:
	@./scripts/install-build-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

# The whole test suite: unit tests, integration tests and doc tests of every crate.
test: deps
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

# Throughput benchmarks, each printed beside a reference figure measured in the same run.
bench: deps
	$(CARGO) bench -p pbs-datastore --bench datastore
	$(CARGO) bench -p pxar-bin --bench pxar_vs_tar
	$(CARGO) bench -p proxmox-backup --bench protocol
	$(CARGO) bench -p proxmox-backup --bench client
	$(MAKE) --no-print-directory bench-peers

# The project beside restic, borg and rustic on one generated data set (BENCH_SIZE, default
# 2G), with the machine's ceilings; installs missing peers first. Not part of `make test`.
# Figures: stdout and target/bench/peers.json. See docs/performance.md.
bench-peers: deps
	$(CARGO) build --release -p proxmox-backup-client --bin proxmox-backup-client
	tools="$$(./scripts/install-bench-peers.sh | tail -n 1)" && \
		PATH="$$tools:$$PATH" nice -n 10 $(CARGO) bench -p proxmox-backup --bench peers

# Both daemons in the foreground on a local instance under ./run (see scripts/run-dev.sh).
run: deps
	@./scripts/run-dev.sh

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check: fmt clippy test

# Bounded fuzzing run of every target (needs cargo-fuzz, see README.md). Each target starts
# from the committed seeds in fuzz/seeds/<target>; new inputs go to fuzz/corpus/<target>.
FUZZ_SECONDS ?= 60
fuzz-smoke:
	cd fuzz && for t in $$(RUSTC_BOOTSTRAP=1 cargo fuzz list); do \
		mkdir -p corpus/$$t && \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=65536 || exit 1; \
	done
