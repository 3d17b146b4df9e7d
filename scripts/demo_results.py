#!/usr/bin/env python3
"""`make demo`'s view of the results: reads the JSON lines of `asset-worker results` on stdin,
prints one short line per result as it arrives, then a summary to --summary (succeeded, failed
by error kind, wall time since --start, and how many answers equal the reviewed answer of
their fixture in fixtures/expected/, the goldens the tests hold `extract` to).

    asset-worker results --count N … | demo_results.py --expected N --start EPOCH_SECONDS \
        --goldens fixtures/expected --summary FILE
"""

import argparse
import collections
import json
import pathlib
import sys
import time

# The fields a result shares with a line of `extract` (DESIGN §4), hence with a golden answer.
COMPARED = ("status", "data_type", "mime_type", "size_bytes", "metadata", "error")


def describe(result):
    """The few fields of the metadata a person checks at a glance, by data type."""
    m = result.get("metadata") or {}
    kind = result.get("data_type")

    def size(w, h):
        return f"{m.get(w)}x{m.get(h)}"

    if kind == "image":
        text = f"{m.get('format')} {size('width', 'height')}"
        if m.get("orientation", 1) != 1:
            text += f" orientation {m['orientation']} → {size('display_width', 'display_height')}"
        if (m.get("frame_count") or 1) > 1:
            text += f", {m['frame_count']} frames"
        return text
    if kind == "video":
        text = f"{m.get('container')} {m.get('video_codec')}/{m.get('audio_codec') or '-'} {size('width', 'height')}"
        text += f" {m.get('duration_seconds', 0):.2f} s"
        if m.get("frame_rate"):
            text += f" {m['frame_rate']:.2f} fps"
        if m.get("rotation"):
            text += f" rotated {m['rotation']}°"
        return text
    if kind == "audio":
        channels = m.get("channels")
        return (f"{m.get('container')} {m.get('codec')} {m.get('duration_seconds', 0):.2f} s "
                f"{m.get('sample_rate')} Hz {channels} ch")
    if kind == "pdf":
        return (f"PDF {m.get('pdf_version')}, {plural(m.get('page_count'), 'page')}"
                + (", encrypted" if m.get("encrypted") else ""))
    if kind == "dicom":
        frames = m.get("number_of_frames")
        return (f"{m.get('modality')} {m.get('rows')}x{m.get('columns')}"
                + (f", {frames} frames" if frames and frames != 1 else ""))
    if kind == "text":
        endings = "no line ending" if m.get("line_ending") == "none" else f"{m.get('line_ending')} endings"
        return (f"{m.get('encoding')}{' BOM' if m.get('has_bom') else ''}, {plural(m.get('line_count'), 'line')}, "
                f"{plural(m.get('word_count'), 'word')}, {endings}")
    return json.dumps(m)[:60]


def plural(count, noun):
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class Tally:
    """What the summary counts, result by result."""

    def __init__(self, goldens):
        self.goldens = goldens
        self.succeeded = 0
        self.failed = collections.Counter()
        self.total_ms = []
        self.unlike_golden = []
        self.without_golden = []

    def add(self, line):
        """Counts one line of `results` and prints it shortly."""
        line = line.strip()
        if not line:
            return
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            print(f"  ?    not JSON: {line[:100]}", flush=True)
            self.failed["not_json"] += 1
            return
        asset = result.get("asset_id", "?")
        golden = self.goldens / f"{asset}.json"
        if golden.is_file():
            expected = json.loads(golden.read_text())
            if any(result.get(field) != expected.get(field) for field in COMPARED):
                self.unlike_golden.append(asset)
        else:
            self.without_golden.append(asset)
        ms = (result.get("stats") or {}).get("total_ms")
        took = f"{ms:>4} ms" if ms is not None else "       "
        if ms is not None:
            self.total_ms.append(ms)
        if result.get("status") == "succeeded":
            self.succeeded += 1
            print(f"  ok   {took}  {asset:<48} {result.get('data_type'):<6} {describe(result)}", flush=True)
        else:
            error = result.get("error") or {}
            kind = error.get("kind", "?")
            self.failed[kind] += 1
            print(f"  FAIL {took}  {asset:<48} {kind}: {error.get('message', '')[:90]}", flush=True)

    def answered(self):
        return self.succeeded + sum(self.failed.values())

    def summary(self, expected, wall, interrupted):
        answered = self.answered()
        lines = [f"{answered} of {expected} jobs answered in {wall:.2f} s wall time (enqueue → last result)"
                 f"{' before Ctrl-C' if interrupted else ''}: {self.succeeded} succeeded, "
                 f"{sum(self.failed.values())} failed"]
        for kind, count in sorted(self.failed.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  failed {kind}: {count}")
        if self.total_ms:
            self.total_ms.sort()
            lines.append(f"per job in the worker (stats.total_ms): median {self.total_ms[len(self.total_ms) // 2]} ms, "
                         f"max {self.total_ms[-1]} ms")
        compared = answered - len(self.without_golden)
        lines.append(f"{compared - len(self.unlike_golden)} of {compared} answers equal their fixture's reviewed "
                     f"answer in {self.goldens}/"
                     + (f"; UNLIKE: {', '.join(self.unlike_golden)}" if self.unlike_golden else ""))
        if self.without_golden:
            lines.append(f"no reviewed answer for: {', '.join(self.without_golden)}")
        return "".join(f"demo: {line}\n" for line in lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expected", type=int, required=True, help="jobs enqueued")
    parser.add_argument("--start", type=float, required=True, help="when the first job was enqueued")
    parser.add_argument("--goldens", type=pathlib.Path, required=True, help="fixtures/expected")
    parser.add_argument("--summary", type=pathlib.Path, required=True, help="where the summary goes")
    args = parser.parse_args()
    tally = Tally(args.goldens)
    interrupted = False
    try:
        for line in sys.stdin:
            tally.add(line)
    except KeyboardInterrupt:
        interrupted = True
    args.summary.write_text(tally.summary(args.expected, time.time() - args.start, interrupted))
    if interrupted:
        return 130
    return 0 if tally.answered() == args.expected and not tally.unlike_golden else 1


if __name__ == "__main__":
    sys.exit(main())
