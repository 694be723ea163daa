# proxymgr developer tasks. `make test` is what CI runs (.ci/run).
#
# The tests start their own ZooKeeper, backends and HAProxy on free loopback ports; nothing here starts a
# service. `make deps` installs the system packages they need, only when they are missing.

CARGO ?= cargo

# apt-get needs root; use sudo only when not already root.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# haproxy lives in /usr/sbin, which is not on a non-root user's PATH on Debian; the tests and the demo run
# `haproxy` from PATH.
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: all deps build demo test test-matrix test-matrices check bench clean package-tools deb deb-next rpm \
	rpm-binary cargo-deb-tool cargo-generate-rpm-tool cargo-zigbuild-tool zig-tool rpm-tool checkbashisms-tool

all: build

# haproxy, ZooKeeper (whose package brings Java), curl (the demo prints a curl command) and systemd for
# systemd-analyze (the unit's security score; systemd need not run). And Debian's headless Chromium, which the
# tests load the status page in (tests/support/browser.rs): the package chromium-headless-shell (Debian 12 has
# it in bookworm and bookworm-security), its binary /usr/bin/chromium-headless-shell, with fonts-liberation for
# the page's text. It goes without its Recommends: those are the desktop's (udev, upower, mesa's GPU drivers,
# a printer dialog, ...), over a hundred packages that a headless shell run with --disable-gpu never loads.
deps:
	@missing=""; lean=""; \
	command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	[ -f /usr/share/java/zookeeper.jar ] || missing="$$missing zookeeper"; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v chromium-headless-shell >/dev/null 2>&1 || lean="$$lean chromium-headless-shell"; \
	[ -d /usr/share/fonts/truetype/liberation ] || lean="$$lean fonts-liberation"; \
	if [ -n "$$missing$$lean" ]; then \
		echo "installing:$$missing$$lean"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		{ [ -z "$$missing" ] || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; } && \
		{ [ -z "$$lean" ] || \
		  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$lean; }; \
	fi

build:
	$(CARGO) build

# A local ZooKeeper, two backends, an example service and proxymgr, until Ctrl-C.
demo: deps build
	PROXYMGR_BIN=$(CURDIR)/target/debug/proxymgr $(CARGO) run --quiet --example demo

# PROXYMGR_TEST_REQUIRE=1: a test whose tool is missing fails instead of skipping. The examples (demo, bench)
# are built above but hold no tests: `--bins --tests` keeps their empty runs out of the report. As root (CI), the deb and
# the rpm are built first: tests/packaging.rs installs the deb and runs proxymgr through its init script.
# The whole suite runs on the haproxy on PATH (Debian's 2.6), then the matrix on every other version.
test: deps
	$(CARGO) build --bins --examples
	@if [ "$$(id -u)" -eq 0 ]; then $(MAKE) package-tools deb-next deb rpm; \
	else echo "not root: no packages built; the packaging tests skip"; fi
	PROXYMGR_TEST_REQUIRE=1 $(CARGO) test --bins --tests
	@$(MAKE) --no-print-directory test-matrices

# The HAProxy versions `make test` runs tests/matrix.rs on, besides the suite's 2.6 (`make test MATRIX_VERSIONS=3.4`
# for fewer). tests/matrix/haproxy builds each from its tarball in ../shared/haproxy-src on first use (1-3 minutes)
# and keeps it under ~/.cache/proxymgr/haproxy; later runs reuse it.
MATRIX_VERSIONS := 1.8 2.4 2.8 3.0 3.2 3.4

# tests/matrix.rs on HAProxy VERSION: `make test-matrix VERSION=3.0`.
test-matrix:
	@[ -n "$(VERSION)" ] || { echo "usage: make test-matrix VERSION=x.y (one of $(MATRIX_VERSIONS), or 2.6)" >&2; exit 2; }
	@haproxy=$$(tests/matrix/haproxy $(VERSION)) || exit 1; \
	echo "tests/matrix.rs on HAProxy $(VERSION): $$haproxy"; start=$$(date +%s); \
	PROXYMGR_TEST_HAPROXY=$$haproxy PROXYMGR_TEST_REQUIRE=1 $(CARGO) test --test integration matrix::; \
	status=$$?; [ $$status -eq 0 ] && outcome=passed || outcome=FAILED; \
	echo "tests/matrix.rs on HAProxy $(VERSION): $$outcome in $$(( $$(date +%s) - start )) s"; exit $$status

# test-matrix on each of MATRIX_VERSIONS, all of them even after one fails; fails if any did, naming them.
test-matrices:
	@failed=""; for version in $(MATRIX_VERSIONS); do \
		$(MAKE) --no-print-directory test-matrix VERSION=$$version || failed="$$failed $$version"; \
	done; \
	if [ -n "$$failed" ]; then echo "the matrix failed on HAProxy$$failed" >&2; exit 1; fi

# Packaging (packaging/README.md). The tools are installed only when missing, at pinned versions:
# cargo-deb, cargo-generate-rpm and cargo-zigbuild (cargo install --locked, a minute or a few each, once),
# zig (PyPI's ziglang, into target/tools: the rpm's binary), rpm (apt, for rpm -qp and the rpm test) and
# checkbashisms, which is one perl script: it is taken out of the devscripts package into target/tools
# rather than installing devscripts and its 47 dependencies.
CARGO_DEB_VERSION := 3.8.0
CARGO_GENERATE_RPM_VERSION := 0.21.1
CARGO_ZIGBUILD_VERSION := 0.24.1
ZIGLANG_VERSION := 0.15.2
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

