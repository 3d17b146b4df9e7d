#!/usr/bin/env python3
"""Cross-check asset-worker's answers against the established tools, field by field.

What this proves
----------------
For every fixture in fixtures/{image,video,audio,pdf,dicom,text,hostile}, the metadata that
`asset-worker extract` reports (docs/DESIGN.md section 3, field names per data type) is the
same as what the tools users already trust say about the same bytes -- ffprobe for audio and
video, exiftool (+ ImageMagick identify) for images, pdfinfo for PDFs, pydicom for DICOM, and a
Python summary (+ `file`) for text -- within stated tolerances:

    durations   +-0.05 s or 1 % (whichever is larger)
    frame rates +-0.01 fps
    page sizes  +-0.5 pt
    everything else exactly (codec/container names, pixel sizes, counts, UIDs, ...)

The references were written by fixtures/reference.sh into fixtures/reference/<type>/<file>.<tool>.*;
this script only reads them (it needs no ffprobe/exiftool/pydicom of its own: stdlib only).

Where the tools are wrong or disagree with each other, the script does not count a mismatch
blindly: the table KNOWN below names the file, the field, the truth and WHY (usually a fact from
fixtures/README.md). A field our tool gets right while a reference tool is known wrong is
counted as "known-wrong-reference", not as agreement and not as a difference. Two reference
tools that disagree on a field with no KNOWN entry is itself reported as a difference, so that
every disagreement is explained in this file.

Hostile files (fixtures/hostile) must each produce exactly one answer line, and that answer must
be the outcome the table HOSTILE allows: a failure with a sensible error kind, or a success whose
fields are consistent with the file's header (then those fields are cross-checked like any other).

Output: per data type, each difference with its details (and the known-wrong references and
notes), then a table of files / fields compared / agree / differ / known-wrong-reference, and a
last line `crosscheck: N fields agree, M differ, K known-wrong-reference`.
Exit status: 0 if no unexplained difference, 1 otherwise, 2 if the binary cannot be run.

Extractors that are not written yet answer `unsupported_type`; each field such a file should
have had is counted as a difference, so the totals stay comparable from one run to the next.

Usage: bench/crosscheck.py [--bin PATH] [--types image,video,...] [--timeout S] [-v]
"""

import argparse
import json
import os
import re
import subprocess
import sys
from fractions import Fraction

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, 'fixtures')
REF = os.path.join(FIX, 'reference')
TYPES = ['image', 'video', 'audio', 'pdf', 'dicom', 'text', 'hostile']
SKIP_SUFFIXES = ('.md', '.json', '.sh')

# The metadata keys of each data type (docs/DESIGN.md section 3).
CONTRACT = {
    'image': ['format', 'width', 'height', 'orientation', 'display_width', 'display_height',
              'frame_count', 'bit_depth', 'color_type'],
    'video': ['container', 'duration_seconds', 'width', 'height', 'rotation', 'sample_aspect_ratio',
              'display_width', 'display_height', 'frame_rate', 'frame_rate_mode', 'frame_count',
              'start_time_seconds', 'video_codec', 'audio_codec', 'has_audio'],
    'audio': ['container', 'codec', 'duration_seconds', 'sample_rate', 'channels', 'bits_per_sample'],
    'pdf': ['page_count', 'pdf_version', 'encrypted', 'pages'],
    'dicom': ['transfer_syntax_uid', 'sop_class_uid', 'sop_instance_uid', 'study_instance_uid',
              'series_instance_uid', 'modality', 'rows', 'columns', 'number_of_frames',
              'bits_allocated', 'photometric_interpretation', 'pixel_spacing', 'tags'],
    'text': ['encoding', 'has_bom', 'char_count', 'line_count', 'word_count', 'line_ending'],
}

# ---------------------------------------------------------------------------------------------
# KNOWN: fields where a reference tool is wrong (or silent), with the truth and why.
# Key: (path relative to fixtures/, field). Value: truth, what the tools said, why.
# ---------------------------------------------------------------------------------------------
KNOWN = {
    ('audio/mp3_vbr_no_xing.mp3', 'duration_seconds'): dict(
        truth=289 * 1152 / 44100,
        wrong={'ffprobe': 4.00959, 'exiftool (not stored)': 1.22},
        why='VBR MP3 without Xing/Info/VBRI: 289 MPEG-1 layer III frames x 1152 samples / 44100 Hz '
            '= 7.549 s (ffprobe itself counted nb_read_packets=289). ffprobe estimates the length '
            'from an average bit rate (4.01 s) and exiftool from the first frame\'s 256 kbit/s '
            '(1.22 s); both are estimates from a header that lies (fixtures/README.md).'),
    ('audio/flac_total_samples_0.flac', 'duration_seconds'): dict(
        truth=1.0,
        wrong={'ffprobe': None},
        why='STREAMINFO total_samples = 0 means "unknown"; ffprobe reports no duration at all. '
            'The 11 frames hold 44100 samples at 44100 Hz = 1.000 s, found only by scanning '
            '(make.sh asserts the field is 0; fixtures/README.md).'),
    ('image/apng_3frames.png', 'frame_count'): dict(
        truth=3,
        wrong={'identify': 1},
        why='acTL num_frames = 3 (exiftool AnimationFrames 3). ImageMagick 6 has no APNG reader: '
            'identify decodes only the default image, so it lists 1 frame.'),
    ('image/heic_irot90.heic', 'width'): dict(
        truth=64,
        wrong={'identify': 48},
        why='Stored size is the primary item\'s ispe, 64x48 (exiftool ImageWidth). identify (libheif) '
            'applies the irot transform before reporting, i.e. it gives the display size 48x64.'),
    ('image/heic_irot90.heic', 'height'): dict(
        truth=48,
        wrong={'identify': 64},
        why='As for width: identify reports the size after libheif has applied irot.'),
    ('image/heic_irot90.heic', 'orientation'): dict(
        truth=8,
        wrong={'identify': 1},
        why='irot angle=1 is 90 deg ANTI-clockwise (ISO/IEC 23008-12), which is EXIF orientation 8 '
            '(exiftool shows it as Rotation 90 -- anti-clockwise for HEIF, although its MP4 Rotation '
            'is clockwise). identify says TopLeft because libheif already rotated the pixels.'),
    ('hostile/gif_screen_0x0.gif', 'width'): dict(
        truth=20,
        wrong={'exiftool': 0},
        why='The logical screen says 0x0; the one frame is 20x10 at (0,0). Browsers and ImageMagick '
            'grow the canvas to the frames; exiftool prints the header field.'),
    ('hostile/gif_screen_0x0.gif', 'height'): dict(
        truth=10, wrong={'exiftool': 0}, why='As for width.'),
    ('hostile/gif_screen_0x0.gif', 'display_width'): dict(
        truth=20, wrong={'exiftool': 0}, why='As for width (orientation 1).'),
    ('hostile/gif_screen_0x0.gif', 'display_height'): dict(
        truth=10, wrong={'exiftool': 0}, why='As for width (orientation 1).'),
    ('hostile/huge_dims_truncated.jpg', 'width'): dict(
        truth=65500,
        wrong={'file -b': -36, 'exiftool': None},
        why='SOF0 says 65500x65500x3 (fixtures/README.md). `file` prints the 16-bit field as signed '
            '(-36); exiftool stops with "JPEG format error" before reporting any size.'),
    ('hostile/mp4_mvhd_duration_ffffffff.mp4', 'duration_seconds'): dict(
        truth=1.0,
        wrong={'ffprobe format.duration': 4294967.295},
        why='The mvhd duration is 0xFFFFFFFF, which ISO/IEC 14496-12 reserves for "unknown"; ffprobe '
            'and exiftool divide it by the timescale (4,294,967 s = 49.7 days). The tracks say 1 s '
            '(tkhd, edit lists, and 25 frames of 1/25 s), as in video/mp4_h264_aac_faststart.mp4 it '
            'was patched from.'),
    ('hostile/huge_dims_truncated.jpg', 'height'): dict(
        truth=65500,
        wrong={'file -b': -36, 'exiftool': None},
        why='As for width.'),
}

# ---------------------------------------------------------------------------------------------
# BY_DESIGN: fields where our answer differs from the tools on purpose (README, "Decisions").
# Key: (path relative to fixtures/, field). Value: our answer and why.
# ---------------------------------------------------------------------------------------------
_NO_INDEX = ('frame_count is null: the container stores no frame count and counting means reading '
             'every cluster/packet, which a ranged fetch of a large file must not do unless asked '
             '(`--count-frames`, checked in its own pass below; ffprobe counts only with '
             '-count_packets/-count_frames; its plain nb_frames is N/A too).')
