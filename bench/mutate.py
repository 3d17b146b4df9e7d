#!/usr/bin/env python3
"""A mutation campaign: the fixtures, damaged in the ways hostile and broken files are, through
`asset-worker extract`, counting what comes back.

What it checks
--------------
The extraction contract for any bytes at all: one well-formed JSON line per file, in order;
no hang (every answer within the time limit, the batch within its own); no `internal` (a file
that can never be read must not be retried); and no `succeeded` answer with a value the file
cannot back. "Absurd" is a number beyond what any real file of that kind holds:

    width, height, display_*   > 65535 x 8 = 524,280 px
    sample_rate                > 768,000 Hz
    channels                   > 256
    frame_rate                 > 1,000 fps
    duration_seconds           > 10 years (315,576,000 s)
    bit_depth, bits_per_sample > 64
    page_count, frame_count    > 10,000,000

A second pass (`--low-cap-mb`, default 32: the least cap `extract` takes) runs every mutant
again with that memory cap per child and lists the files whose answer changed (to `too_large`,
to a crash) or that "aborted": those are the files whose declared lengths made the child
allocate more than the cap (a file of a few KB has no business needing 32 MiB), or whose answer
depends on the cap where it must not. Peak RSS is /usr/bin/time's: the largest single process
(the parent or one child) of each `extract` call.

Mutations (seeded, so the same seed gives the same mutants): `flip` (1-8 random bit flips,
mostly in the first 4 KiB where the headers are), `truncate` (cut at a random point),
`length` (a 2- or 4-byte field in the headers set to a huge value, either byte order),
`repeat` (a slice inserted again right after itself), `splice` (the head of one fixture and
the tail of another of the same type), `zero` (a range zeroed).

Usage: bench/mutate.py [--bin PATH] [--count N] [--seed S] [--batch N] [--out DIR]
                       [--timeout-ms MS] [--low-cap-mb MB] [--keep]

Prints a summary (outcome kinds, internals, absurd values, hangs, peak RSS); writes every
finding with its mutant's name to OUT/report.json; mutants stay in OUT/mutants/ for
reproduction (deleted unless --keep or a finding names them).
"""

import argparse
import collections
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ["image", "video", "audio", "pdf", "dicom", "text"]
# Bigger fixtures make slow mutants without new code paths (the 30000x30000 PNG is 151 KB).
MAX_SOURCE_BYTES = 512 * 1024
KINDS = ["flip", "truncate", "length", "repeat", "splice", "zero"]

TEN_YEARS = 10 * 365.25 * 86400
LIMITS = {
    "width": 65535 * 8,
    "height": 65535 * 8,
    "display_width": 65535 * 8,
    "display_height": 65535 * 8,
    "sample_rate": 768_000,
    "channels": 256,
    "frame_rate": 1000,
    "duration_seconds": TEN_YEARS,
    "bit_depth": 64,
    "bits_per_sample": 64,
    "page_count": 10_000_000,
    "frame_count": 10_000_000,
}


def sources():
    files = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / "fixtures" / folder).iterdir()):
            if path.is_file() and 0 < path.stat().st_size <= MAX_SOURCE_BYTES:
                files.append((folder, path))
    return files


def header_offset(rng, data):
    """Somewhere in the headers: most damage that matters is in the first few KiB."""
    span = min(len(data), 4096) if rng.random() < 0.8 else len(data)
    return rng.randrange(max(span, 1))