package-tools: cargo-deb-tool cargo-generate-rpm-tool cargo-zigbuild-tool zig-tool rpm-tool checkbashisms-tool

cargo-deb-tool:
	@$(CARGO) deb --version >/dev/null 2>&1 || \
		$(CARGO) install --locked cargo-deb@$(CARGO_DEB_VERSION)

cargo-generate-rpm-tool:
	@$(CARGO) generate-rpm --version >/dev/null 2>&1 || \
		$(CARGO) install --locked cargo-generate-rpm@$(CARGO_GENERATE_RPM_VERSION)

# The rpm's binary is linked against an older glibc (EL 8's) by cargo-zigbuild, with zig as the C compiler
# and linker: zig carries stubs of every glibc version's symbols. zig comes from PyPI's ziglang package (the
# zig release itself, in a wheel), installed into target/tools/ziglang rather than into the machine's Python.
ZIG := $(TARGET_DIR)/tools/ziglang/ziglang/zig

cargo-zigbuild-tool:
	@$(CARGO) zigbuild --help >/dev/null 2>&1 || \
		$(CARGO) install --locked cargo-zigbuild@$(CARGO_ZIGBUILD_VERSION)

zig-tool:
	@if [ "$$($(ZIG) version 2>/dev/null)" != "$(ZIGLANG_VERSION)" ]; then \
		echo "installing zig $(ZIGLANG_VERSION) (PyPI's ziglang) into $(TARGET_DIR)/tools/ziglang"; \
		rm -rf $(TARGET_DIR)/tools/ziglang && \
		PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
			--target $(TARGET_DIR)/tools/ziglang ziglang==$(ZIGLANG_VERSION); \
	fi

rpm-tool:
	@command -v rpm >/dev/null 2>&1 || { \
		echo "installing: rpm"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rpm; }

checkbashisms-tool:
	@if ! command -v checkbashisms >/dev/null 2>&1 && [ ! -x $(TARGET_DIR)/tools/checkbashisms ]; then \
		echo "fetching checkbashisms (from the devscripts package) into $(TARGET_DIR)/tools"; \
		rm -rf $(TARGET_DIR)/tools/devscripts && mkdir -p $(TARGET_DIR)/tools/devscripts && \
		( cd $(TARGET_DIR)/tools/devscripts && apt-get download devscripts >/dev/null 2>&1 && \
		  dpkg-deb -x devscripts_*.deb root ) && \
		cp $(TARGET_DIR)/tools/devscripts/root/usr/bin/checkbashisms $(TARGET_DIR)/tools/checkbashisms && \
		rm -rf $(TARGET_DIR)/tools/devscripts || \
		echo "could not fetch checkbashisms; the script check runs sh -n and dash -n only"; \
	fi

# target/debian/proxymgr_<version>-1_<arch>.deb. cargo deb runs `cargo build --release` (a no-op when the
# release build is current) and strips the binary.
deb: cargo-deb-tool
	$(CARGO) deb

# target/debian-next/proxymgr_<version>-2_<arch>.deb: the same deb at the next revision, which
# tests/packaging.rs installs over the first as an upgrade (the maintainer scripts' upgrade path).
# Built before the deb itself (cargo deb empties target/debian as it starts).
deb-next: cargo-deb-tool
	$(CARGO) build --release
	$(CARGO) deb --no-build --deb-revision 2 -o $(TARGET_DIR)/debian-next/

# target/generate-rpm/proxymgr-<version>-1.<arch>.rpm, installable on EL 8 and later. A binary built here
# (Debian 12, glibc 2.36) would need glibc 2.34 symbols, which EL 8 (glibc 2.28) lacks and rpm's automatic
# requires would name: the rpm's binary is linked against glibc $(RPM_GLIBC) instead (rpm-binary). cargo
# generate-rpm neither builds nor strips, so a stripped copy is staged in target/rpm-stage (Cargo.toml's rpm
# assets).
RPM_GLIBC := 2.28
HOST_TRIPLE = $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RPM_BINARY = $(TARGET_DIR)/$(HOST_TRIPLE)/release/proxymgr

rpm: cargo-generate-rpm-tool rpm-binary
	mkdir -p target/rpm-stage
	strip --strip-all -o target/rpm-stage/proxymgr $(RPM_BINARY)
	$(CARGO) generate-rpm

# The release binary for the host's architecture, linked against glibc $(RPM_GLIBC): a build of its own in
# target/<host triple>/release, apart from target/release, which `make deb` and the tests keep using.
rpm-binary: cargo-zigbuild-tool zig-tool
	CARGO_ZIGBUILD_ZIG_PATH=$(ZIG) $(CARGO) zigbuild --release --target $(HOST_TRIPLE).$(RPM_GLIBC)

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(MAKE) test

# proxymgr against regenerate-and-reload on real ZooKeeper and HAProxy, held to DESIGN.md §6 (BENCHMARKS.md has
# the method). Release build; bounded, ~10 minutes; results in target/bench/results.md. Not part of `make test`.
# BENCH_QUICK=1: the small size, a short churn and 30 routing changes, fewer samples.
# BENCH_ONLY=small,churn,storm,routing,large picks phases; the storm phase draws docs/storm.svg.
bench: deps
	$(CARGO) build --release --bins --examples
	PROXYMGR_BIN=$(CURDIR)/target/release/proxymgr $(CURDIR)/target/release/examples/bench

clean:
	$(CARGO) clean
