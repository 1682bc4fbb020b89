#!/usr/bin/env bash
# Make Debian's browsers available for the browser tests; never download a browser or a driver.
#   chromium            Chromium, driven by Playwright (tests/support/web.py)
#   firefox-esr         Firefox ESR, driven over WebDriver BiDi (tests/support/browsers.py)
#   webkit2gtk-driver   WebKitGTK (Safari's engine) and its WebKitWebDriver, driven by Selenium
#   xvfb                the display WebKitGTK needs (it has no headless mode)
# Where one cannot be installed its tests skip with the reason, and fail in CI (CI=true).
declare -A wanted=(
  [chromium]=/usr/bin/chromium
  [firefox-esr]=/usr/bin/firefox-esr
  [webkit2gtk-driver]=/usr/bin/WebKitWebDriver
  [xvfb]=/usr/bin/Xvfb
)
missing=()
for package in "${!wanted[@]}"; do
  [ -x "${wanted[$package]}" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's ${missing[*]} for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
    >/dev/null 2>&1 \
    || echo "WARNING: apt-get could not install ${missing[*]}; their browser tests will be" \
            "skipped (and fail in CI)." >&2
else
  echo "WARNING: ${missing[*]} missing and cannot be installed here (need root + apt-get)." >&2
  echo "         Install with: sudo apt-get install ${missing[*]}" >&2
fi
exit 0
