#!/usr/bin/env python3
"""Helpers of bench/e2e.sh (jobs through RabbitMQ, end to end).

    e2e.py make-large DIR            the large files, made without ffmpeg (see make_large)
    e2e.py sample PID OUT.json       peak memory of PID and of its children, until PID exits
    e2e.py s3 upload|delete ROOT PREFIX   objects under ROOT to/from the peers' SeaweedFS (boto3)
    e2e.py report RESULTS_DIR        the Markdown tables of BENCHMARKS.md from the runs' files
"""

import collections
import json
import math
import os
import pathlib
import random
import statistics
import struct
import sys
import time
import zlib

MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Large files. ffmpeg and ImageMagick are not needed: each file is written byte by byte in its
# real format, sized like the large assets of each type.

def pad_mdat(fixture, pad, out):
    """bench/fetch.sh's 500 MiB video, the recipe of tests/cli/fetch.rs `pad_mdat`: an MP4 whose
    moov follows its mdat, with `pad` bytes more at the end of the mdat (a hole on disk). The
    sample offsets stay true and the moov is a real one, at the end of a large file."""
    data = pathlib.Path(fixture).read_bytes()
    at, mdat, moov = 0, None, None
    while at + 8 <= len(data):
        size = struct.unpack(">I", data[at:at + 4])[0]
        kind = data[at + 4:at + 8]
        if kind == b"mdat":
            mdat = (at, size)
        elif kind == b"moov":
            moov = at
        assert size >= 8, f"a top-level box of {size} bytes"
        at += size
    (mdat_at, mdat_size) = mdat
    assert mdat_at + mdat_size == moov, "moov must directly follow mdat"
    with open(out, "wb") as f:
        f.write(data[:mdat_at])
        f.write(struct.pack(">I", mdat_size + pad))
        f.write(data[mdat_at + 4:moov])
        f.seek(pad, os.SEEK_CUR)
        f.write(data[moov:])


def wav(path, seconds):
    """PCM s16le stereo 44.1 kHz: a 440 Hz tone, `seconds` long."""
    rate, channels = 44100, 2
    period = [int(12000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate)]
    one_second = struct.pack(f"<{rate * channels}h", *(s for s in period for _ in range(channels)))
    data_bytes = len(one_second) * seconds
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16))
        f.write(b"data" + struct.pack("<I", data_bytes))
        for _ in range(seconds):
            f.write(one_second)


def png_noise(path, width, height):
    """An RGB PNG of random pixels (incompressible, so the file is as large as a big photo's
    pixels), deflated at level 1."""
    rng = random.Random(1)
    compressor = zlib.compressobj(1)
    idat = bytearray()
    for _ in range(height):
        idat += compressor.compress(b"\0" + rng.randbytes(width * 3))
    idat += compressor.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", bytes(idat)))
        f.write(chunk(b"IEND", b""))


def text_log(path, size):
    """A server log (bench/fetch.sh's 5 MB log, larger): text costs its whole size by nature."""
    with open(path, "w") as f:
        i = 0
        while f.tell() < size:
            f.write(f"2026-11-28T12:00:{i % 60:02d}Z INFO worker job={i:08d} processed asset in {i % 997} ms\n")
            i += 1


DRAW_IMAGE = b"q 612 0 0 792 0 0 cm /Im1 Do Q"


def pdf_with_image(path, image_bytes):
    """A one-page PDF whose page shows an image XObject of `image_bytes` random bytes (a scan):
    once the PDF reader's heavy case (it parsed the whole file); read by range since issue 9, it
    costs its cross-reference data and page tree (BENCHMARKS.md)."""
    side = int(math.sqrt(image_bytes / 3))
    pixels = random.Random(2).randbytes(side * side * 3)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im1 4 0 R >> >>"
        b" /Contents 5 0 R >>",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8"
        b" /Length %d >>\nstream\n" % (side, side, len(pixels)) + pixels + b"\nendstream",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(DRAW_IMAGE), DRAW_IMAGE),
    ]
    with open(path, "wb") as f:
        f.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(f.tell())
            f.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
        xref = f.tell()
        f.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
        for offset in offsets:
            f.write(b"%010d 00000 n \n" % offset)
        f.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))


