//! Fetching by signed URL, on the worker's runtime, through a real parser child, against SeaweedFS (real SigV4
//! checks, S3's Range/ETag/416 semantics): a fetched object gives the local file's metadata,
//! costs only the bytes its parser reads, and fails in the categories the pipeline acts on,
//! without the signature in any message and without a byte left in the temp dir.
//! `python3 -m http.server` stands in for a store that ignores Range; a scripted socket for
//! one that fails in passing.
//!
//! `bench_bytes_fetched_per_data_type` (ignored; `bench/fetch.sh` runs it) prints the table
//! of bytes fetched versus object size.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use asset_worker::access::SignedUrl;
use asset_worker::fetch::{FetchSettings, Fetcher, PRIVATE_DIR_NAME, RemoteFile};
use asset_worker::job::ErrorKind;
use asset_worker::pipeline::Extraction;

use super::peers::{Seaweed, unique};
use super::root;

const MIB: u64 = 1024 * 1024;

/// An object key no other test (or earlier run) uses.
fn unique_key(test: &str, file: &str) -> String {
    format!("fetch/{}/{file}", unique(test))
}

impl Seaweed {
    /// Uploads a fixture under a fresh key and signs a GET for it.
    fn signed_fixture(&self, test: &str, fixture: &str) -> SignedUrl {
        let key = unique_key(test, fixture.rsplit('/').next().unwrap());
        self.upload_file(&key, &root().join(fixture));
        self.presign(&key, Duration::from_secs(300))
    }
}

/// A temp dir of the test's own, as the configured temp dir of the fetch.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new() -> Self {
        TempDir(tempfile::tempdir().unwrap())
    }

    fn settings(&self) -> FetchSettings {
        FetchSettings { temp_dir: self.0.path().to_path_buf(), ..FetchSettings::default() }
    }

    /// Nothing of a fetched object outlives the child: the private dir holds no entry.
    fn assert_empty(&self) {
        let private = self.0.path().join(PRIVATE_DIR_NAME);
        let left: Vec<_> =
            std::fs::read_dir(&private).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", private.display());
    }
}

/// Fetches `url` on a runtime and extracts it in a real parser child, as a worker does.
fn extract_url(url: &SignedUrl, fetch: FetchSettings) -> Extraction {
    super::runtime().block_on(async {
        let pool = super::test_pool(1, 0);
        let fetcher = Fetcher::new(&fetch).unwrap();
        let timeout = Duration::from_secs(120);
        asset_worker::pipeline::extract_url(&pool, &fetcher, url.clone(), &Default::default(), timeout).await
    })
}

fn extract_local(fixture: &Path) -> Extraction {
    super::runtime().block_on(async {
        let pool = super::test_pool(1, 0);
        asset_worker::pipeline::extract_file(&pool, fixture, &Default::default(), Duration::from_secs(30))
            .await
    })
}

/// A fetch of `url` alone (no parser), on a runtime of its own.
fn remote_file(url: &SignedUrl, fetch: &FetchSettings) -> (tokio::runtime::Runtime, RemoteFile) {
    (super::runtime(), Fetcher::new(fetch).unwrap().remote(url.clone()))
}

/// The error of an answer that must have failed, checked for secrets on the way.
fn failure(answer: &Extraction, url: &SignedUrl) -> (ErrorKind, String) {
    let error = answer.outcome.as_ref().expect_err("the fetch must fail");
    assert_no_signature(&error.message, url);
    (error.kind, error.message.clone())
}

fn assert_no_signature(message: &str, url: &SignedUrl) {
    let query = url.expose().split_once('?').map_or("", |(_, query)| query);
    for part in query.split('&').filter_map(|pair| pair.split_once('=')).map(|(_, value)| value) {
        if part.len() >= 16 {
            assert!(!message.contains(part), "a URL parameter leaked into {message:?}");
        }
    }
    assert!(!message.contains("X-Amz-"), "{message}");
}

