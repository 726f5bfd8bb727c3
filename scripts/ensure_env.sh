#!/usr/bin/env bash
# Make sure the study's virtual environment exists and is complete; print its path (last line).
#
# The venv lives in ${STUDY_VENV_ROOT:-$HOME/.cache/dp-xai-study}/venv-<12 hex of
# sha256(requirements.txt)>, so a changed requirements.txt gets a fresh venv and an unchanged
# one is reused. A venv counts as complete only when it holds the marker file .complete,
# written after `pip install -r requirements.txt` succeeded; a half-built one is finished
# (pip install is a quick no-op for what is already there), never trusted.
# Everything but the final path goes to stderr, so `VENV=$(scripts/ensure_env.sh)` works.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$repo_root/requirements.txt"
python="${STUDY_PYTHON:-python3}"

[[ -f "$requirements" ]] || { echo "ensure_env: $requirements not found" >&2; exit 1; }
hash="$(sha256sum "$requirements" | cut -c1-12)"
venv_root="${STUDY_VENV_ROOT:-$HOME/.cache/dp-xai-study}"
venv="$venv_root/venv-$hash"
mkdir -p "$venv_root"

# one builder at a time per venv (a second `make` waits instead of racing pip)
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    flock 9
fi

if [[ -f "$venv/.complete" ]] && "$venv/bin/python" -c "import sys" >/dev/null 2>&1; then
    echo "$venv"
    exit 0
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "ensure_env: the study needs Python 3.11; '$python' is $("$python" --version 2>&1)." \
         "Set STUDY_PYTHON to a python3.11 executable." >&2
    exit 1
fi

echo "ensure_env: building $venv from $requirements (a few minutes the first time)" >&2
rm -f "$venv/.complete"
"$python" -m venv "$venv" >&2
if ! "$venv/bin/python" -m pip install --quiet --upgrade pip >&2; then
    echo "ensure_env: warning: could not upgrade pip; continuing with $("$venv/bin/python" -m pip --version)" >&2
fi
"$venv/bin/python" -m pip install -r "$requirements" >&2
touch "$venv/.complete"
echo "ensure_env: ready" >&2
echo "$venv"
