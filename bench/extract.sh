#!/usr/bin/env bash
# Benchmarks of the extraction engine (issue 2); results go into BENCHMARKS.md.
#  1. the whole fixture sweep: `asset-worker extract` beside `exiftool -j -r` (and ffprobe,
#     one process per file, over the audio and video fixtures), with hyperfine;
#  2. the per-file cost of the sandbox: one tiny file vs. one process start (`--version`);
#  3. peak memory (max RSS of the parent and its children) on the 30000×30000 PNG.
# Needs hyperfine; exiftool and ffprobe are compared when installed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "bench: install hyperfine (apt-get install -y hyperfine)"; exit 1; }
cargo build --release --quiet
bin=target/release/asset-worker
dirs=(fixtures/image fixtures/video fixtures/audio fixtures/pdf fixtures/dicom fixtures/text fixtures/hostile)
files=$(find "${dirs[@]}" -type f ! -name '*.md' | wc -l)
bytes=$(find "${dirs[@]}" -type f ! -name '*.md' -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "## $(date -u +%F) on $(nproc) cores: $files fixture files, $bytes bytes"
echo

sweep=(-n "asset-worker extract" "$bin extract ${dirs[*]}")
if command -v exiftool >/dev/null; then
    sweep+=(-n "exiftool -j -r" "exiftool -j -r -q ${dirs[*]}")
fi
if command -v ffprobe >/dev/null; then
    media=$(find fixtures/video fixtures/audio -type f | sort | tr '\n' ' ')
    sweep+=(-n "ffprobe per file (video+audio only)" "sh -c 'for f in $media; do ffprobe -v error -show_format -show_streams -of json \$f; done'")
fi
echo "### Whole sweep"
hyperfine --style basic --warmup 2 --runs 10 -i --output null "${sweep[@]}"
echo

echo "### Sandbox cost per file"
hyperfine --style basic --warmup 5 --runs 50 -N --output null \
    -n "process start (--version)" "$bin --version" \
    -n "extract one text file (parent + child)" "$bin extract fixtures/text/utf8_lf.txt" \
    -n "extract the 30000x30000 PNG" "$bin extract fixtures/image/png_huge_30000x30000.png"
echo

echo "### Peak memory (max RSS, KiB)"
for f in fixtures/image/png_huge_30000x30000.png fixtures/video/mp4_h264_aac_moov_at_end.mp4 fixtures/pdf/simple_letter_1page.pdf; do
    [ -f "$f" ] || continue
    rss=$( { /usr/bin/time -f '%M' "$bin" extract "$f" >/dev/null; } 2>&1 | tail -1)
    echo "$f: $rss KiB"
done
