#!/usr/bin/env bash
# Mount the embedded simulator's demo content and keep it mounted until Ctrl-C.
set -euo pipefail
mnt=${1:-/tmp/vspherefs-demo}
mkdir -p "$mnt"
if grep -qs " $mnt " /proc/mounts; then umount "$mnt" || true; fi
cat <<MSG
Mounting the embedded simulator at $mnt (Ctrl-C unmounts). In another terminal, try:

  ls -l $mnt/libraries/ $mnt/libraries/demo-library/*
  cat $mnt/libraries/demo-library/hello/hello.txt | xxd | head
  sha256sum $mnt/libraries/demo-library/big/big.bin
  cp -r $mnt/libraries/iso-library /tmp/copy && du -sh /tmp/copy
  df -h $mnt
  echo hello > $mnt/libraries/demo-library/hello/new.txt && ls -l $mnt/libraries/demo-library/hello
  ls -l $mnt/vms/ $mnt/vms/DC0_H0_VM0/etc && cat $mnt/vms/DC0_H0_VM0/etc/hostname
  rsync -a /etc/apt/ $mnt/vms/DC0_H0_VM0/tmp/apt/ && ls -lR $mnt/vms/DC0_H0_VM0/tmp | head
  ls -l $mnt/exports/demo-off $mnt/disks/demo-off
  mkdir $mnt/exports/DC0_H0_VM0@demo && ls -l $mnt/exports/DC0_H0_VM0@demo $mnt/disks/DC0_H0_VM0@demo
  rmdir $mnt/exports/DC0_H0_VM0@demo

  find $mnt -type f | head; du -sh $mnt

For govc against the same simulator, in that terminal:

  export \$(grep ^GOVC_ /tmp/vspherefs-demo.env)   # GOVC_URL and GOVC_TLS_CA_CERTS (verified TLS)
  govc library.ls; govc ls vm

(or GOVC_INSECURE=1 instead of GOVC_TLS_CA_CERTS; to pin the certificate, govc's option is
-tls-known-hosts FILE with a line "HOST:PORT THUMBPRINT", printed below).
MSG
./bin/vspherefs mount --sim "$mnt" | tee /tmp/vspherefs-demo.env
