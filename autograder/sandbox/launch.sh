#!/bin/sh
# Enter the sandbox, then exec the worker command given as arguments. Runs as (namespace) root inside
# `unshare --mount --net --pid`, so the mounts below are private to the worker:
#   - a fresh, small tmpfs on /tmp: the worker's working directory, and no view of other sandboxes;
#   - the project root covered by an empty tmpfs, with only SANDBOX_KEEP (colon-separated paths relative to
#     the root: the course package, the worker's own code, the virtualenv) bound back into place;
#   - every path in SANDBOX_HIDE (colon-separated, absolute) covered by an empty tmpfs.
# Finally all capabilities are dropped (no_new_privs, empty bounding set), so the worker cannot undo a
# mount, and the worker starts in /tmp.
set -eu
mount -t tmpfs -o size=64m,mode=1777 tmpfs /tmp
mkdir -p /tmp/.keep
i=0
OLDIFS=$IFS; IFS=:
for rel in $SANDBOX_KEEP; do
  i=$((i + 1)); mkdir -p "/tmp/.keep/$i"; mount --bind "$SANDBOX_ROOT/$rel" "/tmp/.keep/$i"
done
mount -t tmpfs -o size=1m,mode=755 tmpfs "$SANDBOX_ROOT"
i=0
for rel in $SANDBOX_KEEP; do
  i=$((i + 1)); mkdir -p "$SANDBOX_ROOT/$rel"; mount --bind "/tmp/.keep/$i" "$SANDBOX_ROOT/$rel"
done
for dir in ${SANDBOX_HIDE:-}; do
  [ -d "$dir" ] && mount -t tmpfs -o size=1m tmpfs "$dir"
done
IFS=$OLDIFS
umount -l /tmp/.keep/* 2>/dev/null || true
rm -rf /tmp/.keep
cd /tmp
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"
