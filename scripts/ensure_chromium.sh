#!/usr/bin/env bash
# Make Debian's Chromium available for the browser tests; never download a browser build.
# Where it cannot be installed the browser tests skip with a loud reason (see tests/test_browser.py).
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "WARNING: apt-get could not install chromium; browser tests will be skipped." >&2
else
  echo "WARNING: /usr/bin/chromium is missing and cannot be installed here (need root + apt-get)." >&2
  echo "         Install it with: sudo apt-get install chromium" >&2
fi
exit 0
