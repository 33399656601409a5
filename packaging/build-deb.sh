#!/usr/bin/env bash
# Builds target/debian/remoteproxy_<version>_<arch>.deb: the three binaries (release, stripped),
# the unit, the configuration, the man pages and the completions.
#   packaging/build-deb.sh            (needs cargo-deb: cargo install cargo-deb --locked)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p remoteproxy -p remoteproxy-client -p remoteproxy-monitor -p remoteproxy-packaging
rm -rf target/packaging
target/release/remoteproxy-packaging target/packaging >/dev/null
gzip -9n target/packaging/man/*
cargo deb --no-build --strip --locked -p remoteproxy "$@"
