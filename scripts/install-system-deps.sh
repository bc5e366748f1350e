#!/usr/bin/env bash
# Installs the Debian packages the test suite uses, when they are missing.
# - google-cloud-cli-bigtable-emulator: Google's Bigtable emulator (cbtemulator)
# - chromium: the browser the dashboard's browser tests drive through Playwright
set -euo pipefail

EMULATOR=/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator
missing=()
[ -x "$EMULATOR" ] || missing+=(google-cloud-cli-bigtable-emulator)
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
