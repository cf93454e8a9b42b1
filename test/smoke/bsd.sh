#!/bin/sh
#
# Smoke test of an installed pfgrey behind pf, between two hosts of one network (the Vagrantfile's
# two machines: each plays client for the other). pf passes traffic that a host sends to itself
# untouched, so the client must be another host.
#
#   bsd.sh client SERVER [PASSTIME]
#       On another host: connects to SERVER's port 25 twice, PASSTIME seconds apart (default 30;
#       the server's pfgrey run needs a shorter --passtime), and expects pfgrey both times: a
#       banner that arrives a byte a second, then 451 at DATA. The second attempt, after the pass
#       time, promotes this host.
#   bsd.sh server CLIENT [WAIT]
#       On the pfgrey host, as root, afterwards: expects CLIENT in <spamd-white> within WAIT
#       seconds (default 90: the scan interval, then the push to pf).
#
# Uses only what both BSDs have in base: sh, nc, pfctl.

set -eu

fail() {
	echo "bsd.sh: FAIL: $*" >&2
	exit 1
}

# One SMTP session as a greylisted client sees it; the transcript goes to $2.
session() {
	out=$2
	: >"$out"
	# The commands wait for the stuttered banner (at most -S, 10 s by default, a byte a second).
	{
		sleep 15
		for line in 'HELO smoke.example' 'MAIL FROM:<smoke@smoke.example>' \
		    'RCPT TO:<postmaster@pfgrey.example>' 'DATA' 'QUIT'; do
			printf '%s\r\n' "$line"
			sleep 2
		done
	} | nc -w 30 "$1" 25 >"$out" &
	nc_pid=$!
	# A stuttered banner has come only in part three seconds in; a plain MTA's is whole at once.
	sleep 3
	early=$(wc -c <"$out" | tr -d ' ')
	[ "$early" -gt 0 ] || fail "no banner from $1:25 after 3 s: is pf redirecting to pfgrey?"
	[ "$early" -lt 20 ] || fail "$early bytes of banner after 3 s: $1:25 does not stutter (not pfgrey?)"
	wait "$nc_pid" || true
	grep -q '^220 ' "$out" || fail "no 220 banner from $1:25: $(cat "$out")"
	grep -q '^451 ' "$out" || fail "no 451 at DATA from $1:25: $(cat "$out")"
	echo "bsd.sh: $1:25 stuttered its banner ($early bytes in 3 s) and answered DATA with 451"
}

client() {
	server=$1
	passtime=${2:-30}
	tmp=$(mktemp -d /tmp/pfgrey-smoke.XXXXXX)
	trap 'rm -rf "$tmp"' EXIT
	session "$server" "$tmp/first"
	echo "bsd.sh: waiting $passtime s, the pass time, before retrying"
	sleep "$passtime"
	session "$server" "$tmp/second"
}

server() {
	client=$1
	wait=${2:-90}
	waited=0
	while ! pfctl -q -t spamd-white -T show | grep -qx "[[:space:]]*$client"; do
		[ "$waited" -lt "$wait" ] ||
			fail "$client is not in <spamd-white> after $wait s: $(pfctl -q -t spamd-white -T show | tr '\n' ' ')"
		sleep 5
		waited=$((waited + 5))
	done
	echo "bsd.sh: pfctl -t spamd-white -T show lists $client"
}

case ${1:-} in
client)	[ $# -ge 2 ] || fail "usage: bsd.sh client SERVER [PASSTIME]"; client "$2" "${3:-}" ;;
server)	[ $# -ge 2 ] || fail "usage: bsd.sh server CLIENT [WAIT]"; server "$2" "${3:-}" ;;
*)	fail "usage: bsd.sh client SERVER [PASSTIME] | bsd.sh server CLIENT [WAIT]" ;;
esac
