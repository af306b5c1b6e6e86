#!/bin/sh
# sum.sh - a marvelo executable job in POSIX sh: adds a constant to every integer it reads.
#
# Pipes: json (one integer per line); one input, one output.
#
#   {"id": 3, "exec": {"path": "./sum.sh", "params": ["--add", "10"], "dependencies": "sum"},
#    "inputs": [101], "outputs": [102]}
#
# The adapter starts it as `./sum.sh --add 10 -i IN -o OUT`, where IN and OUT are paths of named
# pipes (mode fifo) or numbers of inherited file descriptors (mode fd).
set -eu

add=0
in=
out=
while [ $# -gt 0 ]; do
	case $1 in
	--add) add=$2; shift 2 ;;
	-i) in=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	*) echo "sum.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
if [ -z "$in" ] || [ -z "$out" ]; then
	echo "usage: sum.sh [--add N] -i IN -o OUT" >&2
	exit 2
fi

# Open the streams once, as descriptors 3 (input) and 4 (output): an fd number is duplicated, a
# path (a named pipe) is opened.
case $in in
*[!0-9]*) exec 3<"$in" ;;
*) eval "exec 3<&$in" ;;
esac
case $out in
*[!0-9]*) exec 4>"$out" ;;
*) eval "exec 4>&$out" ;;
esac

n=0
while IFS= read -r line <&3; do
	case ${line#-} in
	'' | *[!0-9]*) echo "sum.sh: not an integer: $line" >&2; exit 1 ;;
	esac
	echo $((line + add)) >&4
	n=$((n + 1))
done
echo "sum.sh: $n blocks" >&2
