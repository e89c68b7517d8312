"""The build on a machine that has nothing yet: one `make deps all` (or
`make demo`) whose llhttp sources and pkg-config files appear only while
that make runs, because a stand-in scripts/deps.sh "installs" them (copies
them into the directories the build is pointed at), goes from nothing to a
working binary, with and without -j2. And a build whose packages are missing
stops before compiling anything, with one line naming the Debian packages.

Each test builds a copy of the sources in a temp dir with a clean
environment (no MAKEFLAGS, CFLAGS or BUILD of the make running the suite)."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

SOURCES = ["Makefile", "build.mk", "scripts/deps.sh", "include", "proxy", "comparator", "report", "tests/unit",
           "tests/fuzz/fuzz.mk", "bench/faults/faults.mk"]  # build.mk includes both
PC_MODULES = ["libuv", "libssl", "libcrypto", "hiredis", "jansson", "cmocka"]
LLHTTP_DIR, LLHTTP_INC = "/usr/share/llhttp", "/usr/share/include/llhttp"
BUILD_PACKAGES = ["libuv1-dev", "libssl-dev", "libhiredis-dev", "libjansson-dev", "libcmocka-dev", "node-llhttp"]

STANDIN_DEPS = """#!/bin/bash
# stand-in for scripts/deps.sh: --check is the real one; installing copies
# llhttp and the .pc files into the directories the build was pointed at
set -e
[ "${1:-}" = "--check" ] && exec bash "$(dirname "$0")/real-deps.sh" "$@"
mkdir -p "$LLHTTP_DIR" "$LLHTTP_INC" "$PKG_CONFIG_LIBDIR"
cp %(llhttp_dir)s/llhttp.c %(llhttp_dir)s/api.c %(llhttp_dir)s/http.c "$LLHTTP_DIR"/
cp %(llhttp_inc)s/llhttp.h "$LLHTTP_INC"/
cp %(pc_files)s "$PKG_CONFIG_LIBDIR"/
echo "stand-in deps: installed"
"""


def pc_file(module):
    d = subprocess.run(["pkg-config", "--variable=pcfiledir", module], capture_output=True, text=True).stdout.strip()
    assert d, "pkg-config knows no %s on this machine (make deps)" % module
    return os.path.join(d, module + ".pc")


def copy_sources(dst):
    for rel in SOURCES:
        src, to = os.path.join(ROOT, rel), os.path.join(dst, rel)
        if os.path.isdir(src):
            shutil.copytree(src, to)
        else:
            os.makedirs(os.path.dirname(to), exist_ok=True)
            shutil.copy2(src, to)


def clean_env(**extra):
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(extra)
    return env


def make(tree, *args, env):
    return subprocess.run(["make"] + list(args), cwd=tree, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def first_run(tmp_path):
    """A source copy whose deps.sh is the stand-in; the directories it fills
    do not exist yet, so before the run neither llhttp nor pkg-config's
    modules can be found."""
    tree, sysroot = tmp_path / "src", tmp_path / "sys"
    copy_sources(tree)
    os.rename(tree / "scripts" / "deps.sh", tree / "scripts" / "real-deps.sh")
    (tree / "scripts" / "deps.sh").write_text(STANDIN_DEPS % {
        "llhttp_dir": LLHTTP_DIR, "llhttp_inc": LLHTTP_INC, "pc_files": " ".join(pc_file(m) for m in PC_MODULES)})
    (tree / "scripts" / "demo.sh").write_text("echo demo ran with $(build/shadowtee --version)\n")
    env = clean_env(PKG_CONFIG_LIBDIR=str(sysroot / "pkgconfig"))
    dirs = ["LLHTTP_DIR=%s" % (sysroot / "llhttp"), "LLHTTP_INC=%s" % (sysroot / "include")]
    before = subprocess.run(["pkg-config", "--exists"] + PC_MODULES, env=env)
    assert before.returncode != 0 and not sysroot.exists()
    return tree, env, dirs


@pytest.mark.parametrize("jobs", ["-j1", "-j2"])
@pytest.mark.parametrize("goals", [["deps", "all"], ["demo"]])
def test_one_make_goes_from_nothing_to_a_binary(first_run, goals, jobs):
    tree, env, dirs = first_run
    r = make(tree, jobs, *dirs, *goals, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    installed = out.index("stand-in deps: installed")
    compiles = [i for i, line in enumerate(out) if " -c " in line]
    assert compiles and min(compiles) > installed, r.stdout  # nothing compiled before the install
    v = subprocess.run([str(tree / "build" / "shadowtee"), "--version"], capture_output=True, text=True, timeout=10)
    assert v.returncode == 0 and v.stdout.startswith("shadowtee "), v
    assert os.access(tree / "build" / "shadowtee-report", os.X_OK)
    if goals == ["demo"]:
        assert out[-1] == "demo ran with " + v.stdout.strip()


@pytest.fixture
def bare(tmp_path):
    tree = tmp_path / "src"
    copy_sources(tree)
    return tree


def test_missing_packages_stop_the_build_with_one_line(bare, tmp_path):
    (tmp_path / "pc").mkdir()
    env = clean_env(PKG_CONFIG_LIBDIR=str(tmp_path / "pc"))
    r = make(bare, "-j2", "LLHTTP_DIR=%s" % (tmp_path / "none"), "all", env=env)
    assert r.returncode != 0
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if not ln.startswith("make")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("shadowtee: missing ") and "run 'make deps'" in lines[0]
    for pkg in BUILD_PACKAGES:
        assert pkg + " (" in lines[0], pkg
    assert not (bare / "build").exists()  # nothing compiled, nothing linked


@pytest.mark.parametrize("module,package", [("jansson", "libjansson-dev"), ("libcrypto", "libssl-dev")])
def test_one_missing_package_is_named_alone(bare, tmp_path, module, package):
    pc = tmp_path / "pc"
    pc.mkdir()
    for m in PC_MODULES:
        if m != module:
            shutil.copy(pc_file(m), pc)
    r = make(bare, "all", env=clean_env(PKG_CONFIG_LIBDIR=str(pc)))
    assert r.returncode != 0
    msg = [ln for ln in r.stderr.splitlines() if ln.startswith("shadowtee: missing ")]
    assert msg == ["shadowtee: missing %s (pkg-config: no %s): run 'make deps' (or apt-get install %s)"
                   % (package, "libssl libcrypto" if package == "libssl-dev" else module, package)], r.stderr
    assert not (bare / "build").exists()


def test_a_missing_test_module_is_named_before_the_suite(bare, tmp_path):
    """`make check` on a machine without pytest's package: the check names
    python3-pytest instead of the suite failing on an import."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text("#!/bin/sh\n[ \"$1\" = -c ] && case \"$2\" in *pytest*) exit 1;; esac\n"
                                  "exec /usr/bin/python3 \"$@\"\n")
    os.chmod(fake / "python3", 0o755)
    r = make(bare, "check", "PYTHON=%s" % (fake / "python3"), env=clean_env())
    assert r.returncode != 0
    assert "python3-pytest (no python3 module pytest)" in r.stderr, r.stderr
