#!/usr/bin/env bash
# Checks the systemd units: `systemd-analyze verify` (against the binaries just
# built, since the units name their installed path) and an exposure score below 5
# with `systemd-analyze security`. Run from the repository root after a build.
set -euo pipefail
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for unit in deploy/*.service; do
  sed "s#/usr/local/bin/#$bin/#" "$unit" > "$tmp/$(basename "$unit")"
done
for unit in "$tmp"/*.service; do
  systemd-analyze verify "$unit"
  # The threshold is on a 0-100 scale (the score printed is a tenth of it).
  systemd-analyze security --offline=true --threshold=49 "$unit" > "$tmp/score"
  tail -1 "$tmp/score"
done