#[test]
fn fetched_fixtures_give_the_local_files_metadata() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let fixtures = [
        "fixtures/image/jpeg_exif_orientation6.jpg",
        "fixtures/image/heic_irot90.heic",
        "fixtures/video/mp4_h264_aac_moov_at_end.mp4",
        "fixtures/video/mkv_h264_aac.mkv",
        "fixtures/audio/mp3_vbr_no_xing.mp3",
        "fixtures/audio/wav_pcm_s16le_stereo_44100.wav",
        "fixtures/pdf/inherited_mediabox_rotate_3pages.pdf",
        "fixtures/dicom/explicit_vr_le_ct_small.dcm",
        "fixtures/text/utf16le_bom.txt",
        // Empty: S3 answers the first ranged GET with 416, which means "0 bytes".
        "fixtures/hostile/empty.bin",
        "fixtures/hostile/truncated_mp4_moov_at_end_2k.mp4",
    ];
    for fixture in fixtures {
        let url = seaweed.signed_fixture("same", fixture);
        let remote = extract_url(&url, temp.settings());
        let local = extract_local(&root().join(fixture));
        assert_eq!(
            serde_json::to_value(&remote.outcome).unwrap(),
            serde_json::to_value(&local.outcome).unwrap(),
            "{fixture}"
        );
        let size = std::fs::metadata(root().join(fixture)).unwrap().len();
        assert_eq!(remote.stats.size_bytes, Some(size), "{fixture}");
        assert!(remote.stats.bytes_fetched <= size, "{fixture}: {:?}", remote.stats);
        temp.assert_empty();
    }
}

/// Writes `fixture` (an MP4 whose `moov` follows its `mdat`) with `pad` more bytes at the end
/// of its `mdat`: the sample offsets stay true, the file is as large as a long video, and the
/// padding is a hole on disk.
fn pad_mdat(fixture: &Path, pad: u64, out: &Path) {
    let bytes = std::fs::read(fixture).unwrap();
    let (mut at, mut moov) = (0usize, None);
    let mut mdat = None;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        match &bytes[at + 4..at + 8] {
            b"mdat" => mdat = Some((at, size)),
            b"moov" => moov = Some(at),
            _ => {}
        }
        assert!(size >= 8, "a top-level box of {size} bytes in {}", fixture.display());
        at += size;
    }
    let ((mdat_at, mdat_size), moov_at) = (mdat.unwrap(), moov.unwrap());
    assert_eq!(mdat_at + mdat_size, moov_at, "moov must directly follow mdat");
    let padded = u32::try_from(mdat_size as u64 + pad).expect("below 4 GiB: no 64-bit box size needed");
    let mut file = File::create(out).unwrap();
    file.write_all(&bytes[..mdat_at]).unwrap();
    file.write_all(&padded.to_be_bytes()).unwrap();
    file.write_all(&bytes[mdat_at + 4..moov_at]).unwrap();
    file.seek(SeekFrom::Current(pad as i64)).unwrap();
    file.write_all(&bytes[moov_at..]).unwrap();
}

#[test]
fn a_large_moov_at_end_mp4_costs_a_small_fraction_of_its_size() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let fixture = root().join("fixtures/video/mp4_h264_aac_moov_at_end.mp4");
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big_moov_at_end.mp4");
    pad_mdat(&fixture, 200 * MIB, &big);
    let key = unique_key("moov-at-end", "big.mp4");
    seaweed.upload_file(&key, &big);
    let url = seaweed.presign(&key, Duration::from_secs(300));

    let remote = extract_url(&url, temp.settings());
    let size = std::fs::metadata(&big).unwrap().len();
    let local = extract_local(&fixture);
    let (remote_meta, local_meta) = (remote.outcome.as_ref().unwrap(), local.outcome.as_ref().unwrap());
    assert_eq!(remote_meta.metadata, local_meta.metadata);
    assert_eq!(remote.stats.size_bytes, Some(size));
    let fraction = remote.stats.bytes_fetched as f64 / size as f64;
    // The first block (ftyp, mdat header) and the block of the moov: 512 KiB of 200 MiB.
    assert!(fraction < 0.02, "{:?} of {size} bytes", remote.stats);
    assert!(remote.stats.requests <= 3, "{:?}", remote.stats);
    eprintln!(
        "moov-at-end MP4: {} of {size} bytes fetched ({:.3} %)",
        remote.stats.bytes_fetched,
        fraction * 100.0
    );
    temp.assert_empty();
}

