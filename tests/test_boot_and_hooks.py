"""What runs before and around the operating system, on a host planted in a private mount
namespace (tests/hostns.py, plus a tmpfs on /boot and overlays on /usr/lib and
/usr/share): /boot's kernels and initramfs by hash, GRUB's configuration copied and its
``init=`` a finding; initramfs hooks, systemd generators, tmpfiles.d, sysctl.d and
binfmt.d entries as persistence facts, each pointing into a world-writable directory a
finding, and a harmless one not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from conftest import journal_records
from hostns import run_on_planted_host

from collectors import boot

KERNEL = b"MZ\x00fake-kernel" * 20_000  # 240 kB
GRUB = (
    "set default=0\n"
    "menuentry 'Debian' {\n"
    "  linux /vmlinuz-6.1.0-13-amd64 root=/dev/sda1 ro quiet init=/tmp/.i\n"
    "  initrd /initrd.img-6.1.0-13-amd64\n}\n"
)
SETUP = f"""
mkdir -p /mnt/lib-up /mnt/lib-work /mnt/share-up /mnt/share-work
mount -t overlay overlay -o lowerdir=/usr/lib,upperdir=/mnt/lib-up,workdir=/mnt/lib-work /usr/lib
mount -t overlay overlay -o lowerdir=/usr/share,upperdir=/mnt/share-up,workdir=/mnt/share-work \
  /usr/share
mount -t tmpfs boot /boot
echo 'BOOT_IMAGE=/vmlinuz-6.1.0-13-amd64 root=/dev/sda1 ro rdinit=/dev/shm/.r' > /boot/.cmdline
mount --bind /boot/.cmdline /proc/cmdline
mkdir -p /mnt/binfmt && echo enabled > /mnt/binfmt/status && echo > /mnt/binfmt/register
printf 'enabled\\ninterpreter /dev/shm/.i\\nflags: FC\\noffset 0\\nmagic 7a7a\\n' > /mnt/binfmt/zz
printf 'enabled\\ninterpreter /usr/bin/python3.11\\nflags: \\nextension .pyc\\n' > /mnt/binfmt/py
mount --bind /mnt/binfmt /proc/sys/fs/binfmt_misc
mkdir -p /boot/grub /boot/efi/EFI/debian
python3 -c 'open("/boot/vmlinuz-6.1.0-13-amd64", "wb").write(b"MZ\\0fake-kernel" * 20_000)'
head -c 100000 /dev/urandom > /boot/initrd.img-6.1.0-13-amd64
echo 'ffffffff81000000 T _text' > /boot/System.map-6.1.0-13-amd64
echo 'CONFIG_MODULES=y' > /boot/config-6.1.0-13-amd64
cat > /boot/grub/grub.cfg <<'EOF'
{GRUB}EOF
printf '# GRUB Environment Block\\nsaved_entry=0\\n' > /boot/grub/grubenv
head -c 5000 /dev/urandom > /boot/efi/EFI/debian/grubx64.efi
ln -s vmlinuz-6.1.0-13-amd64 /boot/vmlinuz
mkdir -p /usr/lib/tmpfiles.d /usr/lib/sysctl.d /usr/lib/binfmt.d /usr/share/initramfs-tools/hooks
mkdir -p /usr/lib/systemd/system-generators /etc/sysctl.d
echo 'L+ /etc/ld.so.preload - - - - /dev/shm/.l.so' > /usr/lib/tmpfiles.d/zz-preload.conf
echo 'D /tmp/.X11-unix 1777 root root 10d' > /usr/lib/tmpfiles.d/zz-x11.conf
echo 'kernel.core_pattern = |/var/tmp/.c %p' > /usr/lib/sysctl.d/50-core.conf
echo 'kernel.modprobe = /tmp/.m' > /etc/sysctl.d/99-zz.conf
echo ':zz:E::zz::/dev/shm/.interp:F' > /usr/lib/binfmt.d/zz.conf
printf '#!/bin/sh\\ncp /tmp/.implant "${{DESTDIR}}/sbin/init"\\n' \\
  > /usr/share/initramfs-tools/hooks/zz
printf '#!/bin/sh\\n/dev/shm/.g "$@"\\n' > /usr/lib/systemd/system-generators/zz-gen
chmod 755 /usr/share/initramfs-tools/hooks/zz /usr/lib/systemd/system-generators/zz-gen
mkdir -p /usr/share/dbus-1/system-services /usr/share/polkit-1/rules.d /usr/share/systemd/user
printf '[D-BUS Service]\\nName=org.zz.Helper\\nExec=/dev/shm/.d\\nUser=root\\n' \\
  > /usr/share/dbus-1/system-services/org.zz.Helper.service
echo 'polkit.addRule(function(a, s) {{ return polkit.Result.YES; }});' \\
  > /usr/share/polkit-1/rules.d/49-zz.rules
