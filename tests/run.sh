#!/usr/bin/env bash
# The test command (README "Set up"; CI's .ci/run calls exactly this).
#
# On Debian as root it first installs the system tools the tests use for real (firewalls,
# logrotate, strace, file systems, report renderers); elsewhere those tests skip, each
# with a one-line reason. Then: the package with its test extras in .venv, ruff, mypy
# (default settings for the whole code, --strict for the trust layer) and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # nftables/iptables/iproute2: isolation in namespaces; logrotate: rotation; strace:
    # what the tool writes and opens; hashdeep, sleuthkit (mactime): export audits;
    # chromium: the HTML report's screenshot; binutils, python3-dev: the kit build;
    # rpm, db5.3-util: real rpmdbs for the RPM package check (rpmbuild, rpm --root into a
    # tree; db5.3_load writes the Berkeley DB format of RHEL/CentOS 7);
    # e2fsprogs, mount, util-linux: loop and read-only mounts in private namespaces;
    # fusefat, exfat-fuse, dosfstools, exfatprogs: real FAT32 and exFAT output drives
    # (the kernel here has no vfat or exfat module); faketime: a host clock set to 2001;
    # tmux: a real terminal for the live progress; openssh-server/-client: the SFTP
    # evidence sink against a real sshd in namespaces; fdisk (sfdisk): a VM disk with a
    # GPT, and gcc, pkg-config, libfuse3-dev, fuse3: the failing disk, for the image tests;
    # gcc, libc6-dev: the kit's static launcher and the rootkit library its tests compile;
    # systemd-journal-remote: journal files written by systemd itself for the journald parser;
    # ewf-tools (ewfverify, ewfinfo, ewfexport, ewfacquire): the judges of the E01 images;
    # poppler-utils: the report's PDF pages read back; libcap2-bin (setcap): a file with
    # capabilities; systemd (journalctl): the judge of the journald parser; sudo: the
    # fleet run's become (configured in one namespace host only, never in /etc); golang-go
    # and golang-github-coreos-bbolt-dev: containerd's BoltDB files written by bbolt itself.
    apt-get install -y -qq --no-install-recommends \
        nftables iptables iproute2 logrotate strace openssl util-linux procps systemd-journal-remote \
        coreutils e2fsprogs binutils findutils mount python3-dev openssh-server openssh-client \
        hashdeep sleuthkit rpm db5.3-util chromium fusefat exfat-fuse dosfstools exfatprogs \
        faketime tmux fdisk gcc libc6-dev pkg-config libfuse3-dev fuse3 ewf-tools \
        poppler-utils libcap2-bin systemd sudo golang-go golang-github-coreos-bbolt-dev \
        plocate >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
# The judges of the audit rule and process accounting decoders, auditctl and dump-acct,
# unpacked into .venv/tools and never installed: installing auditd or acct would start
# their services, loading audit rules into (or switching accounting on for) this
# machine's kernel.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ ! -d .venv/tools ]; then
    debs="$(mktemp -d)"
    (cd "$debs" && apt-get download -qq auditd libauparse0 acct 2>/dev/null) || true
    for deb in "$debs"/*.deb; do
        [ -e "$deb" ] && dpkg-deb -x "$deb" .venv/tools
    done
    rm -rf "$debs"
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy agent collectors manifests
.venv/bin/mypy --strict manifests
.venv/bin/pytest -q