#[test]
fn the_30000x30000_png_costs_only_its_header_blocks() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let fixture = "fixtures/image/png_huge_30000x30000.png";
    let url = seaweed.signed_fixture("huge-png", fixture);
    // Blocks smaller than the 151 KB file show that the image data is never asked for.
    let block = 16 * 1024;
    let remote = extract_url(&url, FetchSettings { block_bytes: block, ..temp.settings() });
    let metadata = &remote.outcome.as_ref().unwrap().metadata;
    assert_eq!((metadata["width"].as_u64(), metadata["height"].as_u64()), (Some(30000), Some(30000)));
    assert_eq!((remote.stats.bytes_fetched, remote.stats.requests), (block, 1), "{:?}", remote.stats);
    assert_eq!(remote.stats.size_bytes, Some(std::fs::metadata(root().join(fixture)).unwrap().len()));
    temp.assert_empty();
}

#[test]
fn an_object_over_the_cap_is_too_large_before_any_byte_is_read() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let key = unique_key("cap", "big.bin");
    seaweed.upload_bytes(&key, vec![7; MIB as usize]);
    let url = seaweed.presign(&key, Duration::from_secs(300));
    let remote = extract_url(&url, FetchSettings { max_object_bytes: 512 * 1024, ..temp.settings() });
    let (kind, message) = failure(&remote, &url);
    assert_eq!(kind, ErrorKind::TooLarge, "{message}");
    assert!(message.contains("max_object_bytes") && message.contains(&MIB.to_string()), "{message}");
    assert_eq!(remote.stats.bytes_fetched, 0);
    temp.assert_empty();
}

/// `bytes` of text in 64-byte lines (text is read whole: a job holds all of it).
fn text_of(bytes: u64) -> Vec<u8> {
    (0..bytes).map(|i| if i % 64 == 63 { b'\n' } else { b'a' + (i % 26) as u8 }).collect()
}

/// Extracts `url` in a task with a long time limit, once the task is seen waiting for budget.
async fn waiting_for_budget(
    pool: &asset_worker::sandbox::Pool,
    fetcher: &Fetcher,
    url: SignedUrl,
) -> tokio::task::JoinHandle<Extraction> {
    let task = tokio::spawn({
        let (pool, fetcher) = (pool.clone(), fetcher.clone());
        async move {
            let options = asset_worker::extract::ExtractOptions::default();
            let long = Duration::from_secs(120);
            asset_worker::pipeline::extract_url(&pool, &fetcher, url, &options, long).await
        }
    });
    let waiting_since = Instant::now();
    while fetcher.budget_waiting() == 0 {
        assert!(!task.is_finished(), "the job finished without waiting for budget");
        assert!(waiting_since.elapsed() < Duration::from_secs(60), "the job never waited for budget");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task
}

/// The fetch budget bounds what all jobs of a worker hold at once. A job that needs more than
/// is free waits for another to finish, then succeeds; one whose time limit comes while it
/// waits is `transient` (tried again later: the object did nothing wrong), not `timeout`; one
/// that needs more than the whole budget is `too_large` at once. Every byte taken is given
/// back, and nothing is left in the temp dir.
#[test]
fn jobs_share_the_fetch_budget() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    // Text is read whole: each of these needs 3 MiB of a 4 MiB budget.
    let text = text_of(3 * MIB);
    let local_dir = tempfile::tempdir().unwrap();
    let local_path = local_dir.path().join("text.txt");
    std::fs::write(&local_path, &text).unwrap();
    let local = extract_local(&local_path);
    assert!(local.outcome.is_ok(), "{:?}", local.outcome);
    let [url_a, url_b] = ["a.txt", "b.txt"].map(|name| {
        let key = unique_key("budget", name);
        seaweed.upload_bytes(&key, text.clone());
        seaweed.presign(&key, Duration::from_secs(300))
    });
    let settings = FetchSettings { budget_bytes: 4 * MIB, max_fetch_bytes: 4 * MIB, ..temp.settings() };

    super::runtime().block_on(async {
        let pool = super::test_pool(1, 0);
        let fetcher = Fetcher::new(&settings).unwrap();
        let options = asset_worker::extract::ExtractOptions::default();
        // Job A has read all of its object and still holds it.
        let mut a = fetcher.remote(url_a.clone());
        let size = a.open().await.unwrap();
        assert_eq!(a.read_at(0, size as usize).await.unwrap().len() as u64, 3 * MIB);
        assert_eq!(fetcher.budget_in_use(), 3 * MIB);

        // B gets its first block, then waits for more until its time limit.
        let short = Duration::from_secs(2);
        let starved =
            asset_worker::pipeline::extract_url(&pool, &fetcher, url_b.clone(), &options, short).await;
        let (kind, message) = failure(&starved, &url_b);
        assert_eq!(kind, ErrorKind::Transient, "{message}");
        assert!(message.contains("fetch_budget_mb") && message.contains("4 MiB"), "{message}");
        assert_eq!((fetcher.budget_waiting(), fetcher.budget_in_use()), (0, 3 * MIB));

        // With time, B waits until A is done, then reads its whole object.
        let b = waiting_for_budget(&pool, &fetcher, url_b).await;
        drop(a);
        let b = b.await.unwrap();
        assert_eq!(serde_json::to_value(&b.outcome).unwrap(), serde_json::to_value(&local.outcome).unwrap());
        assert_eq!(b.stats.bytes_fetched, 3 * MIB);
        assert_eq!((fetcher.budget_waiting(), fetcher.budget_in_use()), (0, 0));
    });
    temp.assert_empty();

    // More than the whole budget can never come: refused at once.
    let alone = FetchSettings { budget_bytes: MIB, ..settings };
    let refused = extract_url(&url_a, alone);
    let (kind, message) = failure(&refused, &url_a);
    assert_eq!(kind, ErrorKind::TooLarge, "{message}");
    assert!(message.contains("fetch_budget_mb"), "{message}");
    temp.assert_empty();
}