_ADPCM = ('bits_per_sample is null for lossy codecs (DESIGN §3); ADPCM is lossy: ffprobe\'s 4 is '
          'the coded bits per sample, not the resolution of the audio.')
_MALFORMED_IS = ('a number field whose value is not a number (IS "1A") is null, not a guess: pydicom '
                 'keeps the text "1A" (it warns: invalid value for VR IS).')
BY_DESIGN = {
    ('dicom/malformed_is_values.dcm', 'number_of_frames'): dict(ours=None, why=_MALFORMED_IS),
    ('audio/wav_adpcm_ima_22050_mono.wav', 'bits_per_sample'): dict(ours=None, why=_ADPCM),
    ('audio/wav_adpcm_ms_22050_mono.wav', 'bits_per_sample'): dict(ours=None, why=_ADPCM),
}
_NO_TIMESTAMPS = ('frame_rate_mode is null unless frames are counted (`extract --count-frames`, the job\'s '
                  '`options.count_frames`): Matroska and MPEG-TS keep no table of frame durations, and '
                  'knowing them means reading every block/packet. The --count-frames pass below checks it.')
for _name in sorted(os.listdir(os.path.join(FIX, 'video')) if os.path.isdir(os.path.join(FIX, 'video')) else []):
    if _name.endswith(('.mkv', '.webm', '.ts')):
        BY_DESIGN.setdefault(('video/' + _name, 'frame_count'), dict(ours=None, why=_NO_INDEX))
        BY_DESIGN[('video/' + _name, 'frame_rate_mode')] = dict(ours=None, why=_NO_TIMESTAMPS)

# The formats whose frames `extract --count-frames` counts by reading the whole file.
COUNTED = ('.mkv', '.webm', '.ts')

# ---------------------------------------------------------------------------------------------
# HOSTILE: what each hostile file may produce. 'fail' = must fail with one of `kinds`;
# 'succeed' = must succeed as `data_type` and match the references; 'either' = a failure with one
# of `kinds`, or a success consistent with the header (then cross-checked as `data_type`).
# ---------------------------------------------------------------------------------------------
HOSTILE = {
    'bmp_width_0.bmp': dict(policy='fail', kinds={'corrupt'},
                            why='biWidth 0 (identify: "negative or zero image size").'),
    'dicom_nested_sq_50000.dcm': dict(policy='fail', kinds={'corrupt'},
                                      why='50,000 nested sequences (dcmdump segfaults on it).'),
    'dicom_ob_length_1gib_then_eof.dcm': dict(policy='fail', kinds={'corrupt', 'too_large'},
                                              why='an OB element declaring 1 GiB, then EOF at 264 bytes.'),
    'dicom_truncated_mid_dataset.dcm': dict(policy='fail', kinds={'corrupt'},
                                            why='cut inside BitsAllocated, before the pixel data.'),
    'flac_streaminfo_sample_rate_0.flac': dict(policy='fail', kinds={'corrupt'},
                                               why='STREAMINFO sample rate 0 is invalid (RFC 9639).'),
    'gif_screen_0x0.gif': dict(policy='either', data_type='image', kinds={'corrupt'},
                               why='0x0 logical screen, one 20x10 frame: browsers show 20x10.'),
    'mkv_codecprivate_4gib_then_eof.mkv': dict(policy='fail', kinds={'corrupt'},
                                               why='95 bytes declaring a 4 GiB CodecPrivate: truncated.'),
    'mp3_xing_4e9_frames.mp3': dict(policy='either', data_type='audio', kinds={'corrupt'},
                                    why='a Xing header claiming 4e9 frames over 78 real ones: 2.038 s.'),
    'mp4_moov_size_4gib_then_eof.mp4': dict(policy='fail', kinds={'corrupt'},
                                            why='moov declaring 4 GiB, then EOF: truncated.'),
    'mp4_fps_7.6e6.mp4': dict(policy='either', data_type='video', kinds={'corrupt'},
                              why='a video mdhd timescale of 3.9e9 (25 frames in 3.3 us, shown for 1 s by '
                                  'the edit list) and an mvhd of 2425.8 s: no frame rate or start can be '
                                  'backed, the tracks say 1 s (ffprobe: "error reading header").'),
    'mp4_mvhd_duration_ffffffff.mp4': dict(policy='either', data_type='video', kinds={'corrupt'},
                                           why='mvhd duration all ones = unknown: the tracks\' 1 s, not 49.7 days.'),
    'pdf_count_1000000_one_page.pdf': dict(policy='either', data_type='pdf', kinds={'corrupt'},
                                           why='/Count 1000000 over one real page: 1 page.'),
    'pdf_pages_tree_loop.pdf': dict(policy='either', data_type='pdf', kinds={'corrupt'},
                                    why='/Kids holding the node itself: 1 page, no endless walk.'),
    'png_ihdr_length_0.png': dict(policy='fail', kinds={'corrupt'},
                                  why='IHDR of length 0 (it must be 13 bytes).'),
    'tiff_ifd_loop.tif': dict(policy='either', data_type='image', kinds={'corrupt'},
                              why='IFD 0 names itself as the next IFD: libtiff reads 1 page; a '
                                  'strict reader refuses the cycle.'),
    'wav_sample_rate_0.wav': dict(policy='fail', kinds={'corrupt'},
                                  why='fmt sample rate 0: no duration can be had.'),
    'dicom_long_text_values.dcm': dict(
        policy='succeed', data_type='dicom',
        why='text values over 1 KiB (a 3,001-byte Manufacturer): read, each value cut at 1 KiB with a mark.'),
    'mutant_dicom_deflated_corrupt_stream_1.dcm': dict(
        policy='fail', kinds={'corrupt'},
        why='bit flips in the deflated data set: it does not inflate (never retryable).'),
    'mutant_dicom_deflated_corrupt_stream_2.dcm': dict(
        policy='fail', kinds={'corrupt'},
        why='the deflated data set spliced with other bytes: it does not inflate.'),
    'mutant_bmp_height_1.1e9.bmp': dict(
        policy='fail', kinds={'corrupt'},
        why='uncompressed BMP claiming 64x1,107,296,208 in 9 KB: the pixels cannot be in the file.'),
    'mutant_heic_height_2.4e9.heic': dict(
        policy='fail', kinds={'corrupt'},
        why='ispe height 2,399,141,936: beyond what HEVC (16,888 a side) in a grid can code.'),
    'mutant_webp_canvas_height_16.7e6.webp': dict(
        policy='fail', kinds={'corrupt'},
        why='still VP8X canvas 64x16,777,008 over a 64x48 VP8 image (libwebp: size incoherent).'),
    'mutant_webp_canvas_width_6.3e6.webp': dict(
        policy='fail', kinds={'corrupt'},
        why='animation canvas 6,357,056 wide over 64x48 frames.'),
    'mutant_wav_rate_3.99e9.wav': dict(
        policy='fail', kinds={'corrupt'},
        why='PCM fmt: 3,992,985,408 Hz but a byte rate of 144,000 for 18-byte frames.'),
    'mutant_wav_channels_53761.wav': dict(
        policy='fail', kinds={'corrupt'},
        why='mu-law fmt: 53,761 channels in 1-byte frames.'),
    'mutant_jpeg_precision_74.jpg': dict(
        policy='fail', kinds={'corrupt'},
        why='APP0 turned SOF0: a frame header of 74-bit samples (ITU T.81: 2 to 16).'),
    'mutant_au_channels_1048576.au': dict(
        policy='fail', kinds={'corrupt'},
        why='AU header of 1,048,576 channels (ffprobe: "Invalid number of channels").'),
    'mutant_caf_bits_114.caf': dict(
        policy='fail', kinds={'corrupt'},
        why='ALAC CAF whose description says 114-bit samples.'),
    'mutant_heic_pixi_bits_255.heic': dict(
        policy='fail', kinds={'corrupt'},
        why='pixi of 255 bits a channel: HEVC codes 16 at most.'),
    'mutant_tiff_tag_count_8e6.tif': dict(
        policy='fail', kinds={'corrupt'},
        why='a 2,200-byte TIFF whose TileOffsets declares 8,388,608 values (the tiff crate reserved them).'),
    'empty.bin': dict(policy='fail', kinds={'unsupported_type', 'corrupt'},
                      why='0 bytes: nothing to identify (file: "empty"; exiftool: "File is empty").'),
    'empty.mp4': dict(policy='fail', kinds={'unsupported_type', 'corrupt'},
                      why='0 bytes; the .mp4 name is no evidence (ffprobe: "moov atom not found").'),
    'empty.pdf': dict(policy='fail', kinds={'unsupported_type', 'corrupt'},
                      why='0 bytes; the .pdf name is no evidence (pdfinfo: "Document stream is empty").'),
    'random_64k.bin': dict(policy='fail', kinds={'unsupported_type', 'corrupt'},
                           why='random bytes: no signature, not text (file: "data").'),
    'binary-named.txt': dict(policy='fail', kinds={'unsupported_type', 'corrupt'},
                             why='random bytes named .txt: must not be called text (file: "data").'),
    'png-named.jpg': dict(policy='succeed', data_type='image',
                          why='PNG bytes under a .jpg name: sniffed as PNG 64x48 (file, exiftool).'),
    'text-named.mp4': dict(policy='succeed', data_type='text',
                           why='ASCII text under an .mp4 name: text, 2 lines (file, exiftool).'),
    'truncated_png_100bytes.png': dict(
        policy='either', data_type='image', kinds={'corrupt'},
        why='IHDR intact (64x48 RGB 8-bit), IDAT cut: headers suffice, so success is fine.'),
    'truncated_jpeg_half.jpg': dict(
        policy='either', data_type='image', kinds={'corrupt'},
        why='SOF intact (64x48, 3 components), scan cut: headers suffice, so success is fine.'),
    'truncated_mp4_moov_at_end_2k.mp4': dict(
        policy='fail', kinds={'corrupt'},
        why='ftyp + part of mdat, no moov: there is no metadata (ffprobe: "moov atom not found").'),
    'truncated_mp4_faststart_half.mp4': dict(
        policy='either', data_type='video', kinds={'corrupt'},
        why='moov complete (1.0 s, 320x240), mdat cut; ffprobe and exiftool answer from the moov.'),
    'mp4_mvhd_timescale_0.mp4': dict(
        policy='fail', kinds={'corrupt'},
        why='mvhd timescale 0 and no track. ffprobe "defaults to 1" and invents a 1000 s, 0-stream '
            'file: not a reference to follow.'),
    'mp4_mvhd_mdhd_timescale_0_with_trak.mp4': dict(
        policy='fail', kinds={'corrupt'},
        why='timescale 0 in mvhd and mdhd, empty sample tables (ffprobe: "error reading header").'),
    'pdf_nested_arrays_10000.pdf': dict(
        policy='either', data_type='pdf', kinds={'corrupt', 'too_large'},
        why='valid 1-page letter PDF with a 10000-deep array (pdfinfo reads it); a depth limit may refuse it.'),
    'huge_dims_truncated.png': dict(
        policy='either', data_type='image', kinds={'corrupt', 'too_large'},
        why='IHDR 2147483647x2147483647 RGBA (valid CRC), then EOF.'),
    'huge_dims_truncated.gif': dict(
        policy='either', data_type='image', kinds={'corrupt', 'too_large'},
        why='screen and image 65535x65535, EOF inside the LZW data.'),
    'huge_dims_truncated.jpg': dict(
        policy='either', data_type='image', kinds={'corrupt', 'too_large'},
        why='SOI, DQT, SOF0 65500x65500x3, then EOF.'),
}

