# udplb: build, run the example, test, lint.
# Run as root: loading XDP programs and making network namespaces need it.

CARGO ?= cargo
# bash: the test recipe reads PIPESTATUS.
SHELL := /bin/bash
IFACE ?= lo
EXAMPLE ?= 9875=9876,9877,9878

.PHONY: all deps build run test unit lint vmlinux clean bench install uninstall deb

all: build

deps:
	scripts/install-deps.sh

build: deps
	$(CARGO) build --release

# The README's first command: build and run the example on lo.
run: build
	./target/release/udplb $(IFACE) $(EXAMPLE)

# Every test: unit tests, datapath fixtures (BPF_PROG_TEST_RUN), CLI tests and
# network-namespace tests with real sockets. Needs root. Every test binary
# runs even after a failure; the last lines sum them all (and name the
# binaries that failed).
test: deps
	@[ "$$(id -u)" -eq 0 ] || { echo "make test needs root (XDP, network namespaces): sudo make test" >&2; exit 1; }
	@mkdir -p target
	$(CARGO) test --release --no-fail-fast 2>&1 | tee target/make-test.log; \
	status=$${PIPESTATUS[0]}; scripts/test-summary.sh target/make-test.log; exit $$status

# Differential fuzzing: the reference model (tests/support/model/) against the XDP
# program on random and mutated frames, CASES frames (default 1000000):
# `make fuzz CASES=N`. Needs root. (`make test` runs 10000, in about 6 s.)
# One datapath is loaded and reconfigured for each of about 300 configurations;
# about 14 000 frames/s on 2 shared cores: 10^6 frames in about 70 s.
.PHONY: fuzz
fuzz:
	UDPLB_FUZZ_CASES=$${CASES:-1000000} $(CARGO) test --release --test differential -- --nocapture

# The datapath fixtures and network-namespace tests on other kernels: each
# Debian kernel (fetched once into target/kernels/) boots in a qemu VM (TCG,
# four virtio_net NICs on bridges of their own) over this filesystem; `host` runs them here without a
# VM. Prints the matrix kernel × test binary, also target/kernels/matrix.md.
# Needs root. `make test-kernels KERNELS=6.1 TESTS="netns flows_datapath"`.
# In the VM (TCG, no KVM here) tests run 10-30x slower: see README, "Other kernels".
KERNELS ?= 5.10 6.1 6.12 host
TESTS ?=
.PHONY: test-kernels
test-kernels: deps
	@[ "$$(id -u)" -eq 0 ] || { echo "make test-kernels needs root (XDP, network namespaces): sudo make test-kernels" >&2; exit 1; }
	TESTS="$(TESTS)" scripts/kernels/run.sh $(KERNELS)

# Only the tests that need no privileges.
unit:
	$(CARGO) test --release --lib

# Benchmarks: datapath cost (BPF_PROG_TEST_RUN), control plane, end to end
# through veths from a socket sender, and at NIC speed (an XDP generator, the
# balancer on a core of its own), in namespaces it makes and removes. Needs
# root; writes target/bench/results.json; under 10 minutes. See BENCHMARKS.md.
bench: deps
	@[ "$$(id -u)" -eq 0 ] || { echo "make bench needs root (XDP, network namespaces): sudo make bench" >&2; exit 1; }
	$(CARGO) bench --bench bench

# Rust formatting and clippy with warnings as errors; paths named in
# comments and the direction of src/'s imports (scripts/lint-house.py). The
# C side is compiled with clang -Wall -Werror by build.rs on every build.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	python3 scripts/lint-house.py

vmlinux:
	scripts/gen-vmlinux.sh

# Install like a service: `make build && sudo make install` (PREFIX,
# DESTDIR and UNITDIR as usual). The unit's ExecStart=, ExecReload= and
# Documentation= are rewritten to the paths installed here, so the unit
# never names a file that is not there. Does not build (run as root, a
# build would leave root's files in target/); the configuration file,
# $(SYSCONFDIR)/udplb/lb.toml, is yours to write (README, "Configuration file").
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
BIN ?= target/release/udplb
install:
	@[ -x "$(BIN)" ] || { echo "make install: no $(BIN): run make build first" >&2; exit 1; }
	install -D -m 755 "$(BIN)" "$(DESTDIR)$(PREFIX)/bin/udplb"
	install -D -m 644 README.md "$(DESTDIR)$(PREFIX)/share/doc/udplb/README.md"
	install -d "$(DESTDIR)$(UNITDIR)"
	sed -e 's|/usr/local/bin/udplb|$(PREFIX)/bin/udplb|g' \
	    -e 's|/usr/local/share/doc/udplb/|$(PREFIX)/share/doc/udplb/|g' \
	    -e 's|/etc/udplb/|$(SYSCONFDIR)/udplb/|g' \
	    scripts/udplb.service > "$(DESTDIR)$(UNITDIR)/udplb.service"
	chmod 644 "$(DESTDIR)$(UNITDIR)/udplb.service"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/bin/udplb" "$(DESTDIR)$(UNITDIR)/udplb.service"
	rm -rf "$(DESTDIR)$(PREFIX)/share/doc/udplb"

# A Debian package of the installed tree (PREFIX=/usr), made with dpkg-deb
# from `make install`: $(DEB_OUT)/udplb_VERSION_ARCH.deb. Install it with
# `apt install ./target/debian/udplb_*.deb`.
DEB_OUT ?= target/debian
deb:
	@[ -x "$(BIN)" ] || { echo "make deb: no $(BIN): run make build first" >&2; exit 1; }
	rm -rf "$(DEB_OUT)/root"
	$(MAKE) --no-print-directory install DESTDIR="$(DEB_OUT)/root" PREFIX=/usr UNITDIR=/usr/lib/systemd/system SYSCONFDIR=/etc BIN="$(BIN)"
	scripts/deb-control.sh "$(DEB_OUT)/root"
	dpkg-deb --root-owner-group --build "$(DEB_OUT)/root" "$(DEB_OUT)/"

clean:
	$(CARGO) clean
