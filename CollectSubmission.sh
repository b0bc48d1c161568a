#!/usr/bin/env bash
# CollectSubmission.sh: check a finished assignment and pack it for upload.
#
#   ./CollectSubmission.sh <student-id> [assignment]
#
# Writes <student-id>.tar.gz into the current folder. It only ever reads the student's files:
# the manifest is staged in a temporary folder and the archive is written next to its final name
# first, so a failed run never leaves a half-written archive or touches anything else.
#
# Portability: this runs under macOS's bash 3.2 as well as Linux and Colab, hence no associative
# arrays, no mapfile, no `set -u` (bash < 4.4 treats "${empty[@]}" as unbound), no GNU-only flags.
# Exit status: 0 packed, 1 a check failed (every problem is listed), 2 bad usage.

set -o pipefail

# macOS tar would otherwise add AppleDouble "._<file>" members for files with extended attributes.
export COPYFILE_DISABLE=1

PROG=${0##*/}
ROOT=""          # course root: the folder holding this script
RELEASE=""       # $ROOT/release
ASSIGNMENT=""
STUDENT_ID=""
FILES=()         # from submission.txt; FILES[0] is the notebook
PYTHON=""
COLLECT=""       # dlcourse/collect.py: the checks
PROBLEMS=""      # one problem per line
PROBLEM_COUNT=0
WARNINGS=""      # one warning per line: packed anyway, but worth a look
WORK_DIR=""      # temporary staging folder, removed on exit
PARTIAL=""       # archive being written, removed on exit unless it was moved into place

usage() {
    cat <<EOF
Usage: ./$PROG <student-id> [assignment]

Checks your finished assignment and packs it into <student-id>.tar.gz in the
current folder, ready to upload. Your own files are only read, never changed.

  student-id   letters, digits, '.', '_' and '-' only (it becomes the file name)
  assignment   a folder under release/; by default the one you are in, or the
               only one there is
EOF
    if [ -n "$RELEASE" ]; then
        echo
        echo "Assignments: $(list_assignments)"
    fi
}

die_usage() {  # exit 2: the command line (not the student's work) is wrong
    echo "$PROG: $1" >&2
    echo "Run './$PROG --help' for usage." >&2
    exit 2
}

cleanup() {
    if [ -n "$PARTIAL" ]; then rm -f "$PARTIAL"; fi
    if [ -n "$WORK_DIR" ]; then rm -rf "$WORK_DIR"; fi
}

# Follow symlinks by hand (no `readlink -f` on macOS) so that a linked script still finds its course.
find_course_root() {
    local src=${BASH_SOURCE[0]} dir
    while [ -L "$src" ]; do
        dir=$(cd -P "$(dirname "$src")" && pwd)
        src=$(readlink "$src")
        case $src in /*) ;; *) src=$dir/$src ;; esac
    done
    ROOT=$(cd -P "$(dirname "$src")" && pwd) || exit 2
    RELEASE=$ROOT/release
}

list_assignments() {  # space-separated names of release/<a>/ folders that have a submission.txt
    local f names=""
    for f in "$RELEASE"/*/submission.txt; do
        if [ -f "$f" ]; then
            f=${f%/submission.txt}
            names="$names${names:+ }${f##*/}"
        fi
    done
    echo "$names"
}

# Spelled out rather than A-Z: bracket ranges follow the locale and can let other letters through.
valid_student_id() {
    case $1 in
        '' | *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-]*) return 1 ;;
    esac
    return 0
}