PHI_KEYWORDS = {
    'PatientName', 'PatientID', 'PatientBirthDate', 'PatientBirthTime', 'PatientSex', 'PatientAge',
    'PatientAddress', 'PatientTelephoneNumbers', 'OtherPatientIDs', 'OtherPatientNames',
    'PatientMotherBirthName', 'MedicalRecordLocator', 'IssuerOfPatientID', 'InstitutionName',
    'InstitutionAddress', 'ReferringPhysicianName', 'PerformingPhysicianName', 'OperatorsName',
    'NameOfPhysiciansReadingStudy', 'AccessionNumber',
}

LOSSY_AUDIO = {'mp3', 'mp2', 'mp1', 'aac', 'vorbis', 'opus', 'ac3', 'eac3', 'dts', 'wmav1', 'wmav2',
               'amr_nb', 'amr_wb', 'speex', 'gsm', 'gsm_ms'}

# ---------------------------------------------------------------------------------------------
# values, candidates, comparison
# ---------------------------------------------------------------------------------------------


class OneOf:
    """An expected value with several acceptable spellings (container names, ASCII text...)."""

    def __init__(self, *values):
        self.values = tuple(values)

    def __repr__(self):
        return ' | '.join(fmt(v) for v in self.values)


def fmt(v):
    if isinstance(v, OneOf):
        return repr(v)
    if v is None:
        return 'null'
    if isinstance(v, float):
        return f'{v:.6g}'
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return json.dumps(v)


def num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def same(a, b, kind='exact'):
    """Whether value a matches value b under tolerance `kind` (either may be a OneOf)."""
    if isinstance(a, OneOf):
        return any(same(x, b, kind) for x in a.values)
    if isinstance(b, OneOf):
        return any(same(a, x, kind) for x in b.values)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(same(x, y, kind) for x, y in zip(a, b)))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if num(a) and num(b):
        d = abs(a - b)
        if kind == 'dur':
            return d <= max(0.05, 0.01 * abs(b))
        if kind == 'fps':
            return d <= 0.01
        if kind == 'pt':
            return d <= 0.5
        if kind == 'ts':
            return d <= 1e-5
        if kind == 'float':
            return d <= 1e-6 * max(1.0, abs(b))
        return a == b
    return a == b


class Field:
    """One compared field: our value, the references' candidates [(label, value)], a tolerance."""

    def __init__(self, name, cands, kind='exact'):
        self.name = name
        self.cands = [(label, v) for label, v in cands if v is not ABSENT]
        self.kind = kind


ABSENT = object()   # "this tool says nothing about this field"


def get(d, key, default=ABSENT):
    return d.get(key, default) if isinstance(d, dict) else default


class Tally:
    def __init__(self):
        self.files = 0
        self.fields = 0
        self.agree = 0
        self.differ = 0
        self.known = 0
        self.by_design = 0
        self.lines = []     # (tag, text)

    def add(self, tag, text):
        self.lines.append((tag, text))


def resolve(rel, field):
    """Expected value of a field, and a description of its source. Returns
    (expected, source, state) with state in {'ok', 'known', 'stale-known', 'conflict', 'none'}."""
    known = KNOWN.get((rel, field.name))
    cands = field.cands
    if known is not None:
        truth = known['truth']
        all_right = cands and all(same(v, truth, field.kind) for _, v in cands)
        said = ', '.join(f'{l} {fmt(v)}' for l, v in cands) or 'no reference tool gives a value'
        if all_right and known.get('wrong'):
            return truth, f'KNOWN truth (stale entry? references now agree: {said})', 'stale-known'
        if all_right:
            return truth, 'KNOWN truth', 'ok'
        return truth, f'KNOWN truth; {said}', 'known'
    if not cands:
        return None, 'no reference', 'none'
    label, first = cands[0]
    others = [(l, v) for l, v in cands[1:] if not same(v, first, field.kind)]
    if others:
        said = ', '.join(f'{l} {fmt(v)}' for l, v in cands)
        return first, f'references disagree ({said}) and KNOWN has no entry', 'conflict'
    agreeing = ' = '.join(l for l, _ in cands)
    return first, agreeing, 'ok'


def compare_fields(rel, ours_md, fields, tally, verbose):
    """Compare our metadata with the resolved references, field by field."""
    for f in fields:
        expected, source, state = resolve(rel, f)
        if state == 'none':
            tally.add('NOTE', f'{rel} {f.name}: no reference value; not compared')
            continue
        ours = lookup(ours_md, f.name)
        tally.fields += 1
        design = BY_DESIGN.get((rel, f.name))
        if design is not None and ours is not ABSENT and same(ours, design['ours'], 'exact'):
            tally.by_design += 1
            tally.add('DESIGN', f'{rel} {f.name}: ours {fmt(ours)}, {source} {fmt(expected)}. '
                                f'Why: {design["why"]}')
            continue
        ok = ours is not ABSENT and same(ours, expected, f.kind)
        shown = 'missing' if ours is ABSENT else fmt(ours)
        if state == 'conflict':
            tally.differ += 1
            tally.add('DIFF', f'{rel} {f.name}: ours {shown}; {source}')
        elif not ok:
            tally.differ += 1
            tally.add('DIFF', f'{rel} {f.name}: ours {shown}, expected {fmt(expected)} ({source})')
        elif state == 'known':
            tally.known += 1
            why = KNOWN[(rel, f.name)]['why']
            tally.add('KNOWN', f'{rel} {f.name}: ours {shown} = truth; {source}. Why: {why}')
        else:
            tally.agree += 1
            if state == 'stale-known':
                tally.add('NOTE', f'{rel} {f.name}: {source}')
            if verbose:
                ref = '' if ours == expected else f' ~ {fmt(expected)}'
                tally.add('ok', f'{rel} {f.name}: {shown}{ref} ({source})')


