#!/usr/bin/env bash
# Installs what the end-to-end tests need, when missing (Debian, as root):
# OpenSSH's sshd, logrotate, busybox, procps, iproute2, iptables (to black-hole
# a port in the partition tests), gzip, xz, zstd and bzip2 (compressed
# rotations read back), tcsh and fish (login shells the remote
# scripts must survive), shellcheck (checks those scripts), sudo (root-only
# files), systemd-journal-remote (real journal files, and journalctl, with no
# systemd running), prometheus, chromium and chromium-driver (the page and
# /metrics), etcd-server and etcd-client (clusters of collectors; the
# package's service is not started), and the unprivileged users the tests log in as: `rilltest` (login
# shell sh; no sudo), `rilltcsh` (tcsh; sudo without a password) and
# `rillfish` (fish; sudo with its password). Never starts the system sshd and never touches
# /etc/ssh/sshd_config: each test starts its own sshd.
set -euo pipefail

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v logrotate >/dev/null || need+=(logrotate)
command -v busybox >/dev/null || need+=(busybox)
command -v pgrep >/dev/null || need+=(procps)
command -v ip >/dev/null || need+=(iproute2)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v iptables >/dev/null || need+=(iptables)
command -v gzip >/dev/null || need+=(gzip)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
command -v bzip2 >/dev/null || need+=(bzip2)
command -v tcsh >/dev/null || need+=(tcsh)
command -v fish >/dev/null || need+=(fish)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v sudo >/dev/null || need+=(sudo)
[ -x /lib/systemd/systemd-journal-remote ] || need+=(systemd-journal-remote)
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${need[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}" >&2
  # Keep package scripts from starting services (there may be no init system).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# sshd's privilege-separation directory.
mkdir -p /run/sshd
chmod 755 /run/sshd

# The accounts the tests log in as, NAME:SHELL (keep in step with ACCOUNTS
# in crates/test-support/src/user.rs). Each is created with its login shell,
# or given it back if it has another one. Their password is set by the tests
# themselves (TestUser::password): useradd leaves it locked.
for account in rilltest:/bin/sh rilltcsh:tcsh rillfish:fish; do
  name=${account%%:*}
  shell=$(command -v "${account#*:}")
  current=$(getent passwd "$name" | cut -d: -f7) || true
  [ "$current" = "$shell" ] && continue
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: user $name is missing or has no login shell $shell; run as root" >&2
    exit 1
  fi
  if [ -z "$current" ]; then
    useradd -m -s "$shell" "$name"
  else
    usermod -s "$shell" "$name"
  fi
done

# What the accounts may do through sudo (tests/sudo.rs): rilltcsh anything
# without a password, rillfish anything with its own, rilltest nothing.
# This machine exists for the tests; never run this on a server you keep.
if [ "$(id -u)" = 0 ]; then
  rules=/etc/sudoers.d/rill-tests
  want='rilltcsh ALL=(root) NOPASSWD: ALL
rillfish ALL=(root) ALL
Defaults:rillfish !lecture'
  if [ "$(cat "$rules" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" > "$rules.tmp"
    chmod 440 "$rules.tmp"
    visudo -cqf "$rules.tmp"
    mv "$rules.tmp" "$rules"
  fi
fi