printf '[Service]\\nExecStart=/tmp/.u\\n' > /usr/share/systemd/user/zz.service
mkdir -p /var/lib/sudo/lectured && touch /var/lib/sudo/lectured/alice
mount -t tmpfs runuser /run/user && mkdir -p /run/user/1000/systemd/transient
printf '[Service]\\nExecStart=/var/tmp/.t\\n' > /run/user/1000/systemd/transient/run-u7.service
"""


def test_boot_files_and_boot_time_hooks(tmp_path: Path) -> None:
    summary, evidence = run_on_planted_host(tmp_path, SETUP, "--only", "boot,persistence")
    assert summary["status"] == "complete", summary
    listing = {
        r["path"]: r
        for r in map(json.loads, (evidence / "artifacts/boot/listing.jsonl").read_bytes().split(
            b"\n")[:-1])
    }  # fmt: skip
    kernel = listing["/boot/vmlinuz-6.1.0-13-amd64"]
    assert kernel["kind"] == "kernel" and kernel["sha256"] == hashlib.sha256(KERNEL).hexdigest()
    assert "copied" not in kernel  # hashed, not copied
    assert listing["/boot/initrd.img-6.1.0-13-amd64"]["kind"] == "initramfs"
    assert listing["/boot/efi/EFI/debian/grubx64.efi"]["kind"] == "efi-binary"
    assert listing["/boot/vmlinuz"] == {**listing["/boot/vmlinuz"], "type": "symlink",
                                        "target": "vmlinuz-6.1.0-13-amd64"}  # fmt: skip
    assert (evidence / "artifacts/boot/files/boot/grub/grub.cfg").read_text() == GRUB
    assert (evidence / "artifacts/boot/files/boot/config-6.1.0-13-amd64").is_file()
    assert not (evidence / "artifacts/boot/files/boot/vmlinuz-6.1.0-13-amd64").exists()
    records = journal_records(evidence)
    found = {(r["rule"], r["source"]["path"]): r for r in records if r.get("event") == "finding"}
    init = found[("boot-init-override", "/boot/grub/grub.cfg")]
    assert init["severity"] == "HIGH" and init["init_override"] == "init=/tmp/.i"
    assert init["artifact"] == "artifacts/boot/files/boot/grub/grub.cfg"
    running = found[("boot-init-override", "/proc/cmdline")]  # as the kernel was started
    assert running["init_override"] == "rdinit=/dev/shm/.r" and running["kind"] == "running-cmdline"
    assert (evidence / running["artifact"]).read_bytes().endswith(b"rdinit=/dev/shm/.r\n")
    binfmt = found[("binfmt-interpreter-writable", "/proc/sys/fs/binfmt_misc/zz")]
    assert binfmt["severity"] == "HIGH" and binfmt["interpreter"] == "/dev/shm/.i"
    assert ("binfmt-interpreter-writable", "/proc/sys/fs/binfmt_misc/py") not in found
    registered = json.loads((evidence / "artifacts/boot/binfmt-misc.json").read_bytes())
    assert {r["name"]: r["flags"] for r in registered} == {"py": "", "zz": "FC"}
    changed = {p: r["severity"] for (rule, p), r in found.items()
               if rule == "boot-file-changed-in-window"}  # fmt: skip
    assert changed["/boot/grub/grub.cfg"] == "MEDIUM"
    assert changed["/boot/vmlinuz-6.1.0-13-amd64"] == "LOW"
    assert "/boot/System.map-6.1.0-13-amd64" not in changed  # not code that boots

    facts = {
        r["path"]: r
        for r in map(json.loads, (evidence / "artifacts/persistence/entries.jsonl").read_bytes()
                     .split(b"\n")[:-1])
    }  # fmt: skip
    for path, kind, target in (
        ("/usr/lib/tmpfiles.d/zz-preload.conf", "tmpfiles", "/dev/shm/.l.so"),
        ("/usr/lib/sysctl.d/50-core.conf", "sysctl", "/var/tmp/.c"),
        ("/etc/sysctl.d/99-zz.conf", "sysctl", "/tmp/.m"),
        ("/usr/lib/binfmt.d/zz.conf", "binfmt", "/dev/shm/.interp"),
        ("/usr/share/initramfs-tools/hooks/zz", "initramfs", "/tmp/.implant"),
        ("/usr/lib/systemd/system-generators/zz-gen", "systemd-generator", "/dev/shm/.g"),
        ("/usr/share/dbus-1/system-services/org.zz.Helper.service", "dbus-service", "/dev/shm/.d"),
        ("/usr/share/systemd/user/zz.service", "systemd-unit", "/tmp/.u"),
        ("/run/user/1000/systemd/transient/run-u7.service", "systemd-unit", "/var/tmp/.t"),
    ):
        assert facts[path]["kind"] == kind and target in facts[path]["targets"], facts[path]
        assert found[("persistence-writable-target", path)]["severity"] == "HIGH", path
        assert (evidence / "artifacts/persistence" / path.lstrip("/")).is_file(), path
    rules = "/usr/share/polkit-1/rules.d/49-zz.rules"
    assert facts[rules]["kind"] == "polkit" and facts[rules]["package_state"] == "unpackaged"
    assert ("persistence-changed-in-window", rules) in found
    assert (evidence / "artifacts/persistence/var/lib/sudo/lectured/alice").is_file()
    # A directory tmpfiles.d merely creates in /tmp is not something it runs.
    assert facts["/usr/lib/tmpfiles.d/zz-x11.conf"]["writable_target"] is False
    assert ("persistence-writable-target", "/usr/lib/tmpfiles.d/zz-x11.conf") not in found
    # The host's own packaged entries are as their packages shipped them: no finding.
    packaged = [p for p, f in facts.items() if f["kind"] == "tmpfiles" and "zz" not in p]
    assert packaged and all(facts[p]["package_state"] != "unpackaged" for p in packaged)
    assert not [k for k in found if k[1] in packaged]


def test_init_override_reads_active_lines_only() -> None:
    assert boot.init_override("# linux /vmlinuz init=/bin/sh\nlinux /vmlinuz ro\n") is None
    assert boot.init_override("  linux /v rdinit=/x ro\n") == "rdinit=/x"
    assert boot.init_override("options root=/dev/sda notinit=1\n") is None
    assert boot.kind_of("loader/entries/debian.conf") == "bootloader-config"
    assert boot.kind_of("grub/fonts/unicode.pf2") == "other"