#[test]
fn a_missing_key_is_not_found() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let url = seaweed.presign(&unique_key("missing", "never-uploaded.bin"), Duration::from_secs(300));
    let remote = extract_url(&url, temp.settings());
    let (kind, message) = failure(&remote, &url);
    assert_eq!(kind, ErrorKind::NotFound, "{message}");
    assert!(message.contains("NoSuchKey"), "{message}");
    temp.assert_empty();
}

#[test]
fn a_tampered_signature_is_access_denied() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let url = seaweed.signed_fixture("tampered", "fixtures/image/png_rgb8.png");
    let exposed = url.expose();
    let flipped = if exposed.ends_with('0') { '1' } else { '0' };
    let tampered = SignedUrl::new(format!("{}{flipped}", &exposed[..exposed.len() - 1]), url.expires_at);
    assert!(tampered.expose().contains("X-Amz-Signature="), "the signature is last in the query");
    let remote = extract_url(&tampered, temp.settings());
    let (kind, message) = failure(&remote, &tampered);
    assert_eq!(kind, ErrorKind::AccessDenied, "{message}");
    assert!(!remote.outcome.as_ref().unwrap_err().retryable);
    temp.assert_empty();
}

#[test]
fn an_expired_url_is_access_denied() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let key = unique_key("expired", "png_rgb8.png");
    seaweed.upload_file(&key, &root().join("fixtures/image/png_rgb8.png"));
    let url = seaweed.presign(&key, Duration::from_secs(1));
    std::thread::sleep(Duration::from_secs(2));
    let remote = extract_url(&url, temp.settings());
    let (kind, message) = failure(&remote, &url);
    assert_eq!(kind, ErrorKind::AccessDenied, "{message}");
    temp.assert_empty();
}

#[test]
fn an_object_replaced_while_it_is_read_is_transient() {
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let key = unique_key("replaced", "object.bin");
    seaweed.upload_bytes(&key, vec![1; MIB as usize]);
    let url = seaweed.presign(&key, Duration::from_secs(300));
    let (runtime, mut remote) =
        remote_file(&url, &FetchSettings { block_bytes: 64 * 1024, ..temp.settings() });
    assert_eq!(runtime.block_on(remote.read_at(0, 1)).unwrap(), [1]);
    // Same size, other bytes: only the ETag (If-Match) can tell.
    seaweed.upload_bytes(&key, vec![2; MIB as usize]);
    let fetch = runtime.block_on(remote.read_at(MIB / 2, 1)).unwrap_err();
    assert_eq!(fetch.kind(), ErrorKind::Transient, "{fetch}");
    assert!(fetch.to_string().contains("changed"), "{fetch}");
    assert_eq!(remote.failure(), Some(&fetch));
    // A stitched file is never served: every later read fails too.
    assert!(runtime.block_on(remote.read_at(0, 1)).is_err());
    drop(remote);
    temp.assert_empty();
}

/// `python3 -m http.server`: a store that ignores Range (it always answers 200).
struct IgnoresRange {
    child: Child,
    port: u16,
}

