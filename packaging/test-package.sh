#!/usr/bin/env bash
# The package end to end, as root on a Debian machine (CI runs it): build it, inspect it, rate the
# unit, install it, run the installed broker the way the unit does (its own user, only
# CAP_NET_BIND_SERVICE, ports 80 and 443), open a tunnel with the installed client, read it with
# the installed monitor as a member of the group, then purge and check nothing is left.
#   packaging/test-package.sh        (root; needs cargo-deb, systemd-analyze, setpriv, openssl)
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=2.0
work=$(mktemp -d)
broker_pid=
policy=/usr/sbin/policy-rc.d
cleanup() {
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
    # A failed run leaves nothing installed (nor the test's token) behind.
    [ -e "$work/installed" ] && dpkg --purge remoteproxy >/dev/null 2>&1 || true
    [ -e "$work/policy-rc.d.ours" ] && rm -f "$policy"
    rm -rf "$work"
}
trap cleanup EXIT
step() { echo "== test-package: $*"; }
fail() { echo "test-package: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (it installs and purges the package)"

step "build"
packaging/build-deb.sh >/dev/null
deb=$(ls -t target/debian/remoteproxy_*.deb | head -n1)
echo "$deb ($(du -h "$deb" | cut -f1))"

step "contents"
contents=$(dpkg-deb --contents "$deb" | awk '{print $NF}')
for path in ./usr/bin/remoteproxy ./usr/bin/remoteproxy-client ./usr/bin/remoteproxy-monitor \
    ./etc/remoteproxy/remoteproxy.conf ./etc/remoteproxy/tokens \
    ./usr/lib/systemd/system/remoteproxy.service ./usr/lib/sysusers.d/remoteproxy.conf \
    ./usr/lib/tmpfiles.d/remoteproxy.conf ./etc/logrotate.d/remoteproxy \
    ./usr/share/man/man8/remoteproxy.8.gz ./usr/share/man/man1/remoteproxy-client.1.gz \
    ./usr/share/man/man1/remoteproxy-monitor.1.gz ./usr/share/doc/remoteproxy/copyright \
    ./usr/share/bash-completion/completions/remoteproxy ./usr/share/zsh/vendor-completions/_remoteproxy \
    ./usr/share/fish/vendor_completions.d/remoteproxy.fish \
    ./usr/share/doc/remoteproxy/examples/prometheus-alerts.yml; do
    grep -qx -- "$path" <<<"$contents" || fail "$path is not in the package"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$work/conffiles"
grep -qx /etc/remoteproxy/remoteproxy.conf "$work/conffiles" || fail "the configuration is no conffile"
dpkg-deb -x "$deb" "$work/root"
for binary in remoteproxy remoteproxy-client remoteproxy-monitor; do
    sections=$(readelf -S "$work/root/usr/bin/$binary")
    if grep -q '\.symtab' <<<"$sections"; then fail "$binary is not stripped"; fi
done

step "install"
# Keep the service manager (if any) from starting the unit: this test starts the broker itself.
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && touch "$work/policy-rc.d.ours"
fi
touch "$work/installed"
dpkg -i "$deb"
getent passwd remoteproxy >/dev/null || fail "no user remoteproxy"
[ "$(stat -c '%U:%G %a' /etc/remoteproxy/remoteproxy.conf)" = "root:remoteproxy 640" ] ||
    fail "/etc/remoteproxy/remoteproxy.conf is $(stat -c '%U:%G %a' /etc/remoteproxy/remoteproxy.conf)"
[ -s /etc/remoteproxy/tls/certificate.pem ] && [ -s /etc/remoteproxy/tls/key.pem ] ||
    fail "no self-signed certificate was made"

step "unit"
unit=/usr/lib/systemd/system/remoteproxy.service
systemd-analyze verify "$unit"
systemd-analyze security --offline=true "$unit" | tee "$work/security" | tail -n1
score=$(grep -o 'Overall exposure level for [^:]*: [0-9.]*' "$work/security" | awk '{print $NF}')
[ -n "$score" ] || fail "no exposure level in: $(tail -n1 "$work/security")"
awk -v s="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(s <= max) }' ||
    fail "systemd-analyze security rates the unit $score, above $MAX_EXPOSURE"

step "run as the unit does"
as_service=(setpriv --reuid=remoteproxy --regid=remoteproxy --init-groups --no-new-privs
    --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service
    --bounding-set=-all,+net_bind_service)
"${as_service[@]}" /usr/bin/remoteproxy --check-config --configuration /etc/remoteproxy/remoteproxy.conf
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s' "$token" | sha256sum | cut -d' ' -f1 | sed 's/$/ ci-user/' >>/etc/remoteproxy/tokens
# What RuntimeDirectory=, StateDirectory= and LogsDirectory= make under systemd.
install -d -m 0750 -o remoteproxy -g remoteproxy /run/remoteproxy /var/lib/remoteproxy /var/log/remoteproxy
# Under strace, to check below that it keeps within the unit's system call filter, address
# families and MemoryDenyWriteExecute (this machine may not run systemd to enforce them).
chmod 0711 "$work" && install -d -o remoteproxy "$work/trace"
"${as_service[@]}" strace -f -qq -o "$work/trace/strace" \
    /usr/bin/remoteproxy --configuration /etc/remoteproxy/remoteproxy.conf >"$work/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do
    grep -q "remoteproxy running" "$work/broker.log" && break
    kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log"; fail "the broker exited"; }
    sleep 0.1
done
grep -q "remoteproxy running" "$work/broker.log" || { cat "$work/broker.log"; fail "the broker did not start"; }
broker=$(pgrep -P "$broker_pid" -x remoteproxy) || fail "no broker process under strace"
[ "$(stat -c '%U:%G %a' /run/remoteproxy/monitor.sock)" = "remoteproxy:remoteproxy 660" ] ||
    fail "monitor socket is $(stat -c '%U:%G %a' /run/remoteproxy/monitor.sock)"
# The TLS session ticket keys, kept in the state directory for the broker's user alone.
[ "$(stat -c '%U:%G %a' /var/lib/remoteproxy/ticket-keys)" = "remoteproxy:remoteproxy 600" ] ||
    fail "ticket key file is $(stat -c '%U:%G %a' /var/lib/remoteproxy/ticket-keys 2>&1)"

step "tunnel through ports 80 (TLS-TCP) and 443 (TLS-WebSocket)"
fingerprint=$(openssl x509 -in /etc/remoteproxy/tls/certificate.pem -noout -fingerprint -sha256 | cut -d= -f2)
client=(remoteproxy-client --stdio --pin "sha256:$fingerprint" --nonce ci)
printf 'from the device' | REMOTEPROXY_TOKEN=$token "${client[@]}" -u ssl://127.0.0.1:80 >"$work/a.out" &
device=$!
printf 'from the app' | REMOTEPROXY_TOKEN=$token "${client[@]}" -u wss://127.0.0.1:443 >"$work/b.out" ||
    fail "the app's client failed"
wait "$device" || fail "the device's client failed"
[ "$(cat "$work/a.out")" = "from the app" ] || fail "the device got: $(cat "$work/a.out")"
[ "$(cat "$work/b.out")" = "from the device" ] || fail "the app got: $(cat "$work/b.out")"

step "monitor as a member of the group, and refused to others"
setpriv --reuid=nobody --regid=nogroup --groups="$(getent group remoteproxy | cut -d: -f3)" \
    remoteproxy-monitor --json -s /run/remoteproxy/monitor.sock >"$work/snapshot.json"
grep -Eq '"totalTunnelCount": ?[1-9]' "$work/snapshot.json" || fail "monitor snapshot: $(head -c 300 "$work/snapshot.json")"
if setpriv --reuid=nobody --regid=nogroup --clear-groups remoteproxy-monitor --json \
    -s /run/remoteproxy/monitor.sock >/dev/null 2>&1; then
    fail "a user outside the group read the monitor"
fi

step "stop"
kill -TERM "$broker"
wait "$broker_pid" || fail "the broker did not stop cleanly" # strace exits with the broker's status
broker_pid=
grep -q "ci-user" /var/log/remoteproxy/statistics.log || fail "no statistics line for the tunnel"

step "the broker kept within the unit's sandbox"
# The system calls SystemCallFilter=@system-service allows, less ~@privileged @resources, plus @chown
# and setpriority.
expand() {
    systemd-analyze syscall-filter "$1" | tail -n +2 | grep -v '^ *#' | awk 'NF {print $1}' |
        while read -r entry; do
            case "$entry" in @*) expand "$entry" ;; *) echo "$entry" ;; esac
        done
}
expand @system-service | sort -u >"$work/allowed"
{ expand @privileged; expand @resources; } | sort -u >"$work/denied"
{ comm -23 "$work/allowed" "$work/denied"; expand @chown; echo setpriority; } | sort -u >"$work/permitted"
sed -n 's/^[0-9]* *\([a-z0-9_]*\)(.*/\1/p' "$work/trace/strace" | sort -u >"$work/used"
outside=$(comm -23 "$work/used" "$work/permitted" | tr '\n' ' ')
[ -z "$outside" ] || fail "system calls outside the unit's filter: $outside"
echo "$(wc -l <"$work/used") distinct system calls, all within the filter"
families=$(grep -o 'socket(AF_[A-Z0-9]*' "$work/trace/strace" | sort -u | sed 's/socket(//' | tr '\n' ' ')
for family in $families; do
    case "$family" in AF_INET | AF_INET6 | AF_UNIX) ;; *) fail "socket family $family outside RestrictAddressFamilies" ;; esac
done
if grep -Eq 'PROT_(WRITE\|PROT_EXEC|EXEC\|PROT_WRITE)|PROT_READ\|PROT_WRITE\|PROT_EXEC' "$work/trace/strace"; then
    fail "writable and executable memory, which MemoryDenyWriteExecute refuses"
fi

step "purge"
dpkg --purge remoteproxy
rm -f "$work/installed"
for path in /usr/bin/remoteproxy /etc/remoteproxy /var/lib/remoteproxy /var/log/remoteproxy \
    /usr/lib/systemd/system/remoteproxy.service; do
    [ ! -e "$path" ] || fail "$path is left after purge"
done
echo "== test-package: OK (exposure $score)"