def lookup(md, dotted):
    """md['pages'][0]['width_pt'] for 'pages[0].width_pt', md['tags']['X'] for 'tags.X'."""
    cur = md
    for part in re.findall(r'[^.\[\]]+|\[\d+\]', dotted):
        if part.startswith('['):
            i = int(part[1:-1])
            if not isinstance(cur, list) or i >= len(cur):
                return ABSENT
            cur = cur[i]
        else:
            if not isinstance(cur, dict) or part not in cur:
                return ABSENT
            cur = cur[part]
    return cur


# ---------------------------------------------------------------------------------------------
# reading the references
# ---------------------------------------------------------------------------------------------

def load_json(path):
    with open(path, encoding='utf-8') as fh:
        return json.load(fh)


def parse_blocks(path):
    """reference.sh's `block` format: '### title\\n$ cmd\\noutput\\n[exit N]' -> [(title, out, rc)]."""
    text = open(path, encoding='utf-8', errors='replace').read()
    blocks = []
    for m in re.finditer(r'^### (.*?)\n\$ [^\n]*\n(.*?)\n?\[exit (\d+)\]', text, re.S | re.M):
        blocks.append((m.group(1).strip(), m.group(2), int(m.group(3))))
    return blocks


def json_from_output(out):
    """The JSON document inside a block's output (ffprobe/exiftool print error lines first)."""
    start = min([i for i in (out.find('['), out.find('{')) if i >= 0], default=-1)
    while start >= 0:
        try:
            return json.loads(out[start:])
        except ValueError:
            nxt = [i for i in (out.find('[', start + 1), out.find('{', start + 1)) if i >= 0]
            start = min(nxt) if nxt else -1
    return None


def ratio(s):
    try:
        f = Fraction(s)
    except (ValueError, ZeroDivisionError, TypeError):
        return ABSENT
    return float(f) if f else ABSENT


def to_int(s, default=ABSENT):
    try:
        return int(s)
    except (TypeError, ValueError):
        return default


def head_bytes(rel, n=64):
    try:
        with open(os.path.join(FIX, rel), 'rb') as fh:
            return fh.read(n)
    except OSError:
        return b''


# ---- images ---------------------------------------------------------------------------------

EXIF_FORMAT = {'PNG': 'png', 'APNG': 'png', 'JPEG': 'jpeg', 'GIF': 'gif', 'WEBP': 'webp',
               'Extended WEBP': 'webp', 'TIFF': 'tiff', 'BMP': 'bmp', 'AVIF': 'avif', 'HEIC': 'heic'}
PNG_COLOR = {0: 'gray', 2: 'rgb', 3: 'palette', 4: 'gray_alpha', 6: 'rgba'}
JPEG_COLOR = {1: 'gray', 3: 'rgb', 4: 'cmyk'}
IDENTIFY_ORIENT = {'Undefined': 1, 'TopLeft': 1, 'TopRight': 2, 'BottomRight': 3, 'BottomLeft': 4,
                   'LeftTop': 5, 'RightTop': 6, 'RightBottom': 7, 'LeftBottom': 8}
HEIF_CCW_TO_EXIF = {0: 1, 90: 8, 180: 3, 270: 6}


def first_int(v):
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, str) and v.split():
        return to_int(v.split()[0])
    return ABSENT


def image_fields(rel, ex, ident_lines, file_b=None):
    """Fields of an image from exiftool JSON (+ identify lines, + `file -b` for hostile files)."""
    ex = ex or {}
    ftype = get(ex, 'FileType')
    fmt_ = EXIF_FORMAT.get(ftype, ABSENT) if ftype is not ABSENT else ABSENT
    E = 'exiftool'

    idn = []
    for line in ident_lines or []:
        m = re.match(r'(\d+) (\S+) (\d+) x (\d+) frame (\d+) x (\d+) \S+ delay=\S+ depth=(\d+) '
                     r'colorspace=(\S+) orientation=(\S+)', line)
        if m:
            idn.append(m.groups())
    I = 'identify'
    i0 = idn[0] if idn else None

    fb_w = fb_h = fb_depth = fb_comp = ABSENT
    if file_b:
        # the last "W x H" is the size ("density 1x1" comes earlier in JFIF descriptions)
        dims = re.findall(r'(?<!density )(-?\d+) ?x ?(-?\d+)', file_b)
        if dims:
            fb_w, fb_h = int(dims[-1][0]), int(dims[-1][1])
        m = re.search(r'precision (\d+)', file_b)
        if m:
            fb_depth = int(m.group(1))
        m = re.search(r'components (\d+)', file_b)
        if m:
            fb_comp = int(m.group(1))
    F = 'file -b'

    # orientation
    if 'Orientation' in ex:
        orient = ('exiftool Orientation', ex['Orientation'])
    elif fmt_ in ('heic', 'avif'):
        rot = ex.get('Rotation', 0)
        orient = ('exiftool Rotation (HEIF irot, anti-clockwise) as EXIF', HEIF_CCW_TO_EXIF.get(rot, ABSENT))
    elif ftype is not ABSENT:
        orient = ('exiftool (no Orientation tag = 1)', 1)
    else:
        orient = (E, ABSENT)

    # frame count
    if fmt_ == 'gif':
        fc = ('exiftool FrameCount (absent = 1)', ex.get('FrameCount', 1))
    elif ftype == 'APNG':
        fc = ('exiftool AnimationFrames', ex.get('AnimationFrames', ABSENT))
    elif fmt_ == 'tiff':
        fc = ('exiftool PageCount (absent = 1)', ex.get('PageCount', 1))
    elif fmt_ in ('png', 'jpeg', 'bmp', 'heic', 'avif'):
        fc = ('exiftool (still format)', 1)
    else:
        fc = (E, ABSENT)    # exiftool does not count WebP frames
    fc_i = (f'{I} frames', len(idn)) if idn else (I, ABSENT)

    # bit depth (per channel sample; per palette index for indexed images)
    depth_i = (I, int(i0[6])) if i0 else (I, ABSENT)
    if fmt_ == 'png':
        depth = ('exiftool BitDepth', ex.get('BitDepth', ABSENT))
        if ex.get('ColorType') == 3:
            depth_i = (I, ABSENT)     # identify gives the palette entries' depth
    elif fmt_ == 'jpeg':
        depth = ('exiftool BitsPerSample', ex.get('BitsPerSample', ABSENT))
        if depth[1] is ABSENT:
            depth = ('file -b precision', fb_depth)
    elif fmt_ == 'gif':
        depth = ('exiftool BitsPerPixel', ex.get('BitsPerPixel', ABSENT))
        depth_i = (I, ABSENT)         # identify: depth of palette entries (always 8)
    elif fmt_ == 'bmp':
        bd = ex.get('BitDepth', ABSENT)
        depth = ('exiftool BitDepth per channel', 8 if bd in (24, 32) else bd)
        if bd not in (24, 32):
            depth_i = (I, ABSENT)
    elif fmt_ == 'tiff':
        depth = ('exiftool BitsPerSample', first_int(ex.get('BitsPerSample', ABSENT)))
    elif fmt_ in ('heic', 'avif'):
        depth = ('exiftool ImagePixelDepth', first_int(ex.get('ImagePixelDepth', ABSENT)))
    elif fmt_ == 'webp':
        depth = ('WebP is 8-bit only (VP8/VP8L)', 8)
    else:
        depth = (E, ABSENT)

    # colour type
    ci = (I, ABSENT)
    if fmt_ == 'png':
        color = ('exiftool ColorType', PNG_COLOR.get(ex.get('ColorType'), ABSENT))
    elif fmt_ == 'jpeg':
        comps = ex.get('ColorComponents', ABSENT)
        if comps is ABSENT:
            comps = fb_comp
        color = ('exiftool ColorComponents', JPEG_COLOR.get(comps, ABSENT))
        if i0:
            ci = (f'{I} colorspace', {'Gray': 'gray', 'CMYK': 'cmyk', 'sRGB': 'rgb'}.get(i0[7], ABSENT))
    elif fmt_ == 'gif':
        color = ('GIF is always indexed', 'palette')
    elif fmt_ == 'bmp':
        bd = ex.get('BitDepth')
        color = ('exiftool BitDepth', 'rgb' if bd == 24 else OneOf('rgb', 'rgba') if bd == 32
                 else 'palette' if isinstance(bd, int) and bd <= 8 else ABSENT)
    elif fmt_ == 'tiff':
        pi, spp = ex.get('PhotometricInterpretation'), ex.get('SamplesPerPixel', 1)
        c = {0: 'gray', 1: 'gray', 2: 'rgb', 3: 'palette', 5: 'cmyk', 6: 'ycbcr', 8: 'lab'}.get(pi, ABSENT)
        if c == 'gray' and spp == 2:
            c = 'gray_alpha'
        if c == 'rgb' and spp == 4:
            c = 'rgba'
        color = ('exiftool PhotometricInterpretation/SamplesPerPixel', c)
    elif fmt_ == 'webp':
        if ftype == 'Extended WEBP':
            color = ('exiftool WebP_Flags (0x10 = alpha)', 'rgba' if ex.get('WebP_Flags', 0) & 0x10 else 'rgb')
        elif 'VP8Version' in ex:
            color = ('exiftool: simple lossy WebP (VP8, no alpha)', 'rgb')
        else:
            color = ('make.sh: cwebp -lossless from a PNG24 without alpha', 'rgb')
    elif fmt_ in ('heic', 'avif'):
        color = ('exiftool: colour item, no alpha item (reported as rgb, like YCbCr JPEG)', 'rgb')
    else:
        color = (E, ABSENT)

    return [
        Field('format', [(f'exiftool FileType {ftype}', fmt_)]),
        Field('width', [('exiftool ImageWidth', ex.get('ImageWidth', ABSENT)),
                        (I, int(i0[2]) if i0 else ABSENT), (F, fb_w)]),
        Field('height', [('exiftool ImageHeight', ex.get('ImageHeight', ABSENT)),
                         (I, int(i0[3]) if i0 else ABSENT), (F, fb_h)]),
        Field('orientation', [orient, (f'{I} orientation', IDENTIFY_ORIENT.get(i0[8], ABSENT) if i0 else ABSENT)]),
        Field('frame_count', [fc, fc_i]),
        Field('bit_depth', [depth, depth_i]),
        Field('color_type', [color, ci]),
    ]


