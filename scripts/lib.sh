# shellcheck shell=bash
# Set-up steps shared by scripts/run, scripts/test and scripts/docker-entrypoint.
#
# Sourced, never run. Callers use `set -euo pipefail` and cd to the repo root first: every
# path here is relative to it. Each step checks before it acts, so a second run changes
# nothing and says so. Progress goes to stderr, one short line per step.

TEXTRACTD_VENV=.venv
# Records what `pip install` last put into the venv: a second run that finds the same
# setup.cfg + pyproject.toml + constraints and the extras it asks for installed skips pip.
TEXTRACTD_STAMP=$TEXTRACTD_VENV/.textractd-install
# The pinned versions every install takes (scripts/lock writes them from setup.cfg).
TEXTRACTD_CONSTRAINTS=conf/constraints.txt

# --- output ---------------------------------------------------------------------------

log() { printf 'textractd: %s\n' "$*" >&2; }
warn() { printf 'textractd: warning: %s\n' "$*" >&2; }
die() {
    printf 'textractd: error: %s\n' "$*" >&2
    exit 1
}

# Microseconds since the epoch without forking (EPOCHREALTIME is bash 5; its decimal
# separator follows the locale, so keep only the digits).
now_us() {
    local t=${EPOCHREALTIME:-${SECONDS}.000000} # bash < 5: whole seconds
    printf "%s" "${t//[!0-9]/}"
}

# timed LABEL COMMAND...: run COMMAND, then say how long it took. Call it as a plain
# statement, never after `||`/`&&` or in `if`: there bash turns `set -e` off inside
# COMMAND, and a failed step would go on.
timed() {
    local label=$1 start us
    shift
    start=$(now_us)
    "$@"
    us=$(($(now_us) - start))
    log "$label: $((us / 1000000)).$(printf '%02d' $((us % 1000000 / 10000)))s"
}

# print_usage SYNOPSIS SCRIPT: "usage: SYNOPSIS", then SCRIPT's opening comment (from the
# line after the shebang up to `set -euo pipefail`), which is where each script explains
# itself; one text for readers of the file and for --help.
print_usage() {
    printf 'usage: %s\n\n' "$1"
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$2"
}

