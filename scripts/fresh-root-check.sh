#!/usr/bin/env bash
# fresh-root-check.sh [REPO_DIR]
#
# The README's two commands as a new user runs them: a throw-away Debian 12
# root (debootstrap --variant=minbase bookworm, plus make and git only, the
# way README's "They assume" line says), the repo's committed HEAD cloned
# into it, then each command of README's "Two commands" block run exactly,
# one after the other, as root with a clean environment (no CI=true: a
# user's machine). Prints one line per command (exit status, seconds, the
# test summary), the tests that skipped and why, and on a failure the
# failing tests and the end of the log; exits with the failing command's
# status. Logs stay in the printed folder.
#
# Needs root, debootstrap (scripts/deps.sh --ci) and deb.debian.org. The
# pristine root is cached as a tarball ($FRESH_BASE), so later runs skip the
# download. Each command is bounded by $FRESH_TIMEOUT seconds. Whatever the
# check mounted or started in the root is undone on every way out.
set -euo pipefail

repo=$(cd "${1:-.}" && git rev-parse --show-toplevel) || { echo "fresh-root-check: not a git checkout: ${1:-.}"; exit 2; }
base=${FRESH_BASE:-/var/tmp/shadowtee-fresh-bookworm.tar}
limit=${FRESH_TIMEOUT:-1800}
[ "$(id -u)" -eq 0 ] || { echo "fresh-root-check: run as root"; exit 2; }
command -v debootstrap >/dev/null || { echo "fresh-root-check: no debootstrap (bash scripts/deps.sh --ci)"; exit 2; }

work=$(mktemp -d /var/tmp/shadowtee-fresh.XXXXXX)
root=$work/root
logs=$(mktemp -d /tmp/shadowtee-fresh-logs.XXXXXX)

# Undo everything below $work: processes left running in the root (a
# killed test's server), then its mounts, deepest first, then the files;
# --one-file-system keeps rm out of a mount that would not go.
cleanup() {
    local p m
    set +e
    for p in /proc/[0-9]*; do
        [[ "$(readlink "$p/root" 2>/dev/null)" == "$work"/* ]] && kill -9 "${p#/proc/}" 2>/dev/null
    done
    awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [ ! -s "$base" ]; then
    echo "fresh-root-check: debootstrap bookworm (minbase) into the cache $base"
    debootstrap --variant=minbase bookworm "$work/boot" http://deb.debian.org/debian >"$logs/debootstrap.log" 2>&1 \
        || { echo "fresh-root-check: debootstrap failed: $(tail -n 1 "$logs/debootstrap.log")"; exit 1; }
    tar -C "$work/boot" -cf "$base.part" . && mv "$base.part" "$base"
    rm -rf --one-file-system "${work:?}/boot"
fi

mkdir "$root"
tar -C "$root" -xf "$base"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
# what an installed Debian has and a debootstrap root lacks
cp /etc/resolv.conf "$root/etc/"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo fresh-root >"$root/etc/hostname"

head=$(git -C "$repo" rev-parse HEAD)
git clone -q --no-hardlinks "$repo" "$root/root/project"
git -C "$root/root/project" checkout -q "$head"

# in_root LOG COMMAND: runs COMMAND in the project's folder in the root, as a
# user would, bounded by $limit; waited for in the background, so that a
# signal reaches the traps at once, not when COMMAND ends.
in_root() {
    timeout -k 10 "$limit" chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "cd /root/project && $2" >"$1" 2>&1 &
    wait $!
}
in_root "$logs/0-prepare.log" 'apt-get update -qq && apt-get install -y -qq make git >/dev/null' \
    || { echo "fresh-root-check: could not install make and git: $(tail -n 1 "$logs/0-prepare.log")"; exit 1; }

# the README's block under "## Two commands", comments dropped
mapfile -t cmds < <(awk '/^## Two commands/ { s = 1 } s && /^```sh/ { b = 1; next }
                         b && /^```/ { exit } b { sub(/ *#.*/, ""); if (length) print }' "$root/root/project/README.md")
[ ${#cmds[@]} -gt 0 ] || { echo "fresh-root-check: no commands under README.md's '## Two commands'"; exit 2; }

echo "fresh-root-check: $(git -C "$repo" log -1 --format='%h %s' "$head" | cut -c1-72) | logs: $logs"
i=0
for c in "${cmds[@]}"; do
    i=$((i + 1)) log="$logs/$i.log" SECONDS=0 rc=0
    in_root "$log" "$c" || rc=$?
    printf '  %-18s exit %d in %ds  %s\n' "$c" "$rc" "$SECONDS" "$(grep -E '^=*.*[0-9]+ (passed|failed)' "$log" | tail -n 1)"
    # pytest -rfEs: "SKIPPED [N] file:line: reason", one line per reason here
    awk '/^SKIPPED \[/ { n = substr($2, 2) + 0; sub(/^SKIPPED \[[0-9]+\] [^ ]+ /, ""); k[$0] += n }
         END { for (r in k) printf "    skipped %d: %s\n", k[r], r }' "$log"
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] && echo "  timed out after ${limit}s"
        grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' || true
        echo "  last lines of $log:"
        grep -vE '^(SKIPPED|FAILED|ERROR) ' "$log" | tail -n 12 | sed 's/^/    /'
        exit "$rc"
    fi
done
echo "fresh-root-check: ok"