def derived_display(rel, fields, dims=('width', 'height'), turn=('orientation', lambda o: o in (5, 6, 7, 8)),
                    aspect=None):
    """display_width/height derived from the *resolved* stored size and orientation/rotation (and,
    for video, the width stretched by the resolved sample aspect ratio, rounded: ffmpeg's
    `scale=iw*sar:ih`)."""
    exp = {}
    for f in fields:
        if f.name in (dims[0], dims[1], turn[0], aspect):
            e, _, state = resolve(rel, f)
            exp[f.name] = None if state == 'none' else e
    w, h, o = exp.get(dims[0]), exp.get(dims[1]), exp.get(turn[0])
    if w is None or h is None or o is None:
        return []
    label = f'derived from {dims[0]}/{dims[1]} and {turn[0]} {o}'
    if aspect:
        sar = exp.get(aspect)
        if sar is None:
            return []
        sar = Fraction(sar.replace(':', '/'))
        w = int(w * sar + Fraction(1, 2))
        label += f' and {aspect} {sar.numerator}:{sar.denominator}'
    swapped = turn[1](o)
    return [Field('display_width', [(label, h if swapped else w)]),
            Field('display_height', [(label, w if swapped else h)])]


def image_refs(rel):
    base = os.path.join(REF, rel)
    ex = load_json(base + '.exiftool.json')[0]
    ident = None
    if os.path.exists(base + '.identify.txt'):
        ident = open(base + '.identify.txt', encoding='utf-8').read().splitlines()
    fields = image_fields(rel, ex, ident)
    return fields + derived_display(rel, fields)


# ---- video / audio --------------------------------------------------------------------------

def ffprobe_container(rel, fmtname, tags):
    names = (fmtname or '').split(',')
    if 'mov' in names and 'mp4' in names:
        brand = (tags or {}).get('major_brand', '').strip()
        if brand == 'qt':
            return 'ffprobe format_name + major_brand "qt  "', 'mov'
        if brand == 'M4A':
            return 'ffprobe format_name + major_brand "M4A "', OneOf('m4a', 'mp4')
        return f'ffprobe format_name + major_brand "{brand}"', 'mp4'
    if 'matroska' in names:
        head = head_bytes(rel, 64)
        i = head.find(b'\x42\x82')    # EBML DocType element: ffprobe does not show it
        doctype = head[i + 3:i + 3 + (head[i + 2] & 0x7f)].decode('ascii', 'replace') if i >= 0 else ''
        return 'ffprobe format_name + EBML DocType', ('webm' if doctype == 'webm' else 'mkv')
    if fmtname == 'mpegts':
        return 'ffprobe format_name', OneOf('mpegts', 'ts')
    if fmtname == 'wav':
        return 'ffprobe format_name', OneOf('wav', 'rf64') if head_bytes(rel, 4) == b'RF64' else 'wav'
    if fmtname == 'aiff':
        return 'ffprobe format_name', OneOf('aiff', 'aifc') if head_bytes(rel, 12)[8:12] == b'AIFC' else 'aiff'
    if fmtname == 'aac':
        return 'ffprobe format_name (raw ADTS)', OneOf('aac', 'adts')
    return 'ffprobe format_name', fmtname or ABSENT


def pick_streams(probe):
    streams = probe.get('streams') or []
    v = next((s for s in streams if s.get('codec_type') == 'video'
              and not (s.get('disposition') or {}).get('attached_pic')), None)
    a = next((s for s in streams if s.get('codec_type') == 'audio'), None)
    return v, a


def video_fields(rel, probe):
    fmt_ = probe.get('format') or {}
    v, a = pick_streams(probe)
    v = v or {}
    P = 'ffprobe'
    label, container = ffprobe_container(rel, fmt_.get('format_name'), fmt_.get('tags'))
    dur = fmt_.get('duration')
    rot = 0
    rot_label = 'ffprobe (no display matrix)'
    for sd in v.get('side_data_list') or []:
        if 'rotation' in sd:
            rot = int(round(-float(sd['rotation']))) % 360
            rot_label = f'ffprobe displaymatrix rotation {sd["rotation"]} (counter-clockwise) as clockwise'
    if 'rotate' in (v.get('tags') or {}):
        rot = int(v['tags']['rotate']) % 360
        rot_label = 'ffprobe tags.rotate (clockwise)'
    if 'nb_frames' in v:
        fc = ('ffprobe nb_frames', to_int(v['nb_frames']))
    else:
        fc = ('ffprobe nb_read_packets', to_int(v.get('nb_read_packets')))
    sar = v.get('sample_aspect_ratio')
    if sar and not sar.startswith('0:'):
        sar_ref = ('ffprobe sample_aspect_ratio', sar)
    else:
        sar_ref = ('ffprobe (no sample aspect ratio: square pixels)', '1:1' if v else ABSENT)
    start = v.get('start_time')
    fields = [
        Field('container', [(label, container)]),
        Field('duration_seconds', [('ffprobe format.duration', float(dur) if dur else ABSENT)], 'dur'),
        Field('width', [(P, v.get('width', ABSENT))]),
        Field('height', [(P, v.get('height', ABSENT))]),
        Field('rotation', [(rot_label, rot if v else ABSENT)]),
        Field('sample_aspect_ratio', [sar_ref]),
        Field('frame_rate', [('ffprobe avg_frame_rate', ratio(v.get('avg_frame_rate')))], 'fps'),
        Field('frame_rate_mode', [('ffprobe packet timestamps (sorted; steps within a tick or 1 ms = constant)',
                                   packets_mode(rel))]),
        Field('frame_count', [fc]),
        Field('start_time_seconds', [('ffprobe stream start_time', float(start) if start not in (None, 'N/A')
                                      else ABSENT)], 'ts'),
        Field('video_codec', [('ffprobe codec_name', v.get('codec_name', ABSENT))]),
        Field('audio_codec', [('ffprobe codec_name' if a else 'ffprobe (no audio stream)',
                               a.get('codec_name') if a else None)]),
        Field('has_audio', [(P, a is not None)]),
    ]
    return fields + derived_display(rel, fields, turn=('rotation', lambda r: r in (90, 270)),
                                    aspect='sample_aspect_ratio')