impl IgnoresRange {
    fn serve(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (the test peers need it too)");
        let server = IgnoresRange { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "python3 -m http.server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self, file: &str) -> SignedUrl {
        let url =
            format!("http://127.0.0.1:{}/{file}?X-Amz-Signature=0123456789abcdef0123456789abcdef", self.port);
        SignedUrl::new(url, SystemTime::now() + Duration::from_secs(300))
    }
}

impl Drop for IgnoresRange {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_store_that_ignores_range_gets_one_streamed_download() {
    let temp = TempDir::new();
    let served = tempfile::tempdir().unwrap();
    let fixture = root().join("fixtures/video/mp4_h264_aac_moov_at_end.mp4");
    std::fs::copy(&fixture, served.path().join("clip.mp4")).unwrap();
    let png = root().join("fixtures/image/png_huge_30000x30000.png");
    std::fs::copy(&png, served.path().join("huge.png")).unwrap();
    let server = IgnoresRange::serve(served.path());

    let url = server.url("clip.mp4");
    let remote = extract_url(&url, temp.settings());
    let local = extract_local(&fixture);
    assert_eq!(serde_json::to_value(&remote.outcome).unwrap(), serde_json::to_value(&local.outcome).unwrap());
    let size = std::fs::metadata(&fixture).unwrap().len();
    assert_eq!(
        (remote.stats.bytes_fetched, remote.stats.size_bytes, remote.stats.requests),
        (size, Some(size), 1)
    );
    temp.assert_empty();

    // The cap still holds: Content-Length tells the size before the body is read.
    let url = server.url("huge.png");
    let remote = extract_url(&url, FetchSettings { max_fetch_bytes: 100_000, ..temp.settings() });
    assert_eq!(failure(&remote, &url).0, ErrorKind::TooLarge);
    assert_eq!(remote.stats.bytes_fetched, 0);
    temp.assert_empty();
}

/// A store that ignores Range answers the first request with the whole object: the job waits
/// for a share of the budget as large as its length before it reads the body, and holds none
/// while it waits.
#[test]
fn a_whole_download_waits_for_its_share_of_the_budget() {
    let temp = TempDir::new();
    let served = tempfile::tempdir().unwrap();
    let text = text_of(3 * MIB);
    for name in ["a.txt", "b.txt"] {
        std::fs::write(served.path().join(name), &text).unwrap();
    }
    let local = extract_local(&served.path().join("a.txt"));
    assert!(local.outcome.is_ok(), "{:?}", local.outcome);
    let server = IgnoresRange::serve(served.path());
    let settings = FetchSettings { budget_bytes: 4 * MIB, max_fetch_bytes: 4 * MIB, ..temp.settings() };

    super::runtime().block_on(async {
        let pool = super::test_pool(1, 0);
        let fetcher = Fetcher::new(&settings).unwrap();
        let options = asset_worker::extract::ExtractOptions::default();
        // Job A's whole download holds 3 MiB of the 4.
        let mut a = fetcher.remote(server.url("a.txt"));
        assert_eq!(a.open().await.unwrap(), 3 * MIB);
        assert_eq!(fetcher.budget_in_use(), 3 * MIB);

        // B's first answer tells 3 MiB, which cannot come before its time limit.
        let url_b = server.url("b.txt");
        let short = Duration::from_secs(2);
        let starved =
            asset_worker::pipeline::extract_url(&pool, &fetcher, url_b.clone(), &options, short).await;
        let (kind, message) = failure(&starved, &url_b);
        assert_eq!(kind, ErrorKind::Transient, "{message}");
        assert_eq!(starved.stats.bytes_fetched, 0);
        assert_eq!((fetcher.budget_waiting(), fetcher.budget_in_use()), (0, 3 * MIB));
        // The same wait (3 s, a request's time less), judged against two limits: half of the
        // limit or more is starvation; a short wait at the end of a long limit keeps the job's
        // own `timeout` (a parser that hangs must not be retried for it).
        let mut c = fetcher.remote(server.url("b.txt"));
        assert!(tokio::time::timeout(Duration::from_secs(3), c.open()).await.is_err(), "C did not wait");
        assert!(c.budget_starved(Duration::from_secs(2)).is_some());
        assert!(c.budget_starved(Duration::from_secs(3600)).is_none());
        drop(c);
        assert_eq!((fetcher.budget_waiting(), fetcher.budget_in_use()), (0, 3 * MIB));

        // With time, B waits (holding nothing) until A is done, then downloads its object.
        let b = waiting_for_budget(&pool, &fetcher, url_b).await;
        assert_eq!(fetcher.budget_in_use(), 3 * MIB, "B took budget while it waited");
        drop(a);
        let b = b.await.unwrap();
        assert_eq!(serde_json::to_value(&b.outcome).unwrap(), serde_json::to_value(&local.outcome).unwrap());
        assert_eq!((b.stats.bytes_fetched, b.stats.requests), (3 * MIB, 1));
        assert_eq!((fetcher.budget_waiting(), fetcher.budget_in_use()), (0, 0));
    });
    temp.assert_empty();
}

/// What the scripted store does with one request.
enum Reply {
    /// An error status with an S3 error body naming `code`.
    Error(u16, &'static str),
    /// The asked range (206), cut off after this many body bytes if given.
    Range(Option<usize>),
}

/// A store on a socket that answers each request as `script` says, and records what each
/// request asked.
struct ScriptedStore {
    port: u16,
    seen: Arc<Mutex<Vec<Asked>>>,
}

/// The headers of one request that matter here.
#[derive(Debug, Clone)]
struct Asked {
    range: String,
    if_match: Option<String>,
}

impl ScriptedStore {
    fn serve(object: Vec<u8>, script: impl Fn(usize) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let asked = read_request(&stream);
                log.lock().unwrap().push(asked.clone());
                let _ = answer(&mut stream, &object, &asked.range, script(index));
            }
        });
        ScriptedStore { port, seen }
    }

