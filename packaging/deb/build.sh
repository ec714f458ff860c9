#!/bin/bash
# build.sh — build bin/stowage_VERSION_ARCH.deb (and the stable link
# bin/stowage.deb) from a tree staged by `make install`, with dpkg-deb.
# Run from the repository root via `make deb`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

# Debian versions must start with a digit and use no '-' in a native package.
v=${VERSION:-0.1.0-dev}
v=${v#v}
case $v in [0-9]*.[0-9]*) ;; *) v=0.0~git$v ;; esac
v=${v//-/+}
arch=$(dpkg --print-architecture)

stage=$(mktemp -d "${TMPDIR:-/tmp}/stowage-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
make --no-print-directory install DESTDIR="$stage/root" PREFIX=/usr SYSCONFDIR=/etc >/dev/null

pkg=$stage/root
install -d -m755 "$pkg/DEBIAN" "$pkg/usr/share/doc/stowage"
install -m644 README.md "$pkg/usr/share/doc/stowage/README.md"
cat >"$pkg/usr/share/doc/stowage/copyright" <<'COPY'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: stowage
Files: *
Copyright: the stowage authors
License: see the source repository
COPY
for s in postinst prerm postrm; do install -m755 "$here/$s" "$pkg/DEBIAN/$s"; done
# Every file under /etc is a conffile: dpkg never overwrites local edits.
(cd "$pkg" && find etc -type f -printf '/%p\n' | sort) >"$pkg/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$v/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/control.in" >"$pkg/DEBIAN/control"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"

out=bin/stowage_${v}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
ln -sf "${out##*/}" bin/stowage.deb
echo "$out"