def mutate(rng, kind, data, others):
    data = bytearray(data)
    n = len(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            at = header_offset(rng, data)
            data[at] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del data[rng.randrange(1, max(n, 2)) :]
    elif kind == "length":
        width = rng.choice([2, 4, 4])
        at = header_offset(rng, data)
        at = min(at, max(n - width, 0))
        value = rng.choice(
            [0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, 0x80000000, 0x40000000, 0x10000000, 0x00FFFFFF]
        )
        if width == 2:
            value = rng.choice([0xFFFF, 0x7FFF, 0x8000, 0xFFFE])
        fmt = rng.choice(["<", ">"]) + ("H" if width == 2 else "I")
        data[at : at + width] = struct.pack(fmt, value)[: max(n - at, 0)]
    elif kind == "repeat":
        start = header_offset(rng, data)
        length = rng.randint(1, max(1, min(4096, n - start)))
        data[start + length : start + length] = data[start : start + length] * rng.randint(1, 4)
    elif kind == "splice":
        other = rng.choice(others)
        cut_a = rng.randrange(max(n, 1))
        cut_b = rng.randrange(max(len(other), 1))
        data = data[:cut_a] + other[cut_b:]
    elif kind == "zero":
        start = header_offset(rng, data)
        length = rng.randint(1, 512)
        data[start : start + length] = bytes(len(data[start : start + length]))
    return bytes(data)


def make_mutants(count, seed, folder):
    rng = random.Random(seed)
    pool = sources()
    by_type = collections.defaultdict(list)
    for kind, path in pool:
        by_type[kind].append(path.read_bytes())
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    made = []
    for index in range(count):
        data_type, path = rng.choice(pool)
        kind = rng.choice(KINDS)
        mutant = mutate(rng, kind, path.read_bytes(), by_type[data_type])
        name = folder / f"{index:05d}-{kind}-{path.name}"
        name.write_bytes(mutant)
        made.append(name)
    return made


def run_batches(binary, files, batch, timeout_ms, memory_mb):
    """`extract` over the files, `batch` at a time. Returns (answers by path, batch records)."""
    answers, records = {}, []
    # A batch may not take longer than every file hitting its time limit one after another.
    for start in range(0, len(files), batch):
        chunk = [str(f) for f in files[start : start + batch]]
        command = ["/usr/bin/time", "-f", "%M %e", binary, "extract", f"--timeout-ms={timeout_ms}"]
        if memory_mb:
            command.append(f"--memory-limit-mb={memory_mb}")
        began = time.monotonic()
        try:
            done = subprocess.run(
                command + chunk,
                capture_output=True,
                timeout=len(chunk) * timeout_ms / 1000 + 60,
            )
        except subprocess.TimeoutExpired:
            records.append({"first": chunk[0], "files": len(chunk), "hung": True})
            continue
        stderr = done.stderr.decode(errors="replace").strip().splitlines()
        peak_kib, wall = (int(stderr[-1].split()[0]), float(stderr[-1].split()[1])) if stderr else (0, 0)
        # JSON lines end at "\n" only: str.splitlines() would also cut at U+2028 or U+0085,
        # which serde_json leaves unescaped in a string (a DICOM text value may hold them).
        lines = done.stdout.decode(errors="replace").split("\n")[: len(chunk) + 1]
        lines = [line for line in lines if line]
        malformed = 0
        for expected, line in zip(chunk, lines):
            try:
                answer = json.loads(line)
            except ValueError:
                malformed += 1
                continue
            if answer.get("path") != expected:
                malformed += 1
            answers[expected] = answer
        records.append(
            {
                "first": chunk[0],
                "files": len(chunk),
                "lines": len(lines),
                "malformed": malformed,
                "exit": done.returncode,
                "peak_rss_kib": peak_kib,
                "wall_s": round(time.monotonic() - began, 2),
                "time_wall_s": wall,
            }
        )
    return answers, records


def absurd_values(answer):
    found = []
    metadata = answer.get("metadata") or {}
    for field, limit in LIMITS.items():
        value = metadata.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            found.append(f"{field}={value}")
    return found


def outcome(answer):
    if answer is None:
        return "missing"
    if answer.get("status") == "succeeded":
        return "succeeded"
    return (answer.get("error") or {}).get("kind", "failed?")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(ROOT / "target/debug/asset-worker"))
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", default=str(ROOT / "target/mutate"))
    parser.add_argument("--timeout-ms", type=int, default=10_000)
    parser.add_argument("--low-cap-mb", type=int, default=32, help="0 skips the second pass")
    parser.add_argument("--keep", action="store_true", help="keep every mutant, not only findings")
    args = parser.parse_args()

    if not os.access(args.bin, os.X_OK):
        print(f"mutate: no binary at {args.bin} (cargo build first)", file=sys.stderr)
        return 2
    out = Path(args.out)
    folder = out / "mutants"
    began = time.monotonic()
    files = make_mutants(args.count, args.seed, folder)
    made_s = time.monotonic() - began

    began = time.monotonic()
    answers, records = run_batches(args.bin, files, args.batch, args.timeout_ms, None)
    extract_s = time.monotonic() - began

    kinds = collections.Counter()
    by_mutation = collections.defaultdict(collections.Counter)
    findings = collections.defaultdict(list)
    for f in files:
        answer = answers.get(str(f))
        kind = outcome(answer)
        kinds[kind] += 1
        by_mutation[f.name.split("-")[1]][kind] += 1
        if kind == "missing":
            findings["missing"].append(f.name)
        elif kind == "internal":
            findings["internal"].append(f"{f.name}: {answer['error']['message']}")
        elif kind == "timeout":
            findings["timeout"].append(f"{f.name}: {answer['error']['message']}")
        elif kind == "succeeded":
            absurd = absurd_values(answer)
            if absurd:
                findings["absurd"].append(f"{f.name}: {', '.join(absurd)}")

    low = {}
    if args.low_cap_mb:
        low_answers, low_records = run_batches(args.bin, files, args.batch, args.timeout_ms, args.low_cap_mb)
        for f in files:
            before, after = answers.get(str(f)), low_answers.get(str(f))
            if outcome(before) != outcome(after) or (
                outcome(after) == "corrupt" and "aborted" in after["error"]["message"]
            ):
                findings[f"changed at {args.low_cap_mb} MiB"].append(
                    f"{f.name}: {outcome(before)} -> {outcome(after)}"
                    + (f" ({after['error']['message']})" if after and after.get("error") else "")
                )
        low = {
            "memory_limit_mb": args.low_cap_mb,
            "peak_rss_kib": max((r.get("peak_rss_kib", 0) for r in low_records), default=0),
        }

    named = {line.split(":")[0] for items in findings.values() for line in items}
    if not args.keep:
        for f in files:
            if f.name not in named:
                f.unlink()

    peak = max((r.get("peak_rss_kib", 0) for r in records), default=0)
    report = {
        "seed": args.seed,
        "mutants": len(files),
        "batch": args.batch,
        "timeout_ms": args.timeout_ms,
        "make_s": round(made_s, 1),
        "extract_s": round(extract_s, 1),
        "files_per_s": round(len(files) / extract_s, 1) if extract_s else None,
        "outcomes": dict(kinds.most_common()),
        "by_mutation": {k: dict(v.most_common()) for k, v in sorted(by_mutation.items())},
        "peak_rss_kib": peak,
        "hung_batches": sum(1 for r in records if r.get("hung")),
        "malformed_lines": sum(r.get("malformed", 0) for r in records),
        "short_batches": sum(1 for r in records if r.get("lines", r["files"]) != r["files"]),
        "low_cap": low,
        "findings": {k: v for k, v in findings.items()},
        "batches": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"mutate: {len(files)} mutants (seed {args.seed}) of {len(sources())} fixtures, "
          f"{args.batch} per extract call, {extract_s:.1f} s ({report['files_per_s']} files/s)")
    print("mutate: outcomes " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    for mutation, counts in report["by_mutation"].items():
        print(f"mutate:   {mutation:<9} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"mutate: peak RSS of any one process {peak / 1024:.1f} MiB; "
          f"hung batches {report['hung_batches']}; malformed lines {report['malformed_lines']}; "
          f"batches short of lines {report['short_batches']}")
    if low:
        print(f"mutate: second pass at --memory-limit-mb {low['memory_limit_mb']}: "
              f"peak RSS {low['peak_rss_kib'] / 1024:.1f} MiB")
    for name, items in findings.items():
        print(f"mutate: {name}: {len(items)}")
        for item in items[:15]:
            print(f"mutate:     {item}")
    print(f"mutate: report at {out / 'report.json'}, mutants named there in {folder}")
    bad = any(findings.get(k) for k in ("missing", "internal", "absurd", "timeout"))
    return 1 if bad or report["hung_batches"] or report["malformed_lines"] else 0


if __name__ == "__main__":
    sys.exit(main())