def packets_mode(rel):
    """constant/variable from the video packets' presentation times that reference.sh recorded
    (ffprobe -show_entries packet=pts), the same rule as ours: sorted, consecutive steps that
    differ by at most one tick of the stream's time base, or one millisecond if that is longer,
    are constant."""
    path = os.path.join(REF, rel) + '.packets.json'
    if not os.path.exists(path):
        return ABSENT
    v, _ = pick_streams(load_json(os.path.join(REF, rel) + '.ffprobe.json'))
    ticks_per_second = 1 / Fraction((v or {}).get('time_base', '1/1000'))
    tolerance = max(1, int(ticks_per_second / 1000))
    pts = sorted(int(p['pts']) for p in load_json(path).get('packets', []) if 'pts' in p)
    steps = [b - a for a, b in zip(pts, pts[1:])]
    if not steps:
        return None
    return 'constant' if max(steps) - min(steps) <= tolerance else 'variable'


def audio_fields(rel, probe):
    fmt_ = probe.get('format') or {}
    _, a = pick_streams(probe)
    a = a or {}
    label, container = ffprobe_container(rel, fmt_.get('format_name'), fmt_.get('tags'))
    dur = fmt_.get('duration') or a.get('duration')
    codec = a.get('codec_name', ABSENT)
    if codec in LOSSY_AUDIO:
        bits = ('ffprobe: lossy codec -> null', None)
    elif a.get('bits_per_sample'):
        bits = ('ffprobe bits_per_sample', a['bits_per_sample'])
    else:
        bits = ('ffprobe bits_per_raw_sample', to_int(a.get('bits_per_raw_sample')))
    return [
        Field('container', [(label, container)]),
        Field('codec', [('ffprobe codec_name', codec)]),
        Field('duration_seconds', [('ffprobe duration', float(dur) if dur else ABSENT)], 'dur'),
        Field('sample_rate', [('ffprobe sample_rate', to_int(a.get('sample_rate')))]),
        Field('channels', [('ffprobe channels', a.get('channels', ABSENT))]),
        Field('bits_per_sample', [bits]),
    ]


def video_refs(rel):
    return video_fields(rel, load_json(os.path.join(REF, rel) + '.ffprobe.json'))


def audio_refs(rel):
    return audio_fields(rel, load_json(os.path.join(REF, rel) + '.ffprobe.json'))


# ---- pdf ------------------------------------------------------------------------------------

def pdfinfo_fields(out):
    """Fields from `pdfinfo -f 1 -l 100 -box` output."""
    P = 'pdfinfo'
    def line(key):
        m = re.search(r'^' + re.escape(key) + r':\s*(.*)$', out, re.M)
        return m.group(1).strip() if m else ABSENT
    pages = to_int(line('Pages'))
    enc = line('Encrypted')
    ver = line('PDF version')
    fields = [
        Field('page_count', [(P + ' Pages', pages)]),
        Field('pdf_version', [(P + ' PDF version', ver)]),
        Field('encrypted', [(P + ' Encrypted', enc.startswith('yes') if enc is not ABSENT else ABSENT)]),
    ]
    sizes = {int(n): (float(w), float(h)) for n, w, h in
             re.findall(r'^Page\s+(\d+) size:\s+([\d.]+) x ([\d.]+) pts', out, re.M)}
    rots = {int(n): int(r) for n, r in re.findall(r'^Page\s+(\d+) rot:\s+(-?\d+)', out, re.M)}
    boxes = {int(n): tuple(map(float, b)) for n, *b in
             re.findall(r'^Page\s+(\d+) MediaBox:\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)', out, re.M)}
    for n in sorted(sizes):
        i = n - 1
        w, h = sizes[n]
        box = boxes.get(n)
        fields.append(Field(f'pages[{i}].width_pt', [(P + ' size', w), (P + ' MediaBox', box[2] - box[0] if box else ABSENT)], 'pt'))
        fields.append(Field(f'pages[{i}].height_pt', [(P + ' size', h), (P + ' MediaBox', box[3] - box[1] if box else ABSENT)], 'pt'))
        fields.append(Field(f'pages[{i}].rotation', [(P + ' rot', rots.get(n, ABSENT) % 360 if n in rots else ABSENT)]))
    return fields


def pdf_refs(rel):
    blocks = parse_blocks(os.path.join(REF, rel) + '.pdfinfo.txt')
    pages = [b for b in blocks if b[0] == 'pages']
    if not pages:
        return None
    title, out, rc = pages[-1]     # with the user password when the file needs one
    if rc != 0:
        err = out.strip().splitlines()[-1] if out.strip() else f'exit {rc}'
        return FailExpected({'corrupt'}, f'pdfinfo fails: {err}')
    return pdfinfo_fields(out)


class FailExpected:
    """The references say the file is unreadable: our answer must be a failure of these kinds."""

    def __init__(self, kinds, why):
        self.kinds = kinds
        self.why = why


# ---- dicom ----------------------------------------------------------------------------------

TS_BY_ENCODING = {(True, True): '1.2.840.10008.1.2', (False, True): '1.2.840.10008.1.2.1',
                  (False, False): '1.2.840.10008.1.2.2'}
DICOM_TAG_CHECK = ['Manufacturer', 'StudyDate', 'SamplesPerPixel', 'BitsStored', 'PixelRepresentation',
                   'SliceThickness']


def empty_to_none(v):
    return None if v == '' else v


def dicom_refs(rel):
    r = load_json(os.path.join(REF, rel) + '.pydicom.json')
    t = r.get('tags') or {}
    P = 'pydicom'
    if r.get('transfer_syntax'):
        ts = ('pydicom file meta TransferSyntaxUID', r['transfer_syntax']['uid'])
    else:
        enc = tuple(r.get('read_encoding_implicit_vr_little_endian') or ())
        ts = ('pydicom original_encoding (no file meta: the encoding the data set is in)',
              TS_BY_ENCODING.get(enc, ABSENT))

    def uid(key):
        v = t.get(key)
        return v['uid'] if isinstance(v, dict) else (v if v is not None else None)

    def tag(key, absent_means=None, label_absent='absent'):
        if key in t:
            return (f'{P} {key}', empty_to_none(t[key]))
        return (f'{P} ({key} {label_absent})', absent_means)

    fields = [
        Field('transfer_syntax_uid', [ts]),
        Field('sop_class_uid', [(f'{P} SOPClassUID', uid('SOPClassUID'))]),
        Field('sop_instance_uid', [(f'{P} SOPInstanceUID', uid('SOPInstanceUID'))]),
        Field('modality', [tag('Modality')]),
        Field('rows', [tag('Rows')]),
        Field('columns', [tag('Columns')]),
        Field('number_of_frames', [tag('NumberOfFrames', 1, 'absent = 1 frame')]),
        Field('bits_allocated', [tag('BitsAllocated')]),
        Field('photometric_interpretation', [tag('PhotometricInterpretation')]),
        Field('pixel_spacing', [tag('PixelSpacing')], 'float'),
    ]
    tag_fields = [Field(f'tags.{k}', [tag(k)], 'float') for k in DICOM_TAG_CHECK if k in t]
    phi = {k: v for k, v in t.items() if k in PHI_KEYWORDS}
    return fields, tag_fields, phi


def dicom_compare(rel, ours_md, tally, verbose):
    fields, tag_fields, phi = dicom_refs(rel)
    ours_tags = (ours_md or {}).get('tags') or {}
    # the allow-list is configurable: compare only the reference tags that we chose to emit
    tag_fields = [f for f in tag_fields if f.name[5:] in ours_tags]
    for f in tag_fields:
        ours = ours_tags.get(f.name[5:])
        if ours == '':
            ours_tags[f.name[5:]] = None
    compare_fields(rel, ours_md, fields + tag_fields, tally, verbose)
    # privacy: no identifying keyword, and no identifying value, anywhere in the answer
    tally.fields += 1
    leaks = sorted(k for k in ours_tags if k in PHI_KEYWORDS)
    values = {str(v) for v in phi.values() if isinstance(v, str) and len(v.strip('^ ')) >= 3}
    blob = json.dumps(ours_md, ensure_ascii=False)
    leaks += sorted(v for v in values if json.dumps(v, ensure_ascii=False) in blob)
    if leaks:
        tally.differ += 1
        tally.add('DIFF', f'{rel} no_phi: identifying data emitted: {", ".join(leaks)}')
    else:
        tally.agree += 1
        if verbose:
            tally.add('ok', f'{rel} no_phi: none of {sorted(phi)} emitted')


# ---- text -----------------------------------------------------------------------------------

TEXT_ENC = {'utf-8': 'utf-8', 'utf-16-le': 'utf-16le', 'utf-16-be': 'utf-16be',
            'windows-1252': 'windows-1252', 'ascii': OneOf('utf-8', 'ascii', 'us-ascii')}
BOM_LEN = {'utf-8': 3, 'utf-16-le': 2, 'utf-16-be': 2}


