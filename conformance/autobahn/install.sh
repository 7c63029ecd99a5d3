#!/usr/bin/env bash
# Installs Autobahn|Testsuite (`wstest`) into a private prefix, without touching the
# system Python or apt state. The suite is Python 2.7 code, so we unpack Debian
# bullseye's CPython 2.7 into the prefix and install pinned dependencies with pip 20.3.
#
# Usage: install.sh [PREFIX]   (default: $AUTOBAHN_HOME or ~/.cache/wirestate/autobahn)
# Prints the path of the `wstest` wrapper on its last line. Idempotent: a working
# install is reused.
set -euo pipefail

prefix="${1:-${AUTOBAHN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/wirestate/autobahn}}"
wstest="$prefix/bin/wstest"

if [ -x "$wstest" ] && "$wstest" --help >/dev/null 2>&1; then
    echo "$wstest"
    exit 0
fi

log() { echo "[autobahn-install] $*" >&2; }
rm -rf "$prefix"
mkdir -p "$prefix"/{root,apt/lists/partial,apt/cache/archives/partial,apt/state,debs,wheels,bin}

# --- 1. CPython 2.7 from Debian bullseye, through a private apt configuration -------
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" \
    > "$prefix/apt/sources.list"
: > "$prefix/apt/state/status"
apt_opts=(
    -o "Dir::Etc::SourceList=$prefix/apt/sources.list"
    -o "Dir::Etc::SourceParts=-"
    -o "Dir::State=$prefix/apt/state"
    -o "Dir::State::Lists=$prefix/apt/lists"
    -o "Dir::State::status=$prefix/apt/state/status"
    -o "Dir::Cache=$prefix/apt/cache"
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1"
)
log "fetching bullseye package lists"
apt-get -qq "${apt_opts[@]}" update >&2
log "downloading python2.7 packages"
( cd "$prefix/debs" && apt-get -qq "${apt_opts[@]}" download \
    python2.7 python2.7-minimal libpython2.7-minimal libpython2.7-stdlib \
    libpython2.7 libpython2.7-dev python2.7-dev libssl1.1 libffi7 >&2 )
for deb in "$prefix"/debs/*.deb; do dpkg-deb -x "$deb" "$prefix/root"; done

root="$prefix/root"
libdirs="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
cat > "$prefix/bin/python2" <<WRAP
#!/bin/sh
PYTHONHOME="$root/usr" LD_LIBRARY_PATH="$libdirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$root/usr/bin/python2.7" "\$@"
WRAP
chmod +x "$prefix/bin/python2"
"$prefix/bin/python2" -c 'import ssl, zlib, ctypes' >&2

# --- 2. pip for 2.7, then the pinned dependency set ----------------------------------
log "installing pip for python 2.7"
python3 -m pip download -q --no-deps --only-binary :all: --python-version 2.7 \
    --platform any --implementation py -d "$prefix/wheels" \
    pip==20.3.4 setuptools==44.1.1 wheel==0.36.2 >&2
site="$root/usr/lib/python2.7/dist-packages"
mkdir -p "$site"
# Bootstrap: run pip from its wheel once to install pip itself, then use `-m pip`
# (PEP 517 builds need pip's files on disk, not inside a zip).
"$prefix/bin/python2" "$(ls "$prefix"/wheels/pip-20.3.4-*.whl)/pip" install -q \
    --disable-pip-version-check --no-cache-dir --no-index --target "$site" \
    "$prefix"/wheels/*.whl >&2
pip2() {
    "$prefix/bin/python2" -m pip --disable-pip-version-check --no-cache-dir -q "$@"
}
log "installing autobahntestsuite and pinned dependencies (compiles wsaccel)"
CFLAGS="-I$root/usr/include -I$root/usr/include/python2.7 -I$root/usr/include/x86_64-linux-gnu/python2.7" \
pip2 install --target "$site" --upgrade \
    Twisted==19.10.0 zope.interface==4.6.0 txaio==2.1.0 'autobahn[twisted,accelerate]==0.10.9' \
    pyOpenSSL==19.1.0 cryptography==3.3.2 service-identity==18.1.0 klein==17.10.0 \
    Werkzeug==1.0.1 Jinja2==2.11.3 MarkupSafe==1.1.1 incremental==16.10.1 attrs==21.4.0 \
    Automat==22.10.0 cffi==1.15.1 constantly==15.1.0 enum34==1.1.10 hyperlink==21.0.0 \
    idna==2.10 ipaddress==1.0.23 pyasn1==0.5.1 pyasn1-modules==0.3.0 pycparser==2.21 \
    PyHamcrest==1.10.1 typing==3.10.0.0 ujson==2.0.3 wsaccel==0.6.6 unittest2==1.1.0 \
    linecache2==1.0.0 traceback2==1.4.0 six==1.16.0 setuptools==44.0.0 >&2
pip2 install --target "$site" --no-deps autobahntestsuite==25.10.1 >&2

cat > "$wstest" <<WRAP
#!/bin/sh
exec "$prefix/bin/python2" -c 'import sys; sys.argv[0]="wstest"; from autobahntestsuite.wstest import run; run()' "\$@"
WRAP
chmod +x "$wstest"
"$wstest" --help >/dev/null
rm -rf "$prefix/debs" "$prefix/apt/cache"
log "installed: $(du -sh "$prefix" | cut -f1)"
echo "$wstest"
