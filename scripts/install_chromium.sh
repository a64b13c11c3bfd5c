#!/usr/bin/env bash
# Installs Debian's Chromium for the web-page test (tests/e2e/test_web_page.py), once: safe to re-run, quiet.
# Does nothing when /usr/bin/chromium is there. When it cannot install (no root, no apt, no network) it says
# so and exits 0: the browser test then skips itself with that reason, and the rest of the suite still runs.
set -uo pipefail
[ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi "wqy\|cjk" && exit 0

warn() { echo "install_chromium: $*; tests/e2e/test_web_page.py will be skipped" >&2; exit 0; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo -n" || warn "not root and no sudo"
fi
command -v apt-get >/dev/null 2>&1 || { [ -x /usr/bin/chromium ] && exit 0; warn "no apt-get on this system"; }
# A Chinese font too (fonts-wqy-microhei, ~5 MB), so the studio's Chinese pages render in screenshots.
fonts() { fc-list 2>/dev/null | grep -qi "wqy\|cjk" || $SUDO apt-get install -y -qq --no-install-recommends \
  fonts-wqy-microhei >/dev/null 2>&1 || echo "install_chromium: no Chinese font; screenshots show boxes" >&2; }
if [ -x /usr/bin/chromium ]; then fonts; exit 0; fi
echo "install_chromium: installing chromium (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1   # a stale package list may still have chromium: install anyway
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || warn "apt-get install chromium failed"
[ -x /usr/bin/chromium ] || warn "chromium is still missing after apt-get"
fonts