def line_ending_of(counts):
    kinds = [k for k in ('lf', 'crlf', 'cr') if counts.get(k)]
    return 'none' if not kinds else kinds[0] if len(kinds) == 1 else 'mixed'


def file_b_text(fb):
    """(encoding, line_ending) as `file -b` states them, ABSENT where it says nothing."""
    if not fb or 'text' not in fb:
        return ABSENT, ABSENT
    enc = ABSENT
    if 'UTF-8' in fb:
        enc = 'utf-8'
    elif 'UTF-16, little-endian' in fb:
        enc = 'utf-16le'
    elif 'UTF-16, big-endian' in fb:
        enc = 'utf-16be'
    elif fb.startswith('ASCII text'):
        enc = OneOf('utf-8', 'ascii', 'us-ascii')
    m = re.search(r'with ([A-Z, ]+) line terminators', fb)
    if m:
        kinds = [k.strip() for k in m.group(1).split(',')]
        le = 'mixed' if len(kinds) > 1 else kinds[0].lower()
    elif 'with no line terminators' in fb:
        le = 'none'
    else:
        le = 'lf'
    return enc, le


def text_refs(rel):
    r = load_json(os.path.join(REF, rel) + '.text.json')
    b = open(os.path.join(FIX, rel), 'rb').read()
    s = b[BOM_LEN.get(r['bom'], 0) if r['bom'] else 0:].decode(r['written_encoding'], errors='replace')
    le = r['line_endings']
    by_terminators = sum(le.values()) + (0 if r['ends_with_newline'] or not s else 1)
    fb_enc, fb_le = file_b_text(r.get('file_b'))
    S = 'reference.sh summary'
    return [
        Field('encoding', [(f'{S} written_encoding', TEXT_ENC.get(r['written_encoding'], r['written_encoding'])),
                           ('file -b', fb_enc)]),
        Field('has_bom', [(f'{S} bom', r['bom'] is not None),
                          ('file -b', ('with BOM' in r['file_b'] or 'UTF-16' in r['file_b']) if fb_enc is not ABSENT else ABSENT)]),
        Field('char_count', [(f'{S} chars_without_bom', r['chars_without_bom'])]),
        Field('line_count', [(f'{S} lines (str.splitlines)', r['lines']),
                             (f'{S} line_endings (+1 if unterminated)', by_terminators)]),
        Field('word_count', [('python str.split() of the decoded text (not stored by reference.sh)', len(s.split()))]),
        Field('line_ending', [(f'{S} line_endings', line_ending_of(le)), ('file -b', fb_le)]),
    ]


# ---- hostile --------------------------------------------------------------------------------

def hostile_refs(name, data_type):
    """Fields for a hostile file that may succeed, from the tools' blocks in reference/hostile/."""
    rel = 'hostile/' + name
    blocks = {t: (out, rc) for t, out, rc in parse_blocks(os.path.join(REF, rel) + '.txt')}
    file_b = blocks.get('file', ('', 1))[0].strip()
    ex = json_from_output(blocks.get('exiftool', ('', 1))[0])
    ex = ex[0] if isinstance(ex, list) and ex else {}
    if data_type == 'image':
        fields = image_fields(rel, ex, None, file_b)
        return fields + derived_display(rel, fields)
    if data_type == 'video':
        out, rc = blocks.get('ffprobe', ('', 1))
        probe = json_from_output(out)
        return video_fields(rel, probe) if rc == 0 and probe else None
    if data_type == 'pdf':
        out, rc = blocks.get('pdfinfo', ('', 1))
        return pdfinfo_fields(out) if rc == 0 else None
    if data_type == 'text':
        E = 'exiftool'
        nl = ex.get('Newlines', ABSENT)
        le = {'\n': 'lf', '\r\n': 'crlf', '\r': 'cr'}.get(nl, ABSENT) if nl is not ABSENT else ABSENT
        ascii_ = ex.get('MIMEEncoding') == 'us-ascii'
        fb_enc, fb_le = file_b_text(file_b)
        return [
            Field('encoding', [(f'{E} MIMEEncoding', OneOf('utf-8', 'ascii', 'us-ascii') if ascii_ else ABSENT),
                               ('file -b', fb_enc)]),
            Field('has_bom', [(f'{E} (us-ascii has no BOM)', False if ascii_ else ABSENT)]),
            Field('char_count', [(f'{E} FileSize (us-ascii: one byte per char)', ex.get('FileSize', ABSENT) if ascii_ else ABSENT)]),
            Field('line_count', [(f'{E} LineCount', ex.get('LineCount', ABSENT))]),
            Field('word_count', [(f'{E} WordCount', ex.get('WordCount', ABSENT))]),
            Field('line_ending', [(f'{E} Newlines', le), ('file -b', fb_le)]),
        ]
    return None


# ---------------------------------------------------------------------------------------------
# running our tool
# ---------------------------------------------------------------------------------------------

