#!/usr/bin/env bash
# The project's one test command: bash tests/run.sh [pytest args...]
# On a bare Debian machine, as root, it installs PostgreSQL, RabbitMQ and Python venv support first.
# The tests start their own throwaway servers on free ports; services the packages start are not used.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
    || [ -x "$(pg_config --bindir 2>/dev/null)/initdb" ] || missing+=(postgresql)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
command -v "$PYTHON" >/dev/null || missing+=(python3)
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests/run.sh: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "tests/run.sh: missing ${missing[*]} (not root with apt-get; those tests will skip, or fail with CI=true)" >&2
    fi
fi

# Reuse .venv, but rebuild it if its interpreter no longer runs (e.g. the base Python moved).
if ! .venv/bin/python -c '' 2>/dev/null; then
    rm -rf .venv
    "$PYTHON" -m venv .venv
fi
PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q -e '.[test]'

# Compiled once here: where PYTHONDONTWRITEBYTECODE is set, each of the hundreds of Python processes the
# tests start would compile the project again (about half a second each).
.venv/bin/python -m compileall -q flow45 bridge tui tests >/dev/null

# Three test processes on two cores (each file's tests in one): a third of the time a process waits on
# its servers and processes, and a third process fills that wait.
exec .venv/bin/python -m pytest -n "${FLOW45_TEST_PROCESSES:-3}" --dist loadfile "$@"
