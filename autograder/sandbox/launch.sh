#!/bin/sh
# Enter the sandbox, then exec the worker command given as arguments. Runs as (namespace) root inside
# `unshare --mount --net --pid`, so every mount below is private to the worker:
#   1. SANDBOX_STAGING (an empty folder outside the project, made by the trusted side) gets a small tmpfs;
#      the paths the worker needs (SANDBOX_KEEP: colon-separated, relative to SANDBOX_ROOT: the course
#      package, the worker's own code, the virtualenv) are bound there for a moment;
#   2. the project root is covered by an empty tmpfs and only those paths are bound back into place;
#   3. every path in SANDBOX_HIDE (colon-separated, absolute) is covered by an empty tmpfs;
#   4. /tmp: a fresh tmpfs, or, when the project itself lives under /tmp, an empty tmpfs over everything
#      in /tmp that is not on the way to the project;
#   5. all capabilities are dropped (no_new_privs, empty bounding set), so no mount can be undone, and the
#      worker starts in the (now empty) staging folder.
set -eu
hide() { # cover a folder with an empty tmpfs, a file with /dev/null
  if [ -d "$1" ]; then mount -t tmpfs -o size=1m,mode=755 tmpfs "$1"; elif [ -e "$1" ]; then mount --bind /dev/null "$1"; fi
}

mount -t tmpfs -o size=64m,mode=755 tmpfs "$SANDBOX_STAGING"
OLDIFS=$IFS; IFS=:
i=0
for rel in $SANDBOX_KEEP; do
  i=$((i + 1)); mkdir -p "$SANDBOX_STAGING/$i"; mount --bind "$SANDBOX_ROOT/$rel" "$SANDBOX_STAGING/$i"
done
mount -t tmpfs -o size=1m,mode=755 tmpfs "$SANDBOX_ROOT"
i=0
for rel in $SANDBOX_KEEP; do
  i=$((i + 1)); mkdir -p "$SANDBOX_ROOT/$rel"; mount --bind "$SANDBOX_STAGING/$i" "$SANDBOX_ROOT/$rel"
done
for path in ${SANDBOX_HIDE:-}; do hide "$path"; done
IFS=$OLDIFS

case "$SANDBOX_ROOT/" in
  /tmp/*)
    # Walk from /tmp down to the project, hiding every sibling on the way.
    dir=/tmp
    rest=${SANDBOX_ROOT#/tmp/}
    while [ -n "$rest" ]; do
      next=${rest%%/*}
      for entry in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
        [ -e "$entry" ] || continue
        [ "$entry" = "$dir/$next" ] || hide "$entry"
      done
      dir="$dir/$next"
      case "$rest" in */*) rest=${rest#*/} ;; *) rest="" ;; esac
    done
    ;;
  *) mount -t tmpfs -o size=64m,mode=1777 tmpfs /tmp ;;
esac

umount -l "$SANDBOX_STAGING" 2>/dev/null || true
mkdir -p "$SANDBOX_STAGING" 2>/dev/null || true
mount -t tmpfs -o size=64m,mode=1777 tmpfs "$SANDBOX_STAGING"
cd "$SANDBOX_STAGING"
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"
