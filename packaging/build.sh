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

src="$work/qemu-ifhooks-$version"
"$top/tools/copy-tree.sh" "$src"

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
    # ci.macros as the user's macro file of a HOME of its own, read with every
    # configuration rpm loads: rpm 4.20 forgets files given with --load when it
    # reloads its configuration for the noarch target (%pyproject_buildrequires:
    # not found), rpm 4.18 does not; ~/.rpmmacros works with both.
    mkdir "$work/home"
    cp "$src/packaging/rpm/ci.macros" "$work/home/.rpmmacros"
    # --nodeps: this host's rpm database is empty; the BuildRequires are Fedora's.
    HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" rpmbuild -ba --nodeps \
        --define "_topdir $work/rpmbuild" \
        "$src/packaging/rpm/qemu-ifhooks.spec" >"$work/build.log" 2>&1 || {
        cat "$work/build.log" >&2; exit 1; }
    for f in "$work"/rpmbuild/RPMS/*/*.rpm "$work"/rpmbuild/SRPMS/*.rpm; do
        cp "$f" "$out/"
        echo "$out/$(basename "$f")"
    done
    ;;
esac
