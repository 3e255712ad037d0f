#!/bin/sh
# Copy the project tree as it is now into DEST (created if missing): tracked and new
# files, not what .gitignore excludes; without git, everything but the usual local
# state. Used to build packages and to run the suite in another Debian root without
# touching the work tree.
#   tools/copy-tree.sh DEST
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dest=$1
mkdir -p "$dest"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$top" ls-files -z --cached --others --exclude-standard |
        (cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' -) |
        (cd "$top" && tar --null -T - -cf -) | tar -xf - -C "$dest"
else
    (cd "$top" && tar --exclude=./.git --exclude=./.venv --exclude=./build \
        --exclude=./dist --exclude=./.pytest_cache -cf - .) | tar -xf - -C "$dest"
fi
