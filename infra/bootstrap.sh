#!/usr/bin/env bash
# Install what `make run` / `make test` need on a fresh Debian 12 machine, then sync the locked venv.
#
#   1. uv: the one on PATH, else .truckroll/tools/bin/uv, else a private venv .truckroll/tools with
#      `pip install uv` (never pip into the system Python: Debian refuses it, PEP 668).
#   2. PostgreSQL + PostGIS for the private cluster (infra/postgis.py), unless DATABASE_URL is set.
#   3. With --browser (`make test`): Chromium and its WebDriver, for the tracking page's browser tests.
#   4. `uv sync --frozen`: the locked environment in .venv.
#
# Idempotent, and silent when everything is present. Progress and errors go to stderr; stdout stays
# empty. Missing system packages are installed with apt-get as root, or through `sudo -n`; otherwise
# the script stops and says what to install.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
TOOLS="$REPO/.truckroll/tools"

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() {
	printf 'bootstrap: error: %s\n' "$*" >&2
	exit 1
}

# Two `make` commands started together must not run apt-get or pip side by side.
mkdir -p "$REPO/.truckroll"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$REPO/.truckroll/.bootstrap.lock"
	flock 9
fi

# ---------------------------------------------------------------- system packages

# Run a command as root: directly, or through passwordless sudo. Fails when neither is possible.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		return 1
	fi
}

can_apt() {
	command -v apt-get >/dev/null 2>&1 || return 1
	[ "$(id -u)" -eq 0 ] && return 0
	command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null
}

APT_UPDATED=0
apt_update() { # once per run
	[ "$APT_UPDATED" -eq 0 ] || return 0
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >&2 || die "apt-get update failed"
	APT_UPDATED=1
}

# apt_install WHY PACKAGE... : install Debian packages, or stop with the exact command to run
# (and the alternative in $APT_ALTERNATIVE, if set).
apt_install() {
	local why=$1
	shift
	if ! can_apt; then
		die "$why. Install it as root: apt-get install -y $*${APT_ALTERNATIVE:+ (or $APT_ALTERNATIVE)}"
	fi
	log "$why: installing $* (apt-get)"
	apt_update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends \
		-o DPkg::Lock::Timeout=300 install "$@" >&2 ||
		die "apt-get install $* failed"
}

# ---------------------------------------------------------------- uv

find_uv() {
	if command -v uv >/dev/null 2>&1; then
		command -v uv
	elif [ -x "$TOOLS/bin/uv" ]; then
		echo "$TOOLS/bin/uv"
	else
		return 1
	fi
}

install_uv() {
	if ! command -v python3 >/dev/null 2>&1; then
		apt_install "python3 is missing (needed once, to install uv)" python3 python3-venv
	fi
	if [ ! -x "$TOOLS/bin/pip" ]; then
		log "creating $TOOLS (a private venv for uv)"
		rm -rf "$TOOLS"
		if ! python3 -m venv "$TOOLS" >/dev/null 2>&1; then
			rm -rf "$TOOLS"
			apt_install "python3 -m venv does not work (python3-venv is missing)" python3-venv
			python3 -m venv "$TOOLS" >&2 || die "python3 -m venv $TOOLS failed"
		fi
	fi
	log "installing uv into $TOOLS (pip)"
	"$TOOLS/bin/pip" install --quiet --disable-pip-version-check uv >&2 ||
		die "pip install uv failed (is PyPI reachable?)"
	[ -x "$TOOLS/bin/uv" ] || die "pip installed uv but $TOOLS/bin/uv is missing"
}

UV=$(find_uv) || {
	install_uv
	UV="$TOOLS/bin/uv"
}

# ---------------------------------------------------------------- PostgreSQL + PostGIS

# The private cluster (infra/postgis.py) uses the newest installed PostgreSQL major that has PostGIS.
postgres_majors() { # installed server majors, oldest first
	local initdb major
	for initdb in /usr/lib/postgresql/*/bin/initdb; do
		[ -x "$initdb" ] || continue
		major=${initdb#/usr/lib/postgresql/}
		echo "${major%%/*}"
	done | sort -V
}

# The PostgreSQL major that this distribution's `postgresql` package depends on (15 on Debian 12).
distro_major() {
	local major=""
	if command -v apt-cache >/dev/null 2>&1; then
		major=$(apt-cache depends postgresql 2>/dev/null |
			sed -n 's/^ *Depends: postgresql-\([0-9][0-9.]*\)$/\1/p' | head -n 1) || true
	fi
	echo "${major:-15}"
}

postgis_ready() { # some installed major has PostGIS
	local major
	for major in $(postgres_majors); do
		[ -f "/usr/share/postgresql/$major/extension/postgis.control" ] && return 0
	done
	return 1
}

ensure_postgis() {
	local majors newest
	postgis_ready && return 0
	export APT_ALTERNATIVE="set DATABASE_URL to use an existing PostgreSQL server with PostGIS"
	majors=$(postgres_majors)
	if [ -z "$majors" ]; then
		if can_apt; then
			apt_update # so that apt-cache knows the distribution's current PostgreSQL
		fi
		newest=$(distro_major)
		apt_install "PostgreSQL is not installed" "postgresql-$newest" "postgresql-$newest-postgis-3"
	else
		newest=$(echo "$majors" | tail -n 1)
		apt_install "PostGIS is not installed for PostgreSQL $newest" "postgresql-$newest-postgis-3"
	fi
	postgis_ready ||
		die "PostGIS is still missing after the install: no /usr/share/postgresql/<major>/extension/postgis.control for any /usr/lib/postgresql/<major>/bin/initdb"
}

if [ -z "${DATABASE_URL:-}" ]; then
	ensure_postgis
fi

# ---------------------------------------------------------------- Chromium for the browser tests

# Only the test suite needs a browser, so only `make test` asks for it: `make run` never depends on it. Where
# it cannot be installed the browser tests fail naming the same packages.
ensure_browser() {
	command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && return 0
	if ! can_apt; then
		log "warning: Chromium is missing, so the browser tests (tests/browser) will fail. Install it as root: apt-get install -y chromium chromium-driver"
		return 0
	fi
	apt_install "Chromium is missing (the browser tests drive it)" chromium chromium-driver
}

if [ "${1:-}" = --browser ]; then
	ensure_browser
fi

# ---------------------------------------------------------------- the locked environment

"$UV" sync --frozen --quiet || die "$UV sync --frozen failed"
