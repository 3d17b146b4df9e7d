//! The frames between the worker and a parser child, over the child's stdin and stdout: a tag
//! byte, a little-endian `u32` length, the payload. Control frames carry JSON; `Data` carries
//! the bytes of a range as they are, so serving a range costs one copy, not an encoding.
//!
//! ```text
//! child                                   worker
//!   Ready {protections}   ───────────▶     (once, after lock-down)
//!                         ◀───────────    Job {size, options, cpu_seconds}
//!                         ◀───────────    Data bytes at 0 | Failed   (unasked, if size > 0)
//!   Read {offset, need, want} ───────▶
//!                         ◀───────────    Data bytes | Failed {error}
//!   …
//!   Answer {outcome, retire} ────────▶     (then the next Job, or EOF)
//! ```

use std::io::{self, Read, Write};

use bytes::Buf;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::extract::{ExtractOptions, Extracted};
use crate::job::ErrorBody;

/// The child is locked down and waits for a job (JSON [`super::Protections`]).
pub const READY: u8 = b'H';
/// A job for the child (JSON [`JobRequest`]).
pub const JOB: u8 = b'J';
/// The child asks for a range (24 bytes, little-endian `u64`s): its offset, the bytes the
/// parser needs now, and the most the child would take (what the worker already holds).
pub const READ: u8 = b'R';
/// The bytes of the range asked for (fewer only at the object's end).
pub const DATA: u8 = b'D';
/// The range could not be had (JSON [`ErrorBody`]).
pub const FAILED: u8 = b'F';
/// The child's answer to the job (JSON [`JobAnswer`]).
pub const ANSWER: u8 = b'A';

/// The largest range a child may ask for at once.
pub const MAX_READ_BYTES: u64 = 8 * 1024 * 1024;
/// The largest frame either side accepts: one answer, whose largest part is a PDF's page list.
pub const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// What the worker asks of a child: extract the metadata of an object of `size` bytes, read
/// through `Read` frames, within `cpu_seconds` of CPU time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRequest {
    pub size: u64,
    pub options: ExtractOptions,
    /// The CPU-time backstop behind the worker's wall clock (whole seconds).
    pub cpu_seconds: u64,
}

/// The child's answer: what it extracted (or why not), and whether it must be replaced (a
/// parser panicked: what it left behind can't be trusted for the next job).
#[derive(Debug, Serialize, Deserialize)]
pub struct JobAnswer {
    pub outcome: Result<Extracted, ErrorBody>,
    pub retire: bool,
}

/// A range request: the bytes at `offset`, at least `need` of them (fewer only at the end),
/// and up to `want` if the worker holds them already. `need` decides what is fetched, so a
/// child's window costs no download its parser did not ask for; `want` spares round trips
/// when the bytes are at hand (a local file, an object read whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    pub offset: u64,
    pub need: u64,
    pub want: u64,
}

impl ReadRequest {
    pub fn encode(&self) -> [u8; 24] {
        let mut payload = [0; 24];
        payload[..8].copy_from_slice(&self.offset.to_le_bytes());
        payload[8..16].copy_from_slice(&self.need.to_le_bytes());
        payload[16..].copy_from_slice(&self.want.to_le_bytes());
        payload
    }

    /// The request a payload holds, if it is one; `need` and `want` bounded by
    /// [`MAX_READ_BYTES`], `want` at least `need`.
    pub fn decode(payload: &[u8]) -> Option<ReadRequest> {
        let word = |at: usize| Some(u64::from_le_bytes(payload.get(at..at + 8)?.try_into().ok()?));
        if payload.len() != 24 {
            return None;
        }
        let need = word(8)?.min(MAX_READ_BYTES);
        Some(ReadRequest { offset: word(0)?, need, want: word(16)?.clamp(need, MAX_READ_BYTES) })
    }
}

fn header(tag: u8, len: usize) -> io::Result<[u8; 5]> {
    let len = u32::try_from(len)
        .ok()
        .filter(|len| *len <= MAX_FRAME_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut header = [tag, 0, 0, 0, 0];
    header[1..].copy_from_slice(&len.to_le_bytes());
    Ok(header)
}

fn frame_len(header: &[u8; 5]) -> io::Result<usize> {
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {len} bytes")));
    }
    Ok(len as usize)
}

/// Writes one frame (the child's side: blocking), in one write: the worker then wakes once
/// per frame, not once for its header and again for its payload. The child's frames are
/// small (a read request, an answer), so the copy costs nothing.
pub fn write_frame(out: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.extend_from_slice(&header(tag, payload.len())?);
    frame.extend_from_slice(payload);
    out.write_all(&frame)?;
    out.flush()
}

/// Reads one frame (the child's side: blocking); `None` at a clean end of input.
pub fn read_frame(input: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match input.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0; frame_len(&header)?];
    input.read_exact(&mut payload)?;
    Ok(Some((header[0], payload)))
}

/// Writes one frame (the worker's side).
pub async fn send(out: &mut (impl AsyncWrite + Unpin), tag: u8, payload: &[u8]) -> io::Result<()> {
    // Header and payload in one vectored write, without copying a window of data.
    let header = header(tag, payload.len())?;
    out.write_all_buf(&mut Buf::chain(&header[..], payload)).await?;
    out.flush().await
}

/// Reads one frame (the worker's side); an end of input is an error: a child that closes its
/// stdout has died or broken the protocol.
pub async fn receive(input: &mut (impl AsyncRead + Unpin)) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    input.read_exact(&mut header).await?;
    let mut payload = vec![0; frame_len(&header)?];
    input.read_exact(&mut payload).await?;
    Ok((header[0], payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut wire = Vec::new();
        let read = ReadRequest { offset: 7, need: 100, want: 4096 };
        write_frame(&mut wire, READ, &read.encode()).unwrap();
        write_frame(&mut wire, DATA, b"").unwrap();
        let mut input = wire.as_slice();
        let (tag, payload) = read_frame(&mut input).unwrap().unwrap();
        assert_eq!((tag, ReadRequest::decode(&payload)), (READ, Some(read)));
        assert_eq!(read_frame(&mut input).unwrap(), Some((DATA, Vec::new())));
        assert_eq!(read_frame(&mut input).unwrap(), None, "a clean end");
        let huge = [ANSWER, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge.as_slice()).is_err(), "no 4 GiB allocation on a child's word");
        assert_eq!(ReadRequest::decode(&[0; 23]), None);
        let greedy = ReadRequest { offset: 0, need: u64::MAX, want: 1 }.encode();
        let bounded = ReadRequest::decode(&greedy).unwrap();
        assert_eq!((bounded.need, bounded.want), (MAX_READ_BYTES, MAX_READ_BYTES));
    }
}