    fn url(&self) -> SignedUrl {
        let url =
            format!("http://127.0.0.1:{}/bkt/o.bin?X-Amz-Signature=feedfacefeedfacefeedface", self.port);
        SignedUrl::new(url, SystemTime::now() + Duration::from_secs(300))
    }
}

/// The `Range` and `If-Match` of a request (requests here have no body).
fn read_request(stream: &TcpStream) -> Asked {
    let mut reader = BufReader::new(stream);
    let (mut range, mut if_match) = (String::new(), None);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("range:") {
            range = value.trim().to_owned();
        }
        if lower.starts_with("if-match:") {
            if_match = Some(line["if-match:".len()..].trim().to_owned());
        }
        line.clear();
    }
    Asked { range, if_match }
}

fn answer(stream: &mut TcpStream, object: &[u8], range: &str, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Error(status, code) => {
            let body = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>");
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Reply::Range(cut) => {
            let (start, end) = range.strip_prefix("bytes=").and_then(|r| r.split_once('-')).unwrap();
            let start: usize = start.parse().unwrap();
            let end = (end.parse::<usize>().unwrap() + 1).min(object.len());
            let body = &object[start..end];
            write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\n\
                 ETag: \"v1\"\r\nConnection: close\r\n\r\n",
                end - 1,
                object.len(),
                body.len()
            )?;
            stream.write_all(&body[..cut.unwrap_or(body.len()).min(body.len())])
        }
    }
}

#[test]
fn a_store_failing_in_passing_is_retried_then_reported_transient() {
    let store = ScriptedStore::serve(vec![0; 1000], |_| Reply::Error(503, "SlowDown"));
    let temp = TempDir::new();
    let (runtime, mut remote) = remote_file(&store.url(), &temp.settings());
    let started = Instant::now();
    let error = runtime.block_on(remote.open()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient, "{error}");
    assert!(
        error.to_string().contains("HTTP 503 SlowDown") && error.to_string().contains("4 attempts"),
        "{error}"
    );
    assert_no_signature(&error.to_string(), &store.url());
    assert_eq!(remote.stats().requests, 4);
    // Backoff 100 ms → 400 ms → 1.6 s between the four attempts.
    assert!(started.elapsed() >= Duration::from_millis(2100), "{:?}", started.elapsed());
}

