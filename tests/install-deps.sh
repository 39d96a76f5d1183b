#!/usr/bin/env bash
# Installs what the end-to-end tests need, when missing (Debian, as root):
# OpenSSH's sshd, logrotate, busybox, procps, iproute2, iptables (to black-hole
# a port in the partition tests), gzip, tcsh (a login shell the remote
# scripts must survive), shellcheck (checks those scripts), and the unprivileged
# `rilltest` user the tests log in as. Never starts the system sshd and never
# touches /etc/ssh/sshd_config: each test starts its own sshd.
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
command -v tcsh >/dev/null || need+=(tcsh)
command -v shellcheck >/dev/null || need+=(shellcheck)

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

if ! id rilltest >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: user rilltest is missing; run as root to create it" >&2
    exit 1
  fi
  useradd -m -s /bin/sh rilltest
fi
