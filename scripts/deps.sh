#!/usr/bin/env bash
# The Debian 12 packages shadowtee uses, one list for two jobs.
#
#   deps.sh [--no-browser] [--ci] [--fuzz]
#     installs whichever are missing (apt-get update once, then apt-get
#     install; as root, or through sudo): everything the build, the full test
#     suite, the demo and the benchmarks use. --no-browser leaves Chromium out
#     (the HTML report's browser test then skips and says so); --ci adds what
#     .ci/run's fresh-machine check needs (debootstrap); --fuzz what `make
#     fuzz` needs (clang and its libFuzzer runtime). --with-browser is still
#     accepted: Chromium is in by default now.
#
#   deps.sh --check GROUP...
#     installs nothing: looks for the tools and libraries of those groups the
#     way the build does ($CC, pkg-config, $LLHTTP_DIR, $PYTHON) and,
#     when any is missing, prints one line naming the Debian packages and
#     exits 1. The Makefile runs it before every build, so a missing package
#     is that line, never an empty flag list and a link error.
#
# kubectl is in no Debian archive: the Kubernetes tests skip without it on a
# user's machine and fail under CI=true.
set -euo pipefail

LLHTTP_DIR=${LLHTTP_DIR:-/usr/share/llhttp}
LLHTTP_INC=${LLHTTP_INC:-/usr/share/include/llhttp}
CC=${CC:-cc}
PY=${PYTHON:-/usr/bin/python3}

# group: who needs the package. build: every build goal checks these; test:
# make check, integration and asan (the suite cannot start without them);
# suite: tests that skip without them (and fail under CI=true); valgrind,
# bench, format: those goals; browser: the HTML report's browser test (left
# out by --no-browser); ci: .ci/run only (added by --ci); fuzz: make fuzz
# only (added by --fuzz). A package two groups need has a line for each.
# package            group     what --check looks for
PKGS="
build-essential      build     cmd:${CC%% *}
make                 build     cmd:make
pkg-config           build     cmd:pkg-config
libuv1-dev           build     pc:libuv
libssl-dev           build     pc:libssl libcrypto
libhiredis-dev       build     pc:hiredis
libjansson-dev       build     pc:jansson
libcmocka-dev        build     pc:cmocka
node-llhttp          build     file:$LLHTTP_DIR/llhttp.c $LLHTTP_DIR/api.c $LLHTTP_DIR/http.c $LLHTTP_INC/llhttp.h
python3              test      cmd:$PY
python3-pytest       test      py:pytest
python3-flask        test      py:flask
python3-jsonschema   test      py:jsonschema
python3-yaml         test      py:yaml
python3-redis        test      py:redis
python3-sklearn      test      py:sklearn
gunicorn             test      file:/usr/bin/gunicorn
redis-server         test      cmd:redis-server
openssl              suite     cmd:openssl
curl                 suite     cmd:curl
shellcheck           suite     cmd:shellcheck
prometheus           suite     cmd:promtool
procps               bench     cmd:ps
util-linux           bench     cmd:taskset
valgrind             valgrind  cmd:valgrind
wrk                  bench     cmd:wrk
nginx-light          bench     cmd:nginx
nginx-light          suite     cmd:nginx
clang-format         format    cmd:clang-format
chromium             browser   cmd:chromium
debootstrap          ci        cmd:debootstrap
clang                fuzz      cmd:clang
libclang-rt-14-dev   fuzz      file:/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
"

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

# found PACKAGE PROBE: is what PROBE names there? If not, $lack says what is not.
found() {
    local what=${2#*:} x
    case $2 in
    cmd:*) lack="no $what on PATH"; command -v "$what" >/dev/null ;;
    pc:*) lack="pkg-config: no $what"
          if command -v pkg-config >/dev/null; then
              # shellcheck disable=SC2086 # several modules, split on purpose
              pkg-config --exists $what
          else installed "$1"; fi ;;
    py:*) lack="no python3 module $what"; "$PY" -c "import $what" 2>/dev/null ;;
    file:*) for x in $what; do lack="no $x"; [ -e "$x" ] || return 1; done ;;
    *) echo "deps.sh: bad probe '$2' for $1" >&2; exit 2 ;;
    esac
}

if [ "${1:-}" = "--check" ]; then
    shift
    missing=() why=() lack=
    while read -r pkg group probe; do
        [ -n "$pkg" ] || continue
        for g in "$@"; do
            [ "$g" = "$group" ] || continue
            found "$pkg" "$probe" || { missing+=("$pkg"); why+=("$pkg ($lack)"); }
        done
    done <<<"$PKGS"
    [ ${#missing[@]} -eq 0 ] && exit 0
    list=$(printf '%s, ' "${why[@]}")
    echo "shadowtee: missing ${list%, }: run 'make deps' (or apt-get install ${missing[*]})" >&2
    exit 1
fi

skip=" ci fuzz "
for arg in "$@"; do
    case $arg in
    --no-browser) skip+="browser " ;;
    --with-browser) ;;
    --ci) skip=${skip/ ci / } ;;
    --fuzz) skip=${skip/ fuzz / } ;;
    *) echo "usage: deps.sh [--no-browser] [--ci] [--fuzz] | --check GROUP..." >&2; exit 2 ;;
    esac
done
want=() missing=()
while read -r pkg group _; do
    [ -n "$pkg" ] || continue
    case $skip in *" $group "*) continue ;; esac
    case " ${want[*]} " in *" $pkg "*) continue ;; esac # in two groups
    want+=("$pkg")
    installed "$pkg" || missing+=("$pkg")
done <<<"$PKGS"
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#want[@]} packages present"
    exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: not root and no sudo: run as root: apt-get install ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
