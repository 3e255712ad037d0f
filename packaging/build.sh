#!/bin/sh
# Build the packages from a copy of the tree in a temporary directory, so that no
# build artefact lands in the work tree; the results go to OUTDIR (default dist/).
#   packaging/build.sh deb [OUTDIR]   dpkg-buildpackage -us -uc: .deb, source, .changes
#   packaging/build.sh rpm [OUTDIR]   rpmbuild -ba with packaging/rpm/ci.macros (see there)
set -eu
# Debian's (and rpm's) own tools and Python, not a developer's pyenv or virtualenv.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV

what=${1:-}
case "$what" in
deb | rpm) ;;
*) echo "usage: packaging/build.sh deb|rpm [OUTDIR]" >&2; exit 64 ;;
esac
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${2:-$top/dist}" && cd "${2:-$top/dist}" && pwd)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$top/qemu_ifhooks/__init__.py")
work=$(mktemp -d "${TMPDIR:-/tmp}/qemu-ifhooks-build.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# The tree as it is now (tracked and new files, not what .gitignore excludes);
# without git, everything but the usual local state.
src="$work/qemu-ifhooks-$version"
mkdir "$src"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$top" ls-files -z --cached --others --exclude-standard |
        (cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' -) |
        (cd "$top" && tar --null -T - -cf -) | tar -xf - -C "$src"
else
    (cd "$top" && tar --exclude=./.git --exclude=./.venv --exclude=./build \
        --exclude=./dist --exclude=./.pytest_cache -cf - .) | tar -xf - -C "$src"
fi

# OUTDIR keeps the latest build of each kind only.
case "$what" in
deb) rm -f "$out"/qemu-ifhooks_* ;;
rpm) rm -f "$out"/qemu-ifhooks-*.rpm ;;
esac

case "$what" in
deb)
    cp -r "$src/packaging/debian" "$src/debian"
    (cd "$src" && dpkg-buildpackage -us -uc) >"$work/build.log" 2>&1 || {
        cat "$work/build.log" >&2; exit 1; }
    for f in "$work"/qemu-ifhooks_"$version"*; do
        cp "$f" "$out/"
        echo "$out/$(basename "$f")"
    done
    ;;
rpm)
    mkdir -p "$work/rpmbuild/SOURCES"
    tar -C "$work" -czf "$work/rpmbuild/SOURCES/qemu-ifhooks-$version.tar.gz" \
        "qemu-ifhooks-$version"
    # --nodeps: this host's rpm database is empty; the BuildRequires are Fedora's.
    rpmbuild -ba --nodeps \
        --define "_topdir $work/rpmbuild" \
        --load "$src/packaging/rpm/ci.macros" \
        "$src/packaging/rpm/qemu-ifhooks.spec" >"$work/build.log" 2>&1 || {
        cat "$work/build.log" >&2; exit 1; }
    for f in "$work"/rpmbuild/RPMS/*/*.rpm "$work"/rpmbuild/SRPMS/*.rpm; do
        cp "$f" "$out/"
        echo "$out/$(basename "$f")"
    done
    ;;
esac