# The assignment is the argument, else the release/<a>/ folder we are in, else the only one there is.
resolve_assignment() {
    local requested=$1 here rest known count
    known=$(list_assignments)
    if [ -z "$requested" ]; then
        here=$(pwd -P)
        case "$here/" in
            "$RELEASE"/?*/*)
                rest=${here#"$RELEASE"/}
                requested=${rest%%/*}
                ;;
        esac
    fi
    if [ -z "$requested" ]; then
        count=$(echo "$known" | wc -w)
        count=$((count))
        if [ "$count" -eq 1 ]; then
            requested=$known
        elif [ "$count" -eq 0 ]; then
            die_usage "no assignments found under $RELEASE (no release/<assignment>/submission.txt)"
        else
            die_usage "which assignment? Give one of: $known (e.g. ./$PROG $STUDENT_ID ${known%% *})"
        fi
    fi
    # A name, not a path: "vit/.." would otherwise pass the test below and end up in the archive.
    case $requested in */* | . | ..) die_usage "'$requested' is not an assignment name; the assignments are: ${known:-(none)}" ;; esac
    if [ ! -f "$RELEASE/$requested/submission.txt" ]; then
        die_usage "unknown assignment '$requested'; the assignments are: ${known:-(none)}"
    fi
    ASSIGNMENT=$requested
}

# submission.txt: one file per line, '#' comments and blank lines ignored (CRLF tolerated).
read_submission_list() {
    local list=$RELEASE/$ASSIGNMENT/submission.txt line
    FILES=()
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        line=${line#"${line%%[![:space:]]*}"}
        line=${line%"${line##*[![:space:]]}"}
        case $line in '' | '#'*) continue ;; esac
        FILES+=("$line")
    done <"$list"
    if [ "${#FILES[@]}" -eq 0 ]; then
        die_usage "release/$ASSIGNMENT/submission.txt lists no files"
    fi
}

# Python 3 does the JSON checks; `python` may be Python 2 on old systems, so check the version.
find_python() {
    local candidate
    for candidate in python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[0] < 3)' >/dev/null 2>&1; then
            PYTHON=$candidate
            return 0
        fi
    done
    return 1
}

add_problem() {
    PROBLEMS="$PROBLEMS$1"$'\n'
    PROBLEM_COUNT=$((PROBLEM_COUNT + 1))
}

# The checks themselves are dlcourse/collect.py's, shared with the notebook's submit cell: the course folder's copy
# (run as a plain script, so that it needs no torch), else the installed package's (found without importing it).
find_collect() {
    local dir
    if [ -f "$ROOT/dlcourse/collect.py" ]; then
        COLLECT=$ROOT/dlcourse/collect.py
        return 0
    fi
    dir=$("$PYTHON" -c 'import importlib.util as u; s = u.find_spec("dlcourse"); print(s.submodule_search_locations[0] if s else "")' 2>/dev/null)
    if [ -n "$dir" ] && [ -f "$dir/collect.py" ]; then
        COLLECT=$dir/collect.py
        return 0
    fi
    return 1
}

# One problem per line (notebook, then saved files); a line starting with 'warning: ' does not stop the packing.
check_submission() {
    local output line
    if ! output=$(PYTHONIOENCODING=utf-8 "$PYTHON" "$COLLECT" check "$RELEASE/$ASSIGNMENT" "release/$ASSIGNMENT" "${FILES[@]}"); then
        add_problem "${FILES[0]} could not be checked ($PYTHON $COLLECT failed, see above): fix your Python 3 installation, then run this script again"
        return
    fi
    while IFS= read -r line; do
        case $line in
            '') ;;
            'warning: '*) WARNINGS="$WARNINGS${line#warning: }"$'\n' ;;
            *) add_problem "$line" ;;
        esac
    done <<EOF
$output
EOF
}

human_size() {
    awk -v b="$1" 'BEGIN {
        if (b < 1024) printf "%d B", b
        else if (b < 1048576) printf "%.1f KB", b / 1024
        else printf "%.1f MB", b / 1048576 }'
}

file_size() {
    local n
    n=$(wc -c <"$1") || return 1
    echo $((n))  # arithmetic drops the padding macOS's wc adds
}

write_manifest() {  # $1: where; then the packed file names (the manifest's format is dlcourse/collect.py's too)
    local out=$1
    shift
    "$PYTHON" "$COLLECT" manifest "$out" "$STUDENT_ID" "$ASSIGNMENT" "$@"
}

