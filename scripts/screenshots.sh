#!/usr/bin/env bash
# Regenerates the dashboard screenshots the README shows (docs/screenshots/*.png) from the
# browser tests, which save a screenshot at each step worth seeing. Runs the SQLite half
# of the browser suite (no PostgreSQL needed) in headless Chromium at 1280x900.
#
#   scripts/screenshots.sh
#
# Needs Debian's chromium and chromium-driver (scripts/test.sh installs them as root).
set -euo pipefail
cd "$(dirname "$0")/.."

shots="$(mktemp -d)"
trap 'rm -rf "$shots"' EXIT

SCREENSHOT_DIR="$shots" CI=true cargo test -p syncledger-tests --test browser --locked -- \
  mappings::sqlite:: \
  runs::sqlite:: \
  --test-threads=2

mkdir -p docs/screenshots
for name in overview mapping-editor rollback-preview record-time-travel; do
  if [[ ! -s "$shots/sqlite/$name.png" ]]; then
    echo "screenshots.sh: the browser tests did not save $name.png" >&2
    exit 1
  fi
  cp "$shots/sqlite/$name.png" "docs/screenshots/$name.png"
done
echo "docs/screenshots: overview, mapping-editor, rollback-preview, record-time-travel"
