#!/usr/bin/env python3
"""scale.py - a marvelo executable job in Python: multiplies every number it reads by a factor.

Pipes: json (one JSON number per line). Any number of inputs and outputs: input k goes to
output k (with one input and several outputs, every output gets it).

    {"id": 2, "exec": {"path": "./scale.py", "params": ["--factor", "2.5"], "mode": "fifo",
                       "dependencies": "scale"},
     "inputs": [101], "outputs": [102]}

The adapter starts it as `./scale.py --factor 2.5 -i IN -o OUT`: IN and OUT are paths of named
pipes (mode fifo) or numbers of inherited file descriptors (mode fd). The job ends when its
inputs end (upstream finished); it fails (exit status 1, message on stderr) on a line that is
not a JSON number.
"""
import argparse
import json
import os
import sys


def open_stream(value, mode):
    """A stream value is a decimal file descriptor (mode fd) or a path (mode fifo)."""
    if value.isdigit():
        return os.fdopen(int(value), mode, buffering=1 if "w" in mode else -1)
    return open(value, mode, buffering=1 if "w" in mode else -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=float, default=1.0)
    ap.add_argument("-i", dest="inputs", action="append", default=[])
    ap.add_argument("-o", dest="outputs", action="append", default=[])
    args = ap.parse_args()
    if not args.inputs:
        ap.error("needs at least one input (-i)")
    print(f"scale: factor {args.factor}, pipeline {os.environ.get('MARVELO_PIPELINE')}, "
          f"job {os.environ.get('MARVELO_JOB')}", file=sys.stderr, flush=True)
    ins = [open_stream(v, "r") for v in args.inputs]
    outs = [open_stream(v, "w") for v in args.outputs]
    n = 0
    while True:
        lines = [f.readline() for f in ins]
        if any(line == "" for line in lines):  # an input ended: upstream finished
            break
        for k, out in enumerate(outs):
            line = lines[k % len(lines)].strip()
            try:
                value = json.loads(line)
            except ValueError as e:
                print(f"scale: input {k % len(lines) + 1}: not JSON: {line!r}: {e}", file=sys.stderr)
                return 1
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                print(f"scale: input {k % len(lines) + 1}: not a number: {line!r}", file=sys.stderr)
                return 1
            result = value * args.factor
            if isinstance(result, float) and result.is_integer() and isinstance(value, int):
                result = int(result)
            out.write(json.dumps(result) + "\n")  # line buffered: one block leaves per line
        n += 1
    for out in outs:
        out.close()
    print(f"scale: {n} blocks", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