# Stage the manifest, tar into a hidden partial file, check it reads back, then move it into place.
pack() {
    local archive=$STUDENT_ID.tar.gz here members=() f
    here=$(pwd -P)
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/collect-submission.XXXXXX") || {
        echo "$PROG: cannot create a temporary folder (is ${TMPDIR:-/tmp} full or read-only?)" >&2
        exit 1
    }
    WORK_DIR=$(cd -P "$WORK_DIR" && pwd)  # tar's later -C is relative to the earlier one unless absolute
    if ! { mkdir "$WORK_DIR/$ASSIGNMENT" && write_manifest "$WORK_DIR/$ASSIGNMENT/manifest.json" "${FILES[@]}"; }; then
        echo "$PROG: could not write the manifest in $WORK_DIR" >&2
        exit 1
    fi
    for f in "${FILES[@]}"; do members+=("$ASSIGNMENT/$f"); done

    PARTIAL=$here/.$archive.partial.$$
    if ! tar -czf "$PARTIAL" -C "$RELEASE" "${members[@]}" -C "$WORK_DIR" "$ASSIGNMENT/manifest.json" ||
        ! tar -tzf "$PARTIAL" >/dev/null; then
        echo "$PROG: packing failed (see tar's message above); nothing was written. Check that $here is writable and has free space, then run this script again." >&2
        exit 1
    fi
    if [ -e "$archive" ]; then
        echo "Note: $archive already exists here; replacing it."
    fi
    mv -f "$PARTIAL" "$archive" || {
        echo "$PROG: could not move the archive into place as $here/$archive" >&2
        exit 1
    }
    PARTIAL=""
    report_packed "$archive"
}

report_packed() {
    local archive=$1 f
    echo "Packed $ASSIGNMENT for $STUDENT_ID:"
    for f in "${FILES[@]}"; do
        printf '  %-45s %10s\n' "$ASSIGNMENT/$f" "$(human_size "$(file_size "$RELEASE/$ASSIGNMENT/$f")")"
    done
    printf '  %-45s %10s\n' "$ASSIGNMENT/manifest.json" \
        "$(human_size "$(file_size "$WORK_DIR/$ASSIGNMENT/manifest.json")")"
    echo "Archive: $PWD/$archive ($(human_size "$(file_size "$archive")"))"
    echo "Upload this file."
}

main() {
    local args=() arg
    while [ $# -gt 0 ]; do
        arg=$1
        shift
        case $arg in
            -h | --help) find_course_root; usage; exit 0 ;;
            --) args+=("$@"); break ;;
            -*) die_usage "unknown option '$arg'" ;;
            *) args+=("$arg") ;;
        esac
    done
    if [ "${#args[@]}" -lt 1 ] || [ "${#args[@]}" -gt 2 ]; then
        usage >&2
        exit 2
    fi
    STUDENT_ID=${args[0]}
    if ! valid_student_id "$STUDENT_ID"; then
        die_usage "student id '$STUDENT_ID' is not allowed: use only letters, digits, '.', '_' and '-' (it becomes the archive's file name)"
    fi

    find_course_root
    resolve_assignment "${args[1]}"
    read_submission_list
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    echo "Checking $ASSIGNMENT for student $STUDENT_ID ..."
    if ! find_python; then
        echo "$PROG: Python 3 is needed to check the notebook but neither python3 nor python is Python 3: install Python 3 (https://www.python.org), then run this script again" >&2
        exit 1
    fi
    if ! find_collect; then
        echo "$PROG: the course package's checks (dlcourse/collect.py) were not found next to this script nor installed: run this script from the course folder, or pip install the course package, then run it again" >&2
        exit 1
    fi
    check_submission
    if [ -n "$WARNINGS" ]; then
        printf '%s' "$WARNINGS" | sed 's/^/Warning: /' >&2
    fi
    if [ "$PROBLEM_COUNT" -gt 0 ]; then
        {
            echo "Found $PROBLEM_COUNT problem(s); nothing was packed:"
            printf '%s' "$PROBLEMS" | sed 's/^/  - /'
        } >&2
        exit 1
    fi
    pack
}

main "$@"
