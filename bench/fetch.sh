#!/usr/bin/env bash
# Bytes fetched versus object size (issue 3): a typical file of each data type, and a 500 MiB
# moov-at-end MP4, uploaded to SeaweedFS and extracted by URL through the real extraction child
# (ranged fetching with the default settings: 256 KiB blocks, read-ahead up to 8 MiB).
# Prints a Markdown table for BENCHMARKS.md.
#
# The typical files are made once (ffmpeg, ImageMagick, exiftool, Ghostscript, pydicom) into
# $ASSET_WORKER_BENCH_FETCH_DIR (default target/bench-fetch; delete it to remake them). The
# 500 MiB file is the 10-minute video with its mdat padded (a sparse file: the real moov of a
# long video, the size of a large one); the test builds it and uploads it.
# Needs the peers: `make peers` (this script sources .peers/env unless they are in the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -z "${ASSET_WORKER_TEST_S3_ENDPOINT:-}" ]; then
    [ -f .peers/env ] || { echo "bench: run \`make peers\` first"; exit 1; }
    set -a; . .peers/env; set +a
fi
dir=${ASSET_WORKER_BENCH_FETCH_DIR:-$PWD/target/bench-fetch}
for tool in ffmpeg convert exiftool gs python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is needed to make the typical files"; exit 1; }
done

make_files() {
    local tmp=$dir.partial
    rm -rf "$tmp" && mkdir -p "$tmp" && cd "$tmp"
    local ff=(ffmpeg -hide_banner -loglevel error -y)
    # image: a 12 MP phone photo with EXIF, a 1440p screenshot, the 30000×30000 PNG fixture.
    convert -size 4032x3024 -seed 1 plasma:fractal -quality 90 image_photo_12mp.jpg
    exiftool -q -overwrite_original -n -Orientation=6 -Make=Bench -Model=Phone image_photo_12mp.jpg
    convert -size 2560x1440 -seed 2 plasma:fractal image_screenshot_1440p.png
    cp "$root/fixtures/image/png_huge_30000x30000.png" image_png_30000x30000.png
    # video: one minute of 720p, moov first and moov last; ten minutes for the padded file.
    "${ff[@]}" -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
        -t 60 -c:v libx264 -preset veryfast -b:v 4M -c:a aac -b:a 128k video_720p_60s_moov_at_end.mp4
    "${ff[@]}" -i video_720p_60s_moov_at_end.mp4 -c copy -movflags +faststart video_720p_60s_faststart.mp4
    "${ff[@]}" -f lavfi -i testsrc2=size=320x240:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
        -t 600 -c:v libx264 -preset ultrafast -c:a aac -b:a 128k long_moov_at_end.mp4
    # audio: a four-minute song as MP3, AAC (M4A) and FLAC; a minute of WAV.
    "${ff[@]}" -f lavfi -i "sine=frequency=440:sample_rate=44100" -f lavfi -i "sine=frequency=660:sample_rate=44100" \
        -filter_complex amerge -t 240 -c:a libmp3lame -b:a 192k audio_song_4min.mp3
    "${ff[@]}" -i audio_song_4min.mp3 -c:a aac -b:a 256k audio_song_4min.m4a
    "${ff[@]}" -i audio_song_4min.mp3 -c:a flac audio_song_4min.flac
    "${ff[@]}" -i audio_song_4min.mp3 -t 60 -c:a pcm_s16le audio_voice_1min.wav
    # pdf: 60 pages of text and the photo as a full-page figure.
    local viewjpeg
    viewjpeg=$(ls /usr/share/ghostscript/*/lib/viewjpeg.ps | head -1)
    gs -q -dNOSAFER -sDEVICE=pdfwrite -o pdf_report_61pages.pdf "$viewjpeg" -c "
        1 1 60 { pop /Helvetica findfont 10 scalefont setfont
                 1 1 64 { 11 mul 760 exch sub 50 exch moveto
                          (Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.) show } for
                 showpage } for
        (image_photo_12mp.jpg) viewJPEG showpage"
    # pdf: a ~50 MB scan, twelve different 12 MP photos as JPEG pages (passed through as they
    # are; distinct, so Ghostscript keeps each): what a page count must not download whole.
    local pages=""
    for i in $(seq 1 12); do
        convert image_photo_12mp.jpg -roll "+$((i * 301))+$((i * 211))" -quality 97 "scan_page_$i.jpg"
        pages+="(scan_page_$i.jpg) viewJPEG showpage "
    done
    gs -q -dNOSAFER -sDEVICE=pdfwrite -o pdf_scan_12pages.pdf "$viewjpeg" -c "$pages"
    rm scan_page_*.jpg
    # dicom: one CT slice, and an enhanced multi-frame series (pixel data is never read).
    BENCH_ROOT=$root python3 - <<'EOF'
import os, pydicom
base = pydicom.dcmread(os.environ["BENCH_ROOT"] + "/fixtures/dicom/explicit_vr_le_ct_small.dcm")
for name, frames in (("dicom_ct_slice_512.dcm", 1), ("dicom_ct_multiframe_150x512.dcm", 150)):
    ds = base.copy()
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 512, 512, 16, 12, 11
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = os.urandom(512 * 512 * 2 * frames)
    ds.save_as(name)
with open("text_log_5mb.txt", "w") as f:
    i = 0
    while f.tell() < 5 * 1024 * 1024:
        f.write(f"2026-11-28T12:00:{i % 60:02d}Z INFO worker job={i:08d} processed asset in {i % 997} ms\n")
        i += 1
EOF
    cd - >/dev/null
    mv "$tmp" "$dir"
}
[ -d "$dir" ] || { echo "bench: making the typical files in $dir (a few minutes)" >&2; make_files; }

echo "## Bytes fetched vs object size, $(date -u +%F), SeaweedFS $(.venv/bin/weed version 2>/dev/null | head -1 | awk '{print $3}') on 127.0.0.1"
echo
ASSET_WORKER_BENCH_FETCH_DIR=$dir cargo test --quiet --test cli fetch::bench_bytes_fetched_per_data_type \
    -- --ignored --nocapture --test-threads 1 2>/dev/null | grep '^|'
