//! ISO base media file format (MP4, MOV, HEIF) box reading. Being written: see issue 2.
