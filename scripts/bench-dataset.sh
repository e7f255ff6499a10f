#!/usr/bin/env bash
# Creates the layer benchmark's data set, deterministically: real files copied from the
# system's Python libraries and shared libraries (Debian bookworm paths), in sorted order,
# until the size cap is reached.
#
#   scripts/bench-dataset.sh DEST [CAP_MB]       # default cap: 200 MB
#
# For caps above what those directories hold, the capped set is repeated in copy-N/ subdirs.
set -euo pipefail

dest=${1:?usage: bench-dataset.sh DEST [CAP_MB]}
cap_mb=${2:-200}
base_mb=$(( cap_mb < 200 ? cap_mb : 200 ))
base_cap=$(( base_mb * 1000 * 1000 ))

sources=()
for dir in /usr/lib/python3.11 /usr/lib/python3 /usr/lib/x86_64-linux-gnu; do
    [ -d "$dir" ] && sources+=("$dir")
done
[ ${#sources[@]} -gt 0 ] || { echo "bench-dataset: none of the source directories exist" >&2; exit 1; }

mkdir -p "$dest/copy-0"
list=$(mktemp)
trap 'rm -f "$list"' EXIT
# Regular, readable files only, sorted bytewise, up to the cap; files over 16 MB are skipped so
# the set stays a mix of many files. (find may report unreadable dirs: no pipefail here.)
set +o pipefail
find "${sources[@]}" -type f -readable -printf '%s %p\n' 2>/dev/null \
    | LC_ALL=C sort -k2 \
    | awk -v cap="$base_cap" '$1 <= 16000000 && total + $1 <= cap { total += $1; sub(/^[0-9]+ /, ""); print }' \
    > "$list"
set -o pipefail
tar -cf - --files-from="$list" 2>/dev/null | tar -xf - -C "$dest/copy-0"

copies=$(( (cap_mb + base_mb - 1) / base_mb ))
for ((i = 1; i < copies; i++)); do
    cp -a "$dest/copy-0" "$dest/copy-$i"
done
echo "bench-dataset: $(find "$dest" -type f | wc -l) files, $(du -sb "$dest" | cut -f1) bytes in $dest" >&2