is_true() {
    case ${1,,} in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

# --- system packages ------------------------------------------------------------------

# package_list FILE...: the package names in FILEs, comments and blank lines dropped.
package_list() {
    sed -e 's/#.*//' -- "$@" | tr -s '[:space:]' '\n' | sed -e '/^$/d'
}

# missing_packages NAME...: those NAMEs dpkg does not report as installed.
missing_packages() {
    local name
    for name; do
        # shellcheck disable=SC2016  # ${Status} is dpkg-query's field, not a shell variable
        [[ $(dpkg-query -W -f='${Status}' "$name" 2>/dev/null) == "install ok installed" ]] ||
            printf '%s\n' "$name"
    done
}

# apt_install NAME...: one update, then one install; the noise goes to a log file that is
# shown only when apt fails.
apt_install() {
    local out
    out=$(mktemp "${TMPDIR:-/tmp}/textractd-apt.XXXXXX")
    if DEBIAN_FRONTEND=noninteractive apt-get update -q >"$out" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
            >>"$out" 2>&1; then
        rm -f "$out"
        return 0
    fi
    tail -n 30 "$out" >&2
    die "apt-get failed (full output: $out)"
}

# ensure_system_packages FILE...: install the packages listed in FILEs that are missing.
# Only root with apt-get installs; anyone else is told what is missing and how to get it,
# and the set-up goes on (a developer may have the tools some other way).
ensure_system_packages() {
    local file
    local -a wanted missing
    for file; do
        [[ -r $file ]] || die "package list $file not found"
    done
    mapfile -t wanted < <(package_list "$@")
    if ! command -v dpkg-query >/dev/null 2>&1; then
        warn "no dpkg here: make sure these (Debian names) are installed: ${wanted[*]}"
        return 0
    fi
    mapfile -t missing < <(missing_packages "${wanted[@]}")
    if ((${#missing[@]} == 0)); then
        log "system packages: all ${#wanted[@]} already installed ($*)"
        return 0
    fi
    if ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; then
        warn "system packages missing: ${missing[*]}"
        warn "install them with: sudo apt-get install --no-install-recommends ${missing[*]}"
        return 0
    fi
    log "system packages: installing ${missing[*]}"
    apt_install "${missing[@]}"
    local -a still
    mapfile -t still < <(missing_packages "${missing[@]}")
    ((${#still[@]} == 0)) || die "still missing after apt-get install: ${still[*]}"
    log "system packages: installed ${#missing[@]} (${missing[*]});" \
        "$((${#wanted[@]} - ${#missing[@]})) were already there"
}

# --- Python virtualenv ----------------------------------------------------------------

# find_python: the first of $PYTHON, python3, python3.13 .. python3.11 that is 3.11+.
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        if [[ -z $candidate ]] || ! command -v "$candidate" >/dev/null 2>&1; then
            continue
        fi
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Debian splits `venv`/`ensurepip` out of python3 into python3.X-venv.
ensure_venv_module() {
    local python=$1 minor
    "$python" -c 'import ensurepip, venv' 2>/dev/null && return 0
    minor=$("$python" -c 'import sys; print(sys.version_info[1])')
    if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
        log "venv: $python cannot make virtualenvs; installing python3.$minor-venv"
        apt_install "python3.$minor-venv"
    else
        die "$python cannot make virtualenvs: install python3.$minor-venv"
    fi
}

venv_works() {
    [[ -x $TEXTRACTD_VENV/bin/python ]] &&
        "$TEXTRACTD_VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            2>/dev/null
}

project_digest() {
    cat setup.cfg pyproject.toml "$TEXTRACTD_CONSTRAINTS" | sha256sum | cut -d' ' -f1
}

# stamp_covers EXTRAS: the last install used these very project files and pins and included
# every extra in EXTRAS (comma-separated), so pip has nothing to do. A superset counts: after
# scripts/test installed `.[test]`, scripts/run's plain `.` is already there.
stamp_covers() {
    local digest installed extra
    local -a wanted
    [[ -r $TEXTRACTD_STAMP ]] || return 1
    digest=$(sed -n 's/^files=//p' "$TEXTRACTD_STAMP")
    installed=$(sed -n 's/^extras=//p' "$TEXTRACTD_STAMP")
    [[ $digest == "$(project_digest)" ]] || return 1
    IFS=, read -ra wanted <<<"$1"
    for extra in "${wanted[@]}"; do
        [[ ,$installed, == *,"$extra",* ]] || return 1
    done
}

# ensure_venv [EXTRAS]: .venv with the project installed editable (`pip install -e .[EXTRAS]`),
# every dependency at the version conf/constraints.txt pins.
ensure_venv() {
    local extras=${1:-} python spec=.
    if ! venv_works; then
        python=$(find_python) || die "Python 3.11 or newer is needed; install python3 (3.11+)"
        ensure_venv_module "$python"
        if [[ -e $TEXTRACTD_VENV || -L $TEXTRACTD_VENV ]]; then
            log "venv: $TEXTRACTD_VENV is broken (no working python 3.11+ in it); recreating it"
            rm -rf "$TEXTRACTD_VENV"
        fi
        log "venv: creating $TEXTRACTD_VENV with $python ($("$python" -V 2>&1))"
        "$python" -m venv "$TEXTRACTD_VENV"
    fi
    if stamp_covers "$extras"; then
        log "venv: $TEXTRACTD_VENV already has the project (extras: ${extras:-none}); pip skipped"
        return 0
    fi
    [[ -z $extras ]] || spec=".[$extras]"
    log "venv: pip install -e '$spec' into $TEXTRACTD_VENV"
    rm -f "$TEXTRACTD_STAMP"
    "$TEXTRACTD_VENV/bin/python" -m pip install --disable-pip-version-check -q \
        -c "$TEXTRACTD_CONSTRAINTS" -e "$spec"
    printf 'files=%s\nextras=%s\n' "$(project_digest)" "$extras" >"$TEXTRACTD_STAMP"
}

# --- .env and the environment -----------------------------------------------------------

# ensure_env_file [FILE]: FILE (.env) exists, mode 600, with an API_KEY line. An existing
# key is kept; the key is never printed.
ensure_env_file() {
    local file=${1:-.env} python=python3
    [[ -x $TEXTRACTD_VENV/bin/python ]] && python=$TEXTRACTD_VENV/bin/python
    if [[ -e $file ]] && grep -Eq '^[[:space:]]*(export[[:space:]]+)?API_KEY=' "$file"; then
        log ".env: $file already has an API_KEY"
    else
        if [[ -e $file ]]; then
            # An append must not glue the key onto a last line without a newline.
            [[ ! -s $file || -z $(tail -c 1 "$file") ]] || printf '\n' >>"$file"
            log ".env: adding a new random API_KEY to $file"
        else
            log ".env: creating $file with a new random API_KEY"
        fi
        # umask 077 in a subshell: a new file is born 0600, never briefly readable.
        (
            umask 077
            "$python" -c 'import secrets; print("API_KEY=" + secrets.token_urlsafe(32))' >>"$file"
        )
    fi
    if [[ $(stat -c %a "$file") != 600 ]]; then
        log ".env: tightening $file to mode 600 (it holds the API key)"
        chmod 600 "$file"
    fi
}

# load_env [FILE]: export FILE's settings, read by daemon/config.read_env_file (that is,
# by python-dotenv: quotes, `# comments` after a blank, `export `, empty values), so the
# scripts and the service can never read one .env two ways; a second parser in bash would
# drift. The file is read, never sourced, so it runs no code. A variable already in the
# environment wins, as it does in Settings.from_env. Needs the venv (ensure_venv) first.
load_env() {
    # Odd local names: a .env key equal to a local's name would look "already set".
    local _env_file=${1:-.env} _env_python=python3 _env_pair _env_key
    [[ -r $_env_file ]] || return 0
    [[ -x $TEXTRACTD_VENV/bin/python ]] && _env_python=$TEXTRACTD_VENV/bin/python
    # KEY=VALUE pairs, NUL-terminated: a quoted value may hold newlines.
    local -a _env_pairs
    mapfile -d '' -t _env_pairs < <("$_env_python" -c '
import sys
from pathlib import Path
from daemon.config import read_env_file
for key, value in read_env_file(Path(sys.argv[1])).items():
    sys.stdout.write(f"{key}={value}\0")
' "$_env_file") || true
    wait $! || die "could not read $_env_file (is the venv set up? scripts/run makes it)"
    for _env_pair in "${_env_pairs[@]}"; do
        _env_key=${_env_pair%%=*}
        [[ $_env_key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        [[ -v $_env_key ]] && continue
        export "$_env_key=${_env_pair#*=}"
    done
}

# export_supervisor_switches: the autostart switches supervisord.conf reads.
#   ROLE=all (default): redis (unless REDIS_URL), api, workers
#   ROLE=api: api only (+ embedded redis without REDIS_URL); ROLE=worker: workers only
export_supervisor_switches() {
    local role=${ROLE:-all} api workers redis=true
    case ${role,,} in
        all) api=true workers=true ;;
        api) api=true workers=false ;;
        worker | workers) api=false workers=true ;;
        *)
            printf 'textractd: error: ROLE=%s: use all, api or worker\n' "$role" >&2
            return 1
            ;;
    esac
    if [[ -n ${REDIS_URL:-} ]]; then
        redis=false
    elif [[ ${role,,} != all ]]; then
        # Allowed (a one-host split is legitimate) but rarely meant: the embedded redis
        # listens on a unix socket under var/, which no other host can reach.
        warn "ROLE=$role without REDIS_URL: using the embedded redis on a unix socket," \
            "which only this host reaches; set REDIS_URL to share the queue between hosts"
    fi
    export TEXTRACTD_EMBEDDED_REDIS=$redis TEXTRACTD_RUN_API=$api TEXTRACTD_RUN_WORKERS=$workers
    log "supervisor: role=${role,,} redis=$redis api=$api workers=$workers"
}

# export_log_targets: where supervisord writes each program's output (supervisord.conf
# reads TEXTRACTD_{REDIS,API,WORKERS}_LOG and TEXTRACTD_LOG_MAXBYTES). By default
# logs/<program>.log, rotated at 20 MB; with LOG_TO_STDOUT=1 supervisord's own stdout, so
# `docker logs` (or the terminal) shows every program's lines; each JSON line names its
# program in its `process` field. maxbytes 0 there: supervisord cannot rotate a stream.
export_log_targets() {
    local name target maxbytes=20MB
    if is_true "${LOG_TO_STDOUT:-}"; then
        maxbytes=0
        log "logs: every program to supervisord's stdout (LOG_TO_STDOUT)"
    fi
    for name in redis api workers; do
        target=$PWD/logs/$name.log
        [[ $maxbytes != 0 ]] || target=/dev/stdout
        export "TEXTRACTD_${name^^}_LOG=$target"
    done
    export TEXTRACTD_LOG_MAXBYTES=$maxbytes
}

# prepare_dirs: var/ holds the redis socket, AOF and job payloads: owner only.
prepare_dirs() {
    mkdir -p var/spool logs
    chmod 700 var var/spool
}
