#!/bin/sh
rm -f '/tmp/benches-migrate.8QW6NG/copy-fifo' && mkfifo '/tmp/benches-migrate.8QW6NG/copy-fifo'
virsh -q -c 'qemu+ssh://root@127.0.0.1:2222/system?command=/work/main/.lab/ssh/ssh' vol-download --pool bench-migrate-copy --vol bench-copy.iso '/tmp/benches-migrate.8QW6NG/copy-fifo' &
virsh -q -c 'qemu+ssh://root@127.0.0.1:2222/session?socket=/work/main/.lab/second/.cache/libvirt/libvirt-sock&proxy=netcat&command=/work/main/.lab/ssh/ssh' "vol-create-as --pool bench-migrate-copy --name bench-copy.iso --capacity 67108864 --format raw ; vol-upload --pool bench-migrate-copy --vol bench-copy.iso '/tmp/benches-migrate.8QW6NG/copy-fifo'"
wait