def run_tool(binary, rels, timeout, extra=()):
    """One `extract` run over all files; returns ({rel: answer}, diagnostics)."""
    args = [binary, 'extract', *extra] + [os.path.join('fixtures', r) for r in rels]
    diag = []
    try:
        p = subprocess.run(args, cwd=ROOT, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        print(f'crosscheck: cannot run {binary} (build it with `cargo build`, or pass --bin)', file=sys.stderr)
        sys.exit(2)
    except subprocess.TimeoutExpired as e:
        diag.append(f'extract did not finish within {timeout} s')
        p = subprocess.CompletedProcess(args, -1, e.stdout or b'', e.stderr or b'')
    if p.returncode not in (0, 1):
        diag.append(f'extract exited with status {p.returncode} (0 or 1 expected)')
    answers = {}
    for n, line in enumerate(p.stdout.decode('utf-8', 'replace').splitlines(), 1):
        if not line.strip():
            continue
        try:
            a = json.loads(line)
        except ValueError:
            diag.append(f'stdout line {n} is not JSON: {line[:120]}')
            continue
        path = os.path.normpath(str(a.get('path', '')))
        rel = os.path.relpath(path, 'fixtures') if not os.path.isabs(path) else os.path.relpath(path, FIX)
        if rel in answers:
            diag.append(f'two answers for {rel}')
        answers[rel] = a
    return answers, diag


def rerun_alone(binary, rel, timeout):
    try:
        p = subprocess.run([binary, 'extract', os.path.join('fixtures', rel)], cwd=ROOT,
                           capture_output=True, timeout=timeout)
        err = p.stderr.decode('utf-8', 'replace').strip().splitlines()
        return f'alone: exit {p.returncode}, {len(p.stdout.splitlines())} line(s)' + (f', stderr: {err[-1][:160]}' if err else '')
    except subprocess.TimeoutExpired:
        return f'alone: no answer within {timeout} s'


# ---------------------------------------------------------------------------------------------
# per-file checks
# ---------------------------------------------------------------------------------------------

def describe_failure(a):
    e = a.get('error') or {}
    return f'status {a.get("status")} ({e.get("kind")}: {e.get("message")})'


def count_all_differ(rel, fields, reason, tally):
    n = len(fields)
    tally.fields += n
    tally.differ += n
    tally.add('DIFF', f'{rel}: {reason}; {n} field(s) not compared ({", ".join(f.name for f in fields)})')


def contract_notes(rel, data_type, md, tally):
    keys = CONTRACT.get(data_type)
    if not keys or not isinstance(md, dict):
        return
    missing = [k for k in keys if k not in md]
    extra = [k for k in md if k not in keys]
    if missing:
        tally.add('NOTE', f'{rel}: metadata lacks contract field(s) {missing}')
    if extra:
        tally.add('NOTE', f'{rel}: metadata has field(s) outside the contract {extra}')


def check_typed(rel, data_type, answer, tally, verbose):
    """A fixture of a known type: our answer against the references."""
    try:
        if data_type == 'image':
            fields = image_refs(rel)
        elif data_type == 'video':
            fields = video_refs(rel)
        elif data_type == 'audio':
            fields = audio_refs(rel)
        elif data_type == 'pdf':
            fields = pdf_refs(rel)
        elif data_type == 'dicom':
            # without an answer, only the fixed fields count (which tags we emit is configurable)
            fields = dicom_refs(rel)[0] + [Field('no_phi', [])]
        elif data_type == 'text':
            fields = text_refs(rel)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        tally.fields += 1
        tally.differ += 1
        tally.add('DIFF', f'{rel}: no usable reference ({type(e).__name__}: {e}); rerun fixtures/reference.sh')
        return
    if isinstance(fields, FailExpected):
        tally.fields += 1
        kind = (answer.get('error') or {}).get('kind') if answer else None
        if answer and answer.get('status') == 'failed' and kind in fields.kinds:
            tally.agree += 1
            if verbose:
                tally.add('ok', f'{rel} outcome: failed {kind} ({fields.why})')
        else:
            tally.differ += 1
            got = describe_failure(answer) if answer and answer.get('status') == 'failed' else 'succeeded'
            tally.add('DIFF', f'{rel} outcome: ours {got}; expected failed {sorted(fields.kinds)} ({fields.why})')
        return
    if fields is None:
        tally.add('NOTE', f'{rel}: reference holds no comparable answer')
        return
    if answer is None:
        count_all_differ(rel, fields, 'no answer line', tally)
        return
    if answer.get('status') != 'succeeded':
        count_all_differ(rel, fields, describe_failure(answer), tally)
        return
    if answer.get('data_type') != data_type:
        count_all_differ(rel, fields, f'answered as data_type {answer.get("data_type")!r}, expected {data_type!r}', tally)
        return
    md = answer.get('metadata') or {}
    contract_notes(rel, data_type, md, tally)
    if data_type == 'dicom':
        dicom_compare(rel, md, tally, verbose)
    else:
        compare_fields(rel, md, fields, tally, verbose)


def check_hostile(name, answer, tally, verbose):
    rel = 'hostile/' + name
    rule = HOSTILE.get(name)
    tally.fields += 1     # the outcome
    if rule is None:
        tally.differ += 1
        tally.add('DIFF', f'{rel}: not in the HOSTILE table of crosscheck.py; say what it may produce')
        return
    if answer is None:
        tally.differ += 1
        tally.add('DIFF', f'{rel} outcome: NO ANSWER LINE (every file must get exactly one)')
        return
    status = answer.get('status')
    kind = (answer.get('error') or {}).get('kind')
    policy, why = rule['policy'], rule['why']
    if status == 'failed':
        if policy in ('fail', 'either') and kind in rule['kinds']:
            tally.agree += 1
            tally.add('outcome', f'{rel}: failed {kind} -- accepted ({policy}: {why})')
        else:
            tally.differ += 1
            want = f'failed {sorted(rule["kinds"])}' if policy == 'fail' else (
                f'succeeded as {rule["data_type"]}' if policy == 'succeed'
                else f'failed {sorted(rule["kinds"])} or succeeded as {rule["data_type"]}')
            tally.add('DIFF', f'{rel} outcome: ours {describe_failure(answer)}; expected {want} ({why})')
        return
    if status != 'succeeded' or policy == 'fail':
        tally.differ += 1
        tally.add('DIFF', f'{rel} outcome: ours {status} as {answer.get("data_type")}; expected failed '
                          f'{sorted(rule.get("kinds", []))} ({why})')
        return
    if answer.get('data_type') != rule['data_type']:
        tally.differ += 1
        tally.add('DIFF', f'{rel} outcome: ours succeeded as {answer.get("data_type")}; expected {rule["data_type"]} ({why})')
        return
    fields = hostile_refs(name, rule['data_type'])
    tally.agree += 1
    tally.add('outcome', f'{rel}: succeeded as {rule["data_type"]} -- accepted ({policy}: {why}); '
                         f'fields checked against the header below')
    if not fields:
        tally.add('NOTE', f'{rel}: no tool read it, so its fields are not compared')
        return
    md = answer.get('metadata') or {}
    contract_notes(rel, rule['data_type'], md, tally)
    compare_fields(rel, md, fields, tally, verbose)


# ---------------------------------------------------------------------------------------------

def list_fixtures(types):
    out = []
    for t in types:
        d = os.path.join(FIX, t)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(SKIP_SUFFIXES) or not os.path.isfile(os.path.join(d, name)):
                continue
            out.append((t, name))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bin', default=os.path.join(ROOT, 'target', 'debug', 'asset-worker'),
                    help='the asset-worker binary (default: target/debug/asset-worker)')
    ap.add_argument('--types', default=','.join(TYPES), help='comma-separated subset of ' + ','.join(TYPES))
    ap.add_argument('--timeout', type=float, default=600, help='seconds for the whole extract run')
    ap.add_argument('-v', '--verbose', action='store_true', help='also list the fields that agree')
    args = ap.parse_args()
    types = [t for t in args.types.split(',') if t]
    bad = [t for t in types if t not in TYPES]
    if bad:
        ap.error(f'unknown type(s) {bad}')
    binary = os.path.abspath(args.bin)

    fixtures = list_fixtures(types)
    rels = [f'{t}/{n}' for t, n in fixtures]
    answers, diag = run_tool(binary, rels, args.timeout)
    shown = os.path.relpath(binary, ROOT) if binary.startswith(ROOT + os.sep) else binary
    print(f'crosscheck: {shown} extract over {len(rels)} fixtures '
          f'in fixtures/{{{",".join(types)}}}')
    for d in diag:
        print(f'  ! {d}')
    unexpected = sorted(set(answers) - set(rels))
    for u in unexpected:
        print(f'  ! answer for a path that was not asked for: {u}')

    tallies = {}
    for t, name in fixtures:
        rel = f'{t}/{name}'
        tally = tallies.setdefault(t, Tally())
        tally.files += 1
        answer = answers.get(rel)
        if answer is None:
            tally.add('NOTE', f'{rel}: missing from the batch run; {rerun_alone(binary, rel, 120)}')
        if t == 'hostile':
            check_hostile(name, answer, tally, args.verbose)
        else:
            check_typed(rel, t, answer, tally, args.verbose)

    if 'video' in types:
        # Frames counted on request: the MKV/WebM/TS files again with --count-frames, their
        # frame_count against ffprobe's packet count and frame_rate_mode against its timestamps.
        counted = [r for r in rels if r.startswith('video/') and r.endswith(COUNTED)]
        answers, diag2 = run_tool(binary, counted, args.timeout, ['--count-frames'])
        for d in diag2:
            print(f'  ! --count-frames: {d}')
        diag += diag2
        label = 'video --count-frames'
        types = types + [label]
        tally = tallies.setdefault(label, Tally())
        for rel in counted:
            tally.files += 1
            probe = load_json(os.path.join(REF, rel) + '.ffprobe.json')
            v, _ = pick_streams(probe)
            fields = [Field('frame_count', [('ffprobe nb_read_packets (-count_packets)',
                                             to_int((v or {}).get('nb_read_packets')))]),
                      Field('frame_rate_mode', [('ffprobe packet timestamps (sorted; steps within a tick '
                                                 'or 1 ms = constant)', packets_mode(rel))])]
            answer = answers.get(rel)
            if answer is None or answer.get('status') != 'succeeded':
                count_all_differ(rel, fields, describe_failure(answer) if answer else 'no answer line', tally)
                continue
            compare_fields(rel, answer.get('metadata') or {}, fields, tally, args.verbose)

    order = {'DIFF': 0, 'KNOWN': 1, 'DESIGN': 2, 'outcome': 3, 'NOTE': 4, 'ok': 5}
    for t in types:
        tally = tallies.get(t)
        if not tally:
            continue
        print(f'\n== {t}: {tally.files} files, {tally.fields} fields: {tally.agree} agree, '
              f'{tally.differ} differ, {tally.known} known-wrong-reference, {tally.by_design} by design')
        for tag, text in sorted(tally.lines, key=lambda x: order.get(x[0], 9)):
            print(f'  {tag:<7} {text}')

    print()
    header = (f'{"type":<8} {"files":>5} {"fields":>7} {"agree":>6} {"differ":>7} '
              f'{"known-wrong-ref":>16} {"by-design":>10}')
    print(header)
    print('-' * len(header))
    tot = Tally()
    for t in types:
        x = tallies.get(t)
        if not x:
            continue
        print(f'{t:<8} {x.files:>5} {x.fields:>7} {x.agree:>6} {x.differ:>7} {x.known:>16} {x.by_design:>10}')
        for k in ('files', 'fields', 'agree', 'differ', 'known', 'by_design'):
            setattr(tot, k, getattr(tot, k) + getattr(x, k))
    print('-' * len(header))
    print(f'{"total":<8} {tot.files:>5} {tot.fields:>7} {tot.agree:>6} {tot.differ:>7} {tot.known:>16} '
          f'{tot.by_design:>10}')
    print(f'\ncrosscheck: {tot.agree} fields agree, {tot.differ} differ, {tot.known} known-wrong-reference, '
          f'{tot.by_design} differ by design')
    return 1 if tot.differ or diag else 0


if __name__ == '__main__':
    sys.exit(main())
