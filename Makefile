# masktool: `make demo` and `make test` work on a fresh Debian/Ubuntu machine as root; each
# installs what it needs (apt packages, then a virtualenv in .venv).

SHELL := /bin/bash
# The venv is made from the system interpreter: one under /root or /home breaks under
# ProtectHome= in masktool.service, and pystemd/systemd-python build against its headers.
PYTHON ?= /usr/bin/python3
VENV ?= $(CURDIR)/.venv
APT_PACKAGES := libsystemd-dev pkg-config gcc python3-dev python3-venv systemd dbus util-linux
# Building the .deb, and what it depends on (installed here so the package test can install it
# into a sandboxed systemd, which sees the host's /usr).
DEB_PACKAGES := debhelper dh-python pybuild-plugin-pyproject python3-all python3-hatchling \
	python3-pystemd python3-systemd python3-watchdog python3-yaml python3-jinja2 rpm
# The report's browser test: Debian's Chromium renders the page and hands back its DOM.
# The bundles' proof: OpenSCAP evaluates ComplianceAsCode's published checks.
TEST_PACKAGES := chromium openscap-scanner
DEB_BUILD := $(CURDIR)/build/deb
RPM_BUILD := $(CURDIR)/build/rpm
# Written once, in the package; the .deb's changelog and the spec get it at build time.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' daemon/masktool/__init__.py)
STAMP := $(VENV)/.installed
# promtool, for testing the alerting rules: only the binary, unpacked from Debian's prometheus
# package (installing the package would start a Prometheus server on this machine).
TOOLS := $(CURDIR)/build/tools
PROMTOOL := $(TOOLS)/usr/bin/promtool
# ComplianceAsCode's checks (SCAP Security Guide, Debian's ssg-* packages): only the three
# datastreams the proof reads (installed, the packages are 1.5 GB).
SSG := $(TOOLS)/ssg
SSG_FILES := $(SSG)/ssg-rhel9-ds.xml $(SSG)/ssg-fedora-ds.xml $(SSG)/ssg-ubuntu2204-ds.xml
# Debian packages that ship units the Debian and Ubuntu bundles mask: downloaded here (with
# what they need that this machine lacks), installed only inside the proof's sandboxes. Not
# nfs-kernel-server: its nfs-common runs rpc-statd, which requires rpcbind.socket, and masktool
# rightly refuses to mask a unit a running unit requires (the bundles' comments say so).
UNIT_PACKAGES := avahi-daemon autofs cups-daemon rpcbind vsftpd snmpd bluez dovecot-core bind9 squid
UNIT_DEBS := $(TOOLS)/debs

.PHONY: all deps system-deps packaging-deps test-deps tools venv lint typecheck unit integration test demo bench fuzz deb srpm clean

all: test

# apt-get install what is missing of $(1).
define apt_install
	@missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    [ "$$(id -u)" = 0 ] || { echo "need root to apt-get install:$$missing" >&2; exit 2; }; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

system-deps:
	$(call apt_install,$(APT_PACKAGES))

packaging-deps:
	$(call apt_install,$(DEB_PACKAGES))

$(PROMTOOL):
	mkdir -p $(TOOLS)/deb
	cd $(TOOLS)/deb && { apt-get download -qq prometheus || { apt-get update -qq && apt-get download -qq prometheus; }; }
	dpkg-deb -x $(TOOLS)/deb/prometheus_*.deb $(TOOLS)/unpacked
	install -D -m 0755 $(TOOLS)/unpacked/usr/bin/promtool $@
	rm -rf $(TOOLS)/deb $(TOOLS)/unpacked

