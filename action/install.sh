#!/usr/bin/env bash
# The Action's install: `key` prints the pip cache's key (the OS, the Python and sqlplan's own
# requirements), `install` installs sqlplan from the action's own checkout into a venv and puts
# its bin/ on PATH for the steps after.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${RUNNER_TEMP:-/tmp}/sqlplan-venv"

case "${1:-}" in
  key)
    python="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    digest="$(sha256sum "$here/pyproject.toml" | cut -c1-16)"
    echo "key=sqlplan-pip-${RUNNER_OS:-$(uname -s)}-py${python}-${digest}" >> "${GITHUB_OUTPUT:-/dev/stdout}"
    ;;
  install)
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$here"
    echo "$venv/bin" >> "${GITHUB_PATH:-/dev/null}"
    "$venv/bin/sqlplan" --version
    ;;
  *)
    echo "usage: install.sh key|install" >&2
    exit 2
    ;;
esac
