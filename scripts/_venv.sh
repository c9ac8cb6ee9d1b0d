# Shared by scripts/demo and scripts/test: make .venv and install runlog into it.
# Usage: source scripts/_venv.sh EXTRAS   (EXTRAS like "tests,typing,lint" or "")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "runlog needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2
    exit 2
}
extras="${1:-}"
stamp=".venv/.installed-${extras:-core}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
    touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