def make_large(directory):
    root = pathlib.Path(__file__).resolve().parent.parent
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    made = {
        "video_moov_at_end_200MiB.mp4": lambda p: pad_mdat(
            root / "fixtures/video/mp4_h264_aac_moov_at_end.mp4", 200 * MIB, p),
        "audio_wav_10min.wav": lambda p: wav(p, 600),
        "image_png_noise_5000x3500.png": lambda p: png_noise(p, 5000, 3500),
        "text_log_50MiB.txt": lambda p: text_log(p, 50 * MIB),
        "pdf_scan_50MiB.pdf": lambda p: pdf_with_image(p, 50 * MIB),
    }
    for name, make in made.items():
        path = out / name
        if not path.exists():
            t0 = time.time()
            partial = path.with_suffix(path.suffix + ".partial")
            make(partial)
            partial.rename(path)
            print(f"bench: made {name} ({path.stat().st_size:,} bytes) in {time.time() - t0:.1f} s", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Peak memory. VmHWM is a process's own peak resident set; the extraction children are other
# processes, each with its own, and most live a few milliseconds: sampling every 10 ms sees
# the long-lived (large) ones. bench/e2e.sh also runs the worker under /usr/bin/time, whose
# %M is the largest of the worker's and any child's peaks, exactly.

def vm_hwm_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def extraction_children(pid):
    """The children of `pid` that run the extraction child. Between spawn and exec /proc shows
    a child with its parent's peak (seen here: every sample then equalled the worker's), so
    only children already running the child's own command line count."""
    return [child for child in children(pid) if b"extract-child" in read_bytes(f"/proc/{child}/cmdline")]


def read_bytes(path):
    try:
        return open(path, "rb").read()
    except OSError:
        return b""


def children(pid):
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                found += open(f"/proc/{pid}/task/{task}/children").read().split()
            except OSError:
                pass
    except OSError:
        pass
    return found


def cpu_ticks_with_reaped(pid):
    """(utime + stime, the same plus cutime + cstime: its reaped children's) of a process from
    one read of /proc/PID/stat, or None once it is gone."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3 of stat(5), utime 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    return ticks, ticks + int(fields[13]) + int(fields[14])


def cpu_ticks(pid):
    """utime + stime of a process, or None once it is gone."""
    both = cpu_ticks_with_reaped(pid)
    return both and both[0]


def sample(pid, out):
    """Samples until `pid` exits; OUT.started appears after the first sample, so that the
    caller can start the load only once the sampler is looking. CPU: the worker's own and its
    reaped children's (retired parser children), plus the live children's as last seen (their
    last 10 ms may be missed). Counting retired children as last seen instead missed a third of
    their CPU (checked against a cpuacct cgroup: 0.11 counted of 0.175 ms per small job)."""
    own, child_peak, seen, samples = 0, 0, set(), 0
    own_cpu, with_reaped, child_cpu = 0, 0, {}
    while os.path.exists(f"/proc/{pid}"):
        own = max(own, vm_hwm_kib(pid) or 0)
        own_cpu, with_reaped = cpu_ticks_with_reaped(pid) or (own_cpu, with_reaped)
        live = {}
        for child in extraction_children(pid):
            seen.add(child)
            child_peak = max(child_peak, vm_hwm_kib(child) or 0)
            live[child] = cpu_ticks(child) or child_cpu.get(child, 0)
        # A retired child's CPU is in the worker's cutime once reaped (the worker reaps them):
        # only the live ones are counted from their own stat, so none is counted twice.
        child_cpu = live
        samples += 1
        if samples == 1:
            pathlib.Path(out + ".started").touch()
        time.sleep(0.01)
        # The status file outlives the exit a moment as a zombie, with no VmHWM: keep the last.
    tick = os.sysconf("SC_CLK_TCK")
    pathlib.Path(out).write_text(json.dumps(
        {"worker_vm_hwm_kib": own, "sampled_child_peak_kib": child_peak, "children_seen": len(seen),
         "samples": samples, "own_cpu_ms": 1000 * own_cpu / tick,
         "cpu_ms": 1000 * (with_reaped + sum(child_cpu.values())) / tick}))


def machine_cpu(out):
    """The machine's CPU ticks so far (busy, and idle with I/O wait) and the broker's (every
    beam.smp process): two snapshots around a batch say where the machine's time went."""
    fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    broker = 0
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    broker += cpu_ticks(int(entry.name)) or 0
            except OSError:
                pass
    pathlib.Path(out).write_text(json.dumps(
        {"busy": sum(fields[:8]) - idle, "idle": idle, "broker": broker, "tick": os.sysconf("SC_CLK_TCK")}))


# ---------------------------------------------------------------------------------------------
# SeaweedFS, as the admin of .peers/env (who prepares objects; the worker reads them through
# the role, as in tests/cli/delegated.rs).

def s3(action, root, prefix):
    import boto3  # the peers' .venv has it

    env = os.environ
    client = boto3.client(
        "s3", endpoint_url=env["ASSET_WORKER_TEST_S3_ENDPOINT"], region_name="eu-central-1",
        aws_access_key_id=env["ASSET_WORKER_TEST_S3_ADMIN_ACCESS_KEY_ID"],
        aws_secret_access_key=env["ASSET_WORKER_TEST_S3_ADMIN_SECRET_ACCESS_KEY"],
        config=boto3.session.Config(s3={"addressing_style": "path"}))
    bucket = env["ASSET_WORKER_TEST_S3_BUCKET"]
    if action == "upload":
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        t0, total = time.time(), 0
        for path in sorted(pathlib.Path(root).rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(root)}"
                client.upload_file(str(path), bucket, key,
                                   ExtraArgs={"ContentType": "application/octet-stream"})
                total += path.stat().st_size
        print(f"bench: uploaded {total:,} bytes to s3://{bucket}/{prefix}/ in {time.time() - t0:.1f} s",
              file=sys.stderr)
    else:
        deleted = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                deleted += len(keys)
        print(f"bench: deleted {deleted} objects under s3://{bucket}/{prefix}/", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# The report.

def largest_child(memory, mib):
    """The largest extraction child's peak: exact when /usr/bin/time's %M (the largest peak of
    the worker and its children) exceeds the worker's own VmHWM; otherwise no child outgrew
    the worker, and the sampled peak is a lower bound."""
    own, tree = memory.get("worker_vm_hwm_kib"), memory.get("tree_max_rss_kib")
    sampled = memory.get("sampled_child_peak_kib")
    if own is None or tree is None or not memory.get("children_seen"):
        return "–"  # no children (the no-op consumer): %M above VmHWM is then its own last growth
    if tree > own:
        return mib(tree)
    return f"{mib(sampled)}–{mib(own)}" if sampled else f"≤ {mib(own)}"


def report(directory):
    runs = []
    # In the order they ran (bench/e2e.sh lists them).
    names = (pathlib.Path(directory) / "order").read_text().split()
    for path in (pathlib.Path(directory) / f"{name}.summary.json" for name in names):
        run, config = path.name.split(".")[0:2]
        summary = json.loads(path.read_text())
        memory_path = path.with_name(f"{run}.{config}.memory.json")
        memory = json.loads(memory_path.read_text()) if memory_path.exists() else {}
        time_path = path.with_name(f"{run}.{config}.maxrss")
        if time_path.exists():
            memory["tree_max_rss_kib"] = int(time_path.read_text().split()[0])
        before, after = (path.with_name(f"{run}.{config}.cpu-{when}.json") for when in ("before", "after"))
        if before.exists() and after.exists():
            before, after = json.loads(before.read_text()), json.loads(after.read_text())
            memory["machine"] = {key: (after[key] - before[key]) * 1000 / after["tick"]
                                 for key in ("busy", "idle", "broker")}
        runs.append((int(run.removeprefix("run")), config, summary, memory))
    configs = []
    for _, config, _, _ in runs:
        if config not in configs:
            configs.append(config)

    def mib(kib):
        return f"{kib / 1024:.1f}" if kib else "–"

    def ms(value):
        return "–" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

    print("| run | consumer, objects, batch | jobs | jobs/s | latency p50 / p99 ms | worker's own total_ms"
          " p50 / p99 | CPU ms per job (worker process) | machine CPU ms per job (broker), idle | consumer peak RSS MiB | largest child MiB | outcomes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for run, config, s, m in sorted(runs, key=lambda r: (configs.index(r[1]), r[0])):
        lat, own = s["latency_ms"], s["worker_total_ms"]
        child_text = largest_child(m, mib)
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items()))
        cpu = m.get("cpu_ms")
        cpu_text = f"{cpu / s['jobs']:.3f}" if cpu is not None and s["jobs"] else "–"
        if m.get("own_cpu_ms") is not None and s["jobs"] and config.startswith("worker"):
            cpu_text += f" ({m['own_cpu_ms'] / s['jobs']:.3f})"
        machine = m.get("machine")
        machine_text = "–"
        if machine and s["jobs"]:
            idle = machine["idle"] / max(machine["busy"] + machine["idle"], 1)
            machine_text = (f"{machine['busy'] / s['jobs']:.2f} ({machine['broker'] / s['jobs']:.2f}), "
                            f"{100 * idle:.0f}%")
        print(f"| {run} | {config.replace('_', ', ')} | {s['answered']}/{s['jobs']} | {s['jobs_per_second']:.0f} "
              f"| {ms(lat['p50'])} / {ms(lat['p99'])} | {ms(own['p50'])} / {ms(own['p99'])} | {cpu_text} "
              f"| {machine_text} "
              f"| {mib(m.get('worker_vm_hwm_kib'))} | {child_text} | {outcomes} |")
    print()
    print("| consumer, objects, batch | runs | jobs/s mean (min–max) | latency p50 ms mean (min–max) |")
    print("|---|---:|---:|---:|")
    for config in configs:
        rates = [s["jobs_per_second"] for _, c, s, _ in runs if c == config]
        p50s = [s["latency_ms"]["p50"] for _, c, s, _ in runs if c == config]
        spread = f" ± {statistics.stdev(rates):.0f}" if len(rates) > 1 else ""
        print(f"| {config.replace('_', ', ')} | {len(rates)} | {statistics.mean(rates):.0f}{spread} "
              f"({min(rates):.0f}–{max(rates):.0f}) | {statistics.mean(p50s):.0f} ({min(p50s):.0f}–{max(p50s):.0f}) |")
    # The large files one by one: the worker's own time per job (median over every job of that
    # file in every run), local and SeaweedFS.
    per_file = collections.defaultdict(list)
    for name in names:
        config = name.split(".")[1]
        if not config.endswith("large"):
            continue
        provider = config.split("_")[1]
        for line in (pathlib.Path(directory) / f"{name}.times.tsv").read_text().splitlines():
            fields = line.split("\t")
            if fields[7]:
                per_file[(pathlib.Path(fields[1]).name, provider)].append(int(fields[7]))
    if per_file:
        files = sorted({file for file, _ in per_file})
        providers = sorted({provider for _, provider in per_file})
        print()
        print("| large file | " + " | ".join(f"worker's total_ms, {p} (median, max)" for p in providers) + " |")
        print("|---|" + "---:|" * len(providers))
        for file in files:
            cells = []
            for provider in providers:
                values = sorted(per_file.get((file, provider), []))
                cells.append(f"{statistics.median(values):.0f}, {values[-1]}" if values else "–")
            print(f"| {file} | " + " | ".join(cells) + " |")


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "make-large" and len(sys.argv) == 3:
        make_large(sys.argv[2])
    elif command == "sample" and len(sys.argv) == 4:
        sample(int(sys.argv[2]), sys.argv[3])
    elif command == "machine-cpu" and len(sys.argv) == 3:
        machine_cpu(sys.argv[2])
    elif command == "s3" and len(sys.argv) == 5 and sys.argv[2] in ("upload", "delete"):
        s3(sys.argv[2], sys.argv[3], sys.argv[4])
    elif command == "report" and len(sys.argv) == 3:
        report(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
