#!/bin/bash
# build.sh — build the stowage RPM from the working tree with rpmbuild into
# bin/rpm/. Run from the repository root via `make rpm`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
command -v rpmbuild >/dev/null || { echo "make rpm: rpmbuild is missing (apt-get install rpm / dnf install rpm-build)" >&2; exit 1; }

# RPM versions allow no '-'.
v=${VERSION:-0.1.0}
v=${v#v}
case $v in [0-9]*.[0-9]*) ;; *) v=0.0~git$v ;; esac
v=${v//-/.}

top=$root/bin/rpm
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
tar --exclude=./bin --exclude=./.git --transform "s|^\.|stowage-$v|" \
	-czf "$top/SOURCES/stowage-$v.tar.gz" .
rpmbuild -bb ${RPMBUILD_FLAGS:-} --define "_topdir $top" --define "stowage_version $v" "$here/stowage.spec"
find "$top/RPMS" -name '*.rpm'
