#!/bin/sh
# Puts a real Exim where test/e2e/exim-policy.test.ts looks for it, on a Debian machine that
# also has Postfix installed. Debian's exim4 packages conflict with Postfix (both provide
# mail-transport-agent), so the binary package is unpacked, not installed: the test runs
# `exim4 -C CONF -bh IP` with a configuration of its own and needs nothing from exim4-base or
# exim4-config. The libraries the binary links against are installed with apt, and Exim's
# Debian user is created, as the package's scripts would.
#
#   test/e2e/exim-setup.sh [DIR]     (default /opt/pfgrey-test/exim; run as root)
#
# Safe to run again: an unpacked Exim that starts is kept, a user that exists is left alone;
# an Exim that does not start (a library removed since) is fetched and unpacked again.
set -eu

dir=${1:-/opt/pfgrey-test/exim}
exim=$dir/usr/sbin/exim4

if [ "$(id -u)" -ne 0 ]; then
  echo "$0: run as root (apt-get, useradd)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# Exim's compiled-in exim_user; the test's configuration names it too.
if ! getent passwd Debian-exim >/dev/null; then
  useradd -r -M -d /var/spool/exim4 -s /usr/sbin/nologin Debian-exim
fi

# An empty environment: Exim warns about every variable it purges.
if ! env -i "$exim" -bV -C /dev/null >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # apt-get download fetches as _apt where it can, into the current directory.
  if getent passwd _apt >/dev/null; then chown _apt "$work"; fi
  # A machine whose package lists were never fetched knows no exim4-daemon-light yet.
  if ! (cd "$work" && apt-get download -q exim4-daemon-light); then
    apt-get update -q
    (cd "$work" && apt-get download -q exim4-daemon-light)
  fi
  deb=$(ls "$work"/exim4-daemon-light_*.deb)
  # The shared libraries from the package's Depends (of alternatives the first; versions
  # dropped), without exim4-base and debconf, which only an installed Exim needs.
  libs=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' |
    grep -v -e '^$' -e '^exim4' -e '^debconf')
  # shellcheck disable=SC2086 # one word per package name
  apt-get install -y -q --no-install-recommends $libs >/dev/null
  mkdir -p "$dir"
  dpkg -x "$deb" "$dir"
fi

# Proves the binary loads (every library found) and runs.
if ! version=$(env -i "$exim" -bV -C /dev/null); then
  echo "$0: $exim does not run" >&2
  exit 1
fi
printf '%s\n' "$version" | head -n 1
