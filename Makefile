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

.PHONY: all deps build demo test check bench clean

all: build

# haproxy, ZooKeeper (whose package brings Java) and curl (the demo prints a curl command).
deps:
	@missing=""; \
	command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	[ -f /usr/share/java/zookeeper.jar ] || missing="$$missing zookeeper"; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

build:
	$(CARGO) build

# A local ZooKeeper, two backends, an example service and proxymgr, until Ctrl-C.
demo: deps build
	PROXYMGR_BIN=$(CURDIR)/target/debug/proxymgr $(CARGO) run --quiet --example demo

# PROXYMGR_TEST_REQUIRE=1: a test whose tool is missing fails instead of skipping.
test: deps
	$(CARGO) build --bins --examples
	PROXYMGR_TEST_REQUIRE=1 $(CARGO) test --all-targets

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(MAKE) test

bench:
	@echo "benchmarks arrive with issue 7; nothing to run yet"

clean:
	$(CARGO) clean
