#!/usr/bin/env bash
# textractd's health checks for cron; `scripts/healthcheck.sh --help` says how (usage below).
set -uo pipefail

usage() {
    cat <<'EOF'
usage: scripts/healthcheck.sh [-h|--help] [COMPONENT ...]

textractd's health checks for cron: silent when everything is OK, one line per problem
otherwise; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugins).

  scripts/healthcheck.sh                  every component
  scripts/healthcheck.sh redis workers    only these (python -m daemon.health -h lists them)

Works from any directory and under cron's bare environment: it finds the repo from its
own path, runs the repo's .venv python (or $TEXTRACTD_PYTHON, or python3 on PATH), and
the checks read .env and the environment exactly as the service does.
  */5 * * * * /path/to/textractd/scripts/healthcheck.sh
EOF
}

for arg in "$@"; do
    case $arg in
        -h | --help) usage; exit 0 ;;  # before anything runs: asking for help changes nothing
    esac
done

readonly UNKNOWN=3
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd) || {
    echo "UNKNOWN healthcheck: cannot find the textractd repository"
    exit "$UNKNOWN"
}

python=${TEXTRACTD_PYTHON:-}
if [[ -z $python ]]; then
    if [[ -x $repo/.venv/bin/python ]]; then
        python=$repo/.venv/bin/python
    else
        python=$(command -v python3) || {
            echo "UNKNOWN healthcheck: no python: run scripts/run once to create $repo/.venv"
            exit "$UNKNOWN"
        }
    fi
fi

cd "$repo" || exit "$UNKNOWN"
# Settings.from_env reads $TEXTRACTD_HOME/.env; the repo is the default home.
export TEXTRACTD_HOME=${TEXTRACTD_HOME:-$repo}
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH}

# An import failure would exit 1 (WARNING) with a traceback: report it as UNKNOWN, briefly.
# Output is kept for a non-zero exit only, so stray stderr noise never mails on success.
# shellcheck disable=SC2016  # Python source, not shell
output=$("$python" -c '
import sys
try:
    from daemon.health.rendering import main
except Exception as exc:
    print(f"UNKNOWN healthcheck: cannot load the checks with {sys.executable}: {exc}")
    sys.exit(3)
sys.exit(main(["--problems", *sys.argv[1:]]))
' "$@" 2>&1)
code=$?
((code == 0)) && exit 0
[[ -n $output ]] && printf '%s\n' "$output"
# Anything but a verdict line first (a crash, a missing interpreter) is UNKNOWN, whatever
# the exit status: an interpreter's own exit 1 must not read as WARNING.
if ((code > UNKNOWN)) || [[ ! $output =~ ^(WARNING|CRITICAL|UNKNOWN|TEXTRACTD) ]]; then
    echo "UNKNOWN healthcheck: the checks exited with status $code and no verdict"
    exit "$UNKNOWN"
fi
exit "$code"
