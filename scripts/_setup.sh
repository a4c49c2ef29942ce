# Sourced by scripts/run and scripts/test: sets up whatever is missing, quickly when nothing is.
#   - .venv with the project and its test dependencies (re-installed when pyproject.toml changes)
#   - node_modules from package-lock.json: solc, OpenZeppelin 5.4.0, anvil, cast, Ganache
#   - the compiled registry, when its sources changed since the committed artifact
#   - the mypyc-compiled canonical event hash, when tracer/epcis/canonical.py changed
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[31m[setup] %s\033[0m\n' "$*" >&2; exit 1; }

fingerprint() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1)); install python3.11"
command -v node >/dev/null 2>&1 || fail "Node.js 20 is needed for the Solidity compiler and anvil; install nodejs"
command -v npm >/dev/null 2>&1 || fail "npm is needed; install npm"

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment in .venv"
  "$PYTHON" -m venv .venv || fail "python -m venv failed; on Debian: apt-get install python3-venv"
fi

py_stamp=".venv/.tracer-setup-$(fingerprint pyproject.toml)"
if [ ! -f "$py_stamp" ]; then
  say "installing Python dependencies (pyproject.toml changed or first run)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --progress-bar on -e '.[test]' \
    || fail "pip install failed; check the network access to PyPI and retry"
  rm -f .venv/.tracer-setup-*
  touch "$py_stamp"
fi

npm_stamp="node_modules/.tracer-setup-$(fingerprint package.json package-lock.json)"
if [ ! -f "$npm_stamp" ]; then
  say "installing npm dependencies: solc, OpenZeppelin 5.4.0, anvil, cast, Ganache"
  npm ci --no-audit --no-fund || fail "npm ci failed; check the network access to the npm registry and retry"
  touch "$npm_stamp"
fi

.venv/bin/python -m tracer.chain.compiler || fail "compiling the contracts failed (see above)"

# The canonical event hash compiled by mypyc (about twice the pure-Python speed; tracer/epcis/native.py), rebuilt
# when canonical.py changes. Without a C compiler the service hashes in pure Python: slower, the same hashes.
if ! .venv/bin/python -c 'import sys; from tracer.epcis.native import is_current; sys.exit(0 if is_current() else 1)'; then
  say "compiling the canonical event hash with mypyc (about 30 s, once per change of tracer/epcis/canonical.py)"
  .venv/bin/python -c 'import sys; from tracer.epcis.native import build; sys.exit(0 if build() else 1)' \
    || say "mypyc could not compile tracer/epcis/canonical.py (see above): hashing in pure Python, which is slower"
fi

# slither for tests/contracts/test_static_analysis.py, without its web3<8 pin (see pyproject.toml, extra "analysis").
if [ ! -x .venv/bin/slither ]; then
  say "installing slither-analyzer (static analysis of the contracts)"
  .venv/bin/python -m pip install -q --no-deps "slither-analyzer==0.11.6" "crytic-compile==0.4.2" "solc-select==1.2.0" \
    "prettytable>=3.10" "cbor2>=5" "wcwidth" || fail "installing slither-analyzer failed"
fi

# The browser tests (tests/browser) drive Debian's Chromium through Playwright, never a downloaded browser,
# and need a CJK font, or Chinese renders as boxes. Installed only when absent.
browser_missing=()
command -v chromium >/dev/null 2>&1 || browser_missing+=(chromium)
fc-list 2>/dev/null | grep -i "Noto Sans CJK" >/dev/null || browser_missing+=(fonts-noto-cjk)  # no -q: under pipefail an early exit of grep fails fc-list (SIGPIPE)
if [ ${#browser_missing[@]} -gt 0 ]; then
  say "installing ${browser_missing[*]} for the browser tests (Debian packages; Playwright downloads no browser)"
  if [ "$(id -u)" -eq 0 ]; then apt=(apt-get); elif command -v sudo >/dev/null 2>&1; then apt=(sudo apt-get); else apt=(); fi
  if [ ${#apt[@]} -eq 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "install ${browser_missing[*]} (Debian: apt-get install -y ${browser_missing[*]}); the browser tests need them"
  fi
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${browser_missing[@]}" >/dev/null \
    || { "${apt[@]}" update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y \
         --no-install-recommends "${browser_missing[@]}" >/dev/null; } \
    || fail "apt-get install ${browser_missing[*]} failed; install them by hand, the browser tests need them"
fi
