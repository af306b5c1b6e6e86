#!/usr/bin/env python3
"""decimate.py - an executable filter on a json pipe with "exec": {"sqn": true} (DESIGN.md §5):
every block on its streams is [8-byte big-endian SQN][frame]. It answers only every N-th round
(--every N), with the value it was given and the round's SQN; the rounds between are skipped and
become dummies downstream. --bad-sqn answers its first kept round with an SQN never given;
--reverse answers the second kept round with an SQN below the first's. --gate PATH --gate-after N
opens PATH (a named pipe) for reading after reading N rounds, before any answer: it waits there
until a test opens the pipe for writing.
"""
import argparse, json, os, struct, sys
ap = argparse.ArgumentParser()
ap.add_argument("--every", type=int, default=3)
ap.add_argument("--bad-sqn", action="store_true")
ap.add_argument("--reverse", action="store_true")
ap.add_argument("--gate", default="")
ap.add_argument("--gate-after", type=int, default=0)
ap.add_argument("-i", dest="inputs", action="append", default=[])
ap.add_argument("-o", dest="outputs", action="append", default=[])
a = ap.parse_args()
op = lambda v, m: os.fdopen(int(v), m) if v.isdigit() else open(v, m)
inp = op(a.inputs[0], "rb")
out = op(a.outputs[0], "wb")
n, kept = 0, []
while True:
    s = inp.read(8)
    if len(s) < 8:
        sys.exit(0)
    (sqn,) = struct.unpack(">Q", s)
    v = json.loads(inp.readline())
    n += 1
    if a.gate and n == a.gate_after:
        open(a.gate, "rb").close()
    if n % a.every:
        continue
    kept.append(sqn)
    if a.bad_sqn:
        sqn += 1000
    if a.reverse and len(kept) == 2:
        sqn = kept[0] - 1
    out.write(struct.pack(">Q", sqn) + (json.dumps(v) + "\n").encode())
    out.flush()
