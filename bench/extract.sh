#!/usr/bin/env bash
# Benchmarks of the extraction engine (issue 2); results go into BENCHMARKS.md.
#  1. the whole fixture sweep: `asset-worker extract` beside `exiftool -j -r` (and ffprobe,
#     one process per file, over the audio and video fixtures), with hyperfine;
#  2. the per-file cost of the sandbox: one tiny file vs. one process start (`--version`);
#  3. peak memory (max RSS of the parent and its children) on the 30000×30000 PNG;
#  4. text speed (issue 9): 64 MiB of ASCII and 64 MiB of multilingual UTF-8, beside
#     `wc -lmw`, which counts the same lines, characters and words.
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

echo
echo "### Text speed (64 MiB each, beside wc -lmw)"
text_dir=target/bench-text
mkdir -p "$text_dir"
python3 - "$text_dir" <<'PY'
import sys
d = sys.argv[1]
size = 64 << 20
ascii_line = b'alpha beta gamma delta omega epsilon 0123456789 the quick brown fox\n'
utf8_line = 'Grüße aus Köln — naïve café ½ € Καλημέρα κόσμε Привет мир 日本語のテキスト 😀\n'.encode()
for name, line in (('ascii_64MiB.txt', ascii_line), ('utf8_64MiB.txt', utf8_line)):
    with open(f'{d}/{name}', 'wb') as f:
        f.write(line * (size // len(line)))
PY
for f in "$text_dir"/ascii_64MiB.txt "$text_dir"/utf8_64MiB.txt; do
    hyperfine --style basic --warmup 1 --runs 5 --output null \
        -n "asset-worker extract $(basename "$f")" "$bin extract $f" \
        -n "LC_ALL=C.UTF-8 wc -lmw $(basename "$f")" "env LC_ALL=C.UTF-8 wc -lmw $f"
done