$(SSG)/.unpacked:
	rm -rf $(SSG) && mkdir -p $(SSG)/deb
	cd $(SSG)/deb && { apt-get download -qq ssg-nondebian ssg-debderived ssg-base || { apt-get update -qq && apt-get download -qq ssg-nondebian ssg-debderived ssg-base; }; }
	dpkg-deb --fsys-tarfile $(SSG)/deb/ssg-nondebian_*.deb | tar -x -C $(SSG) --strip-components=7 \
	    ./usr/share/xml/scap/ssg/content/ssg-rhel9-ds.xml ./usr/share/xml/scap/ssg/content/ssg-fedora-ds.xml
	dpkg-deb --fsys-tarfile $(SSG)/deb/ssg-debderived_*.deb | tar -x -C $(SSG) --strip-components=7 \
	    ./usr/share/xml/scap/ssg/content/ssg-ubuntu2204-ds.xml
	dpkg-deb --fsys-tarfile $(SSG)/deb/ssg-base_*.deb | tar -x -O ./usr/share/doc/ssg-base/copyright > $(SSG)/copyright
	dpkg-deb -f $(SSG)/deb/ssg-nondebian_*.deb Version > $(SSG)/version
	rm -rf $(SSG)/deb
	touch $@

$(UNIT_DEBS)/.downloaded: Makefile
	mkdir -p $(UNIT_DEBS)/partial
	download() { apt-get install -qq --download-only --no-install-recommends \
	    -o Dir::Cache::Archives=$(UNIT_DEBS)/ $(UNIT_PACKAGES); }; download || { apt-get update -qq && download; }
	touch $@

tools: $(PROMTOOL) $(SSG)/.unpacked $(UNIT_DEBS)/.downloaded

test-deps:
	$(call apt_install,$(TEST_PACKAGES))

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

venv: system-deps $(STAMP)
deps: venv

lint: venv
	$(VENV)/bin/ruff check daemon tests bench
	$(VENV)/bin/ruff format --check daemon tests bench

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q tests/unit

# Boots a throwaway systemd in namespaces (root only); with CI set a skip fails the run.
integration: venv packaging-deps test-deps tools
	MASKTOOL_PROMTOOL=$(PROMTOOL) $(VENV)/bin/pytest -q tests/integration

test: lint typecheck packaging-deps test-deps tools
	MASKTOOL_PROMTOOL=$(PROMTOOL) $(VENV)/bin/pytest -q tests

demo: venv
	$(VENV)/bin/python tests/sandbox.py --with-service $(VENV) -- bash $(CURDIR)/demo/demo.sh $(VENV)

# The differential test (masktool apply --root against systemctl --root on generated trees)
# with thousands of random examples; `make test` runs a fixed few hundred.
fuzz: venv
	HYPOTHESIS_PROFILE=long $(VENV)/bin/pytest -q -p no:cacheprovider tests/unit/test_differential.py

bench: venv
	$(VENV)/bin/python bench/apply_bench.py
	$(VENV)/bin/python bench/daemon_bench.py

# The Debian package, built from the tree (files git tracks or would track) with
# packaging/debian as debian/.
deb: packaging-deps
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/masktool
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(DEB_BUILD)/masktool
	cp -a packaging/debian $(DEB_BUILD)/masktool/debian
	sed -i '1s/^masktool ([^)]*)/masktool ($(VERSION))/' $(DEB_BUILD)/masktool/debian/changelog
	# Debian's own interpreter and tools, not one earlier on PATH (pyenv and the like).
	cd $(DEB_BUILD)/masktool && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b
	@ls $(DEB_BUILD)/*.deb

# A Fedora/RHEL source package from packaging/fedora/masktool.spec.
srpm: packaging-deps
	rm -rf $(RPM_BUILD) && mkdir -p $(RPM_BUILD)/SOURCES $(RPM_BUILD)/masktool-$(VERSION)
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(RPM_BUILD)/masktool-$(VERSION)
	tar -C $(RPM_BUILD) -czf $(RPM_BUILD)/SOURCES/masktool-$(VERSION).tar.gz masktool-$(VERSION)
	sed 's/^Version:.*/Version:        $(VERSION)/' packaging/fedora/masktool.spec > $(RPM_BUILD)/masktool.spec
	rpmbuild -bs --define "_topdir $(RPM_BUILD)" $(RPM_BUILD)/masktool.spec
	@ls $(RPM_BUILD)/SRPMS/*.src.rpm

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
