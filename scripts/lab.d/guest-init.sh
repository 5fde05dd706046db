#!/bin/sh
# PID 1 of every lab guest (its initramfs's /init), run by busybox-static's
# sh: POSIX sh plus busybox applets, nothing else. scripts/lab.d/build-guest
# copies it in. Kernel command line parameters it honours:
#   lab_name=NAME          hostname (what `guestinfo --hostname` shows)
#   qga_block=RPC[,RPC]    passed to qemu-ga as --block-rpcs (empty: none)
#   lab_boot=rescue-iso    set by the rescue ISO's grub: said on the console
#   lab_cdrom=lock         mount the CD-ROM (the kernel then locks its tray)
# An ACPI power button press (virsh shutdown) powers the guest off.
# It ends in a sleep loop: a shell on the console spins the CPU under TCG.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
# Seconds since boot on each line: the console log shows where time goes.
say() { read -r up _ </proc/uptime; echo "lab-init [$up]: $*"; }
lab_name=lab
qga_block=
lab_boot=
lab_cdrom=
read -r cmdline </proc/cmdline
# Split on blanks on purpose: one parameter a word.
for arg in $cmdline; do
    case $arg in
        lab_name=*) lab_name=${arg#lab_name=} ;;
        qga_block=*) qga_block=${arg#qga_block=} ;;
        lab_boot=*) lab_boot=${arg#lab_boot=} ;;
        lab_cdrom=*) lab_cdrom=${arg#lab_cdrom=} ;;
    esac
done
hostname "$lab_name"
[ "$lab_boot" = rescue-iso ] && say "booted from the rescue ISO"
while read -r m; do
    insmod "/lib/modules/lab/$m.ko" || say "insmod $m failed"
done </etc/lab-modules
say "modules loaded"

# busybox acpid runs /etc/acpi/PWRF/00000080 for the power button. No
# init to signal: poweroff -f powers off at once (a ramdisk has nothing
# to flush), and on_poweroff=destroy shuts the domain off.
mkdir -p /etc/acpi/PWRF
cat >/etc/acpi/PWRF/00000080 <<'ACTION'
#!/bin/sh
echo "lab-init: ACPI power button: powering off" >/dev/console
poweroff -f
ACTION
chmod 755 /etc/acpi/PWRF/00000080
acpid -c /etc/acpi || say "acpid failed to start"

# Keep the CD-ROM mounted: a disc taken out by force (the tray unlocked
# by the host) is unmounted, and the next disc put in is mounted, which
# locks the tray again. The console lines say which state it is in.
# autoclose=0: our probe must not close a tray the host opened.
cdrom_lock() {
    while read -r m; do
        insmod "/lib/modules/lab/$m.ko" || say "insmod $m failed"
    done </etc/lab-modules-cdrom
    echo 0 >/proc/sys/dev/cdrom/autoclose
    mkdir -p /mnt/cdrom
    while :; do
        # (busybox-static has no mountpoint applet)
        if ! grep -q ' /mnt/cdrom ' /proc/mounts; then
            mount -t iso9660 -o ro /dev/sr0 /mnt/cdrom 2>/dev/null &&
                say "cdrom: /dev/sr0 mounted on /mnt/cdrom, the tray is locked"
        elif ! dd if=/dev/sr0 of=/dev/null bs=2048 count=1 2>/dev/null; then
            umount -l /mnt/cdrom
            say "cdrom: the disc is gone, /mnt/cdrom unmounted"
        fi
        sleep 1
    done
}
[ "$lab_cdrom" = lock ] && cdrom_lock &

# The agent port shows up a moment after virtio_console loads; there is no
# udev, so find it by its name in sysfs rather than /dev/virtio-ports/.
agent_port() {
    for p in /sys/class/virtio-ports/vport*; do
        [ -r "$p/name" ] || continue
        if [ "$(cat "$p/name")" = org.qemu.guest_agent.0 ]; then
            echo "/dev/${p##*/}"
            return 0
        fi
    done
    return 1
}
agent() {
    n=0
    until port=$(agent_port) && [ -c "$port" ]; do
        n=$((n + 1))
        if [ "$n" -gt 100 ]; then
            say "no org.qemu.guest_agent.0 port after 20 s: agent not started"
            return 0
        fi
        sleep 0.2
    done
    while :; do
        say "qemu-ga on $port${qga_block:+ blocking $qga_block}"
        if [ -n "$qga_block" ]; then
            qemu-ga -m virtio-serial -p "$port" --block-rpcs="$qga_block"
        else
            qemu-ga -m virtio-serial -p "$port"
        fi
        say "qemu-ga exited ($?), restarting"
        sleep 2
    done
}

# A filesystem of known size for `guestinfo --filesystem` (issue 28): qemu-ga
# skips those without a block device (the initramfs, tmpfs), so an 8 MiB
# ext2 image (1 KiB blocks, no reserved blocks) on a loop device, holding a
# 1 MiB file, at /srv/lab-data.
data_fs() {
    if mkdir -p /srv/lab-data &&
        dd if=/dev/zero of=/lab-data.img bs=1024 count=8192 2>/dev/null &&
        mke2fs -F -q -m 0 -b 1024 /lab-data.img >/dev/null &&
        mount -o loop -t ext2 /lab-data.img /srv/lab-data &&
        dd if=/dev/zero of=/srv/lab-data/fill bs=1024 count=1024 2>/dev/null &&
        sync; then
        say "data filesystem at /srv/lab-data"
    else
        say "data filesystem not mounted"
    fi
}
data_fs

agent &
say "up"
while :; do sleep 3600; done