#[test]
fn a_range_cut_off_mid_body_is_resumed_without_fetching_a_byte_twice() {
    let object: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // Request 0: the first block; request 1: the rest, cut after 1000 bytes; then whole.
    let store = ScriptedStore::serve(object.clone(), |index| Reply::Range((index == 1).then_some(1000)));
    let temp = TempDir::new();
    let settings = FetchSettings { block_bytes: 64 * 1024, ..temp.settings() };
    let (runtime, mut remote) = remote_file(&store.url(), &settings);
    let mut read = Vec::new();
    loop {
        let bytes = runtime.block_on(remote.read_at(read.len() as u64, 64 * 1024)).unwrap();
        if bytes.is_empty() {
            break;
        }
        read.extend(bytes);
    }
    assert!(read == object, "the bytes read are the object's");
    assert_eq!(remote.stats().bytes_fetched, object.len() as u64, "{:?}", remote.stats());
    let seen = store.seen.lock().unwrap().clone();
    let ranges: Vec<&str> = seen.iter().map(|asked| asked.range.as_str()).collect();
    assert_eq!(ranges[0], "bytes=0-65535");
    let cut = ranges[1].strip_prefix("bytes=65536-").expect("the second range starts at the second block");
    assert_eq!(ranges[2], format!("bytes=66536-{cut}"), "the resumed range starts where the cut was");
    // Every range after the first is tied to the first answer's version.
    assert!(seen[1..].iter().all(|asked| asked.if_match.as_deref() == Some("\"v1\"")), "{seen:?}");
    drop(remote);
    temp.assert_empty();
}

#[test]
fn an_unreachable_store_is_transient_and_names_no_url() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = SignedUrl::new(
        format!("http://127.0.0.1:{port}/bkt/o.bin?X-Amz-Signature=deadbeefdeadbeefdeadbeef"),
        SystemTime::now(),
    );
    let temp = TempDir::new();
    let (runtime, mut remote) = remote_file(&url, &temp.settings());
    let error = runtime.block_on(remote.open()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient, "{error}");
    assert!(error.to_string().contains("could not connect"), "{error}");
    assert_no_signature(&error.to_string(), &url);
    assert!(!error.to_string().contains("bkt/o.bin"), "{error}");
}

/// Bytes fetched versus object size for a typical file of each data type, served by SeaweedFS,
/// and for a ≥ 500 MB moov-at-end MP4. `bench/fetch.sh` makes the files and runs this.
#[test]
#[ignore = "a benchmark: run by bench/fetch.sh"]
fn bench_bytes_fetched_per_data_type() {
    let dir =
        PathBuf::from(std::env::var("ASSET_WORKER_BENCH_FETCH_DIR").expect(
            "ASSET_WORKER_BENCH_FETCH_DIR names the folder of typical files; bench/fetch.sh makes it",
        ));
    let seaweed = Seaweed::connect();
    let temp = TempDir::new();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    // The long video again, its mdat padded to 500 MiB: a real moov, a large object.
    let long = dir.join("long_moov_at_end.mp4");
    let padded_dir = tempfile::tempdir().unwrap();
    if long.is_file() {
        let padded = padded_dir.path().join("long_moov_at_end_padded_500MiB.mp4");
        pad_mdat(&long, (500 * MIB).saturating_sub(std::fs::metadata(&long).unwrap().len()), &padded);
        files.push(padded);
    }
    let mut rows = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let key = unique_key("bench", &name);
        let upload_started = Instant::now();
        seaweed.upload_file(&key, file);
        let upload = upload_started.elapsed();
        let url = seaweed.presign(&key, Duration::from_secs(600));
        let answer = extract_url(&url, temp.settings());
        temp.assert_empty();
        let local = extract_local(file);
        let same =
            serde_json::to_value(&answer.outcome).unwrap() == serde_json::to_value(&local.outcome).unwrap();
        let data_type = match &answer.outcome {
            Ok(extracted) => format!("{:?}", extracted.data_type).to_lowercase(),
            Err(error) => format!("failed: {:?}", error.kind),
        };
        let size = answer.stats.size_bytes.unwrap_or(0);
        rows.push(format!(
            "| {name} | {data_type} | {} | {size} | {} | {:.2} % | {} | {} | {} | {:.1} |",
            if same { "yes" } else { "**no**" },
            answer.stats.bytes_fetched,
            100.0 * answer.stats.bytes_fetched as f64 / size.max(1) as f64,
            answer.stats.requests,
            answer.stats.fetch_ms,
            answer.stats.extract_ms,
            upload.as_secs_f64(),
        ));
    }
    println!(
        "| file | data type | metadata = local file's | object bytes | bytes fetched | fetched | requests | \
         fetch ms | extract ms | upload s |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}
