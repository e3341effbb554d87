#!/usr/bin/env bash
# Install Debian's chromium for the web page's browser tests (tests/service/test_page.py) when it
# is missing. Needs root and apt-get (as in CI); never fails: without chromium those tests skip
# and say why. Playwright drives this browser; never `playwright install`.
# Environment: CHROMIUM_PATH (default /usr/bin/chromium, the path the tests use).
set -u
chromium=${CHROMIUM_PATH:-/usr/bin/chromium}
[ -x "$chromium" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: no chromium at $chromium and no apt-get as root: the browser tests will skip"
  exit 0
fi
echo "install-chromium: installing chromium with apt-get for the browser tests"
log=$(mktemp 2>/dev/null || echo /tmp/install-chromium.log)
if timeout 900 apt-get update -qq >"$log" 2>&1 &&
   DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium >>"$log" 2>&1; then
  echo "install-chromium: done"
else
  echo "install-chromium: apt-get failed: the browser tests will skip. Its last lines:"
  tail -n 5 "$log"
fi
rm -f "$log"
exit 0
