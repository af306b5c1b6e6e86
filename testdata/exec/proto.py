#!/usr/bin/env python3
"""proto.py - an executable connector (or sink) on json pipes that holds to the executable
protocol (DESIGN.md §5), or breaks it on purpose, for the engine's tests.

Each round it reads block_count lines (each after its 1-byte head with --head) from every input
and answers on output 0 with their sum, on output 1 with their product. --skip N answers every
N-th round with the corrupted bit (the round becomes a dummy downstream); --finish N answers the
N-th round with the finished bit and reads and answers on (the engine ends the job there, drops
the later answers); --out-head H ors H into the head of every answer; --answer N answers only
the first N rounds; --garbage N writes a line that is not JSON after N answers; --delay S sleeps S
seconds a round; --record FILE appends each round's values and heads as a JSON line.
"""
import argparse, json, math, os, sys, time
ap = argparse.ArgumentParser()
ap.add_argument("--head", action="store_true")   # heads (1 byte) before every block
ap.add_argument("--bc", type=int, default=1)      # blocks of each input per round
ap.add_argument("--skip", type=int, default=0)    # answer every n-th round with the corrupted bit
ap.add_argument("--finish", type=int, default=0)  # answer the n-th round with the finished bit
ap.add_argument("--out-head", type=int, default=0)# or this head into every answer's
ap.add_argument("--answer", type=int, default=-1) # answer only this many rounds, then read on
ap.add_argument("--garbage", type=int, default=-1)# after this many answers write a malformed line
ap.add_argument("--delay", type=float, default=0) # seconds per round
ap.add_argument("--record", default="")           # append every round's values (JSON) here
ap.add_argument("-i", dest="inputs", action="append", default=[])
ap.add_argument("-o", dest="outputs", action="append", default=[])
a = ap.parse_args()
def op(v, m):
    f = os.fdopen(int(v), m) if v.isdigit() else open(v, m)
    return f
ins = [op(v, "rb") for v in a.inputs]
outs = [op(v, "wb") for v in a.outputs]
rec = open(a.record, "a") if a.record else None
n = 0
while True:
    vals, heads = [], []
    for f in ins:
        for _ in range(a.bc):
            if a.head:
                h = f.read(1)
                if not h:
                    sys.exit(0)
                heads.append(h[0])
            line = f.readline()
            if not line:
                sys.exit(0)
            vals.append(json.loads(line))
    n += 1
    if rec:
        rec.write(json.dumps({"vals": vals, "heads": heads}) + "\n")
        rec.flush()
    if a.delay:
        time.sleep(a.delay)
    if 0 <= a.answer < n:
        continue
    for k, o in enumerate(outs):
        if 0 <= a.garbage < n:
            o.write(b"}{ not json\n")
            o.flush()
            continue
        v = sum(vals) if k == 0 else math.prod(vals)
        if a.head:
            o.write(bytes([(0x80 if a.skip and n % a.skip == 0 else 0) | (0x20 if n == a.finish else 0) | a.out_head]))
        o.write((json.dumps(v) + "\n").encode())
        o.flush()
