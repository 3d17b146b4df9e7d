//! The local provider: files under one configured root folder, for development and demos
//! (`ASSET_WORKER_LOCAL_ROOT`; off when unset). A job's `key` is a relative path; `..`,
//! absolute paths and symbolic links that lead out of the root are refused, so a job can
//! never name `/etc/passwd` or a neighbour's folder.
//!
//! The file is opened by the kernel beneath the root (`openat2` with `RESOLVE_BENEATH`, Linux
//! 5.6 and later) and handed on open: no check-then-open gap in which a link swapped in could
//! lead out, as a canonicalised path checked first and opened later would leave. The kernel
//! resolves an absolute link from `/`, so such a link is refused even when it points inside
//! the root; relative links that stay inside are followed.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::{AccessError, Fetchable, MintRequest, Provider};
use crate::job::{ErrorKind, LocalSource};

/// The category of a local path that cannot be resolved or opened, named for what must be
/// fixed. A path that leads to no file is `not_found` whatever the reason: missing, a
/// symbolic link loop (`ELOOP`), a file used as a folder (`ENOTDIR`), a name too long; trying
/// again cannot help, so none of them may be a retryable `internal`. Unreadable is
/// `access_denied`. Anything else (`EIO`, out of file descriptors) says nothing of the path:
/// `internal`.
pub fn path_error_kind(error: &io::Error) -> ErrorKind {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename => {
            ErrorKind::NotFound
        }
        io::ErrorKind::PermissionDenied => ErrorKind::AccessDenied,
        // `io::ErrorKind::FilesystemLoop` is not stable yet.
        _ if error.raw_os_error() == Some(libc::ELOOP) => ErrorKind::NotFound,
        _ => ErrorKind::Internal,
    }
}

/// Files under a root folder.
#[derive(Debug, Clone)]
pub struct LocalAccess {
    /// As configured, for messages.
    root: PathBuf,
    /// The root, held open: what every key is resolved beneath, whatever later happens to
    /// the path that named it.
    root_dir: Arc<OwnedFd>,
}

/// How many times an open is tried again when the kernel could not vouch for its resolution
/// (`EAGAIN`: a rename or mount raced it); more would mean the root is being rewritten.
const OPEN_ATTEMPTS: usize = 8;

impl LocalAccess {
    /// A provider over `root`, which must be an existing folder, on a kernel that can confine
    /// an open beneath it.
    pub fn new(root: &Path) -> Result<Self, AccessError> {
        let misconfigured = |why: String| {
            AccessError::Misconfigured(format!("ASSET_WORKER_LOCAL_ROOT={}: {why}", root.display()))
        };
        let root_dir =
            rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| misconfigured(io::Error::from(e).to_string()))?;
        match rustix::fs::openat2(
            &root_dir,
            ".",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH,
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                return Err(misconfigured(
                    "this kernel (or the container's system-call filter) refuses openat2, which keeps \
                     local reads inside the root; it needs Linux 5.6 or later"
                        .into(),
                ));
            }
            Err(e) => return Err(misconfigured(io::Error::from(e).to_string())),
        }
        Ok(LocalAccess { root: root.to_path_buf(), root_dir: Arc::new(root_dir) })
    }

    /// The regular file a job's key names, opened, and its size, if it stays inside the root.
    pub fn open(&self, key: &str) -> Result<(std::fs::File, u64), AccessError> {
        let refuse = |why: &str| AccessError::InvalidJob(format!("local key {key:?} is refused: {why}"));
        // Checked here too, though the kernel would refuse them, for a message that says why.
        if key.is_empty() || key.contains('\0') {
            return Err(refuse("it is empty or holds a NUL byte"));
        }
        for component in Path::new(key).components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => return Err(refuse("`..` is not allowed")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse("absolute paths are not allowed"));
                }
            }
        }
        // Non-blocking, so that a FIFO does not wait for a writer; it is refused below.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let mut attempts = 0;
        let opened = loop {
            attempts += 1;
            match rustix::fs::openat2(&*self.root_dir, key, flags, Mode::empty(), ResolveFlags::BENEATH) {
                Err(rustix::io::Errno::AGAIN) if attempts < OPEN_ATTEMPTS => continue,
                other => break other,
            }
        };
        let file = match opened {
            Ok(fd) => std::fs::File::from(fd),
            Err(rustix::io::Errno::XDEV) => {
                return Err(refuse("a symbolic link leads out of the local root, or is absolute"));
            }
            Err(errno) => {
                let error = io::Error::from(errno);
                return Err(match path_error_kind(&error) {
                    ErrorKind::NotFound => {
                        AccessError::NotFound(format!("no file {key:?} under the local root: {error}"))
                    }
                    ErrorKind::AccessDenied => AccessError::AccessDenied(format!(
                        "the worker may not read {key:?} under the local root {}",
                        self.root.display()
                    )),
                    _ => AccessError::Transient(format!(
                        "opening {key:?} under the local root failed: {error}"
                    )),
                });
            }
        };
        match file.metadata() {
            Ok(meta) if meta.is_file() => Ok((file, meta.len())),
            Ok(_) => Err(refuse("not a regular file")),
            Err(e) => Err(AccessError::Transient(format!("reading what {key:?} is failed: {e}"))),
        }
    }
}

impl Provider for LocalAccess {
    type Source = LocalSource;

    async fn mint(&self, source: &LocalSource, _request: &MintRequest) -> Result<Fetchable, AccessError> {
        self.open(&source.key).map(|(file, size)| Fetchable::File { file, size })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn root_with_files() -> (tempfile::TempDir, LocalAccess) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("escape.txt")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", root.join("relative-escape.txt")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.join("inside.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.txt"), root.join("absolute-inside.txt")).unwrap();
        let access = LocalAccess::new(&root).unwrap();
        (dir, access)
    }

    fn read(mut file: std::fs::File) -> String {
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn relative_keys_and_inner_links_open() {
        let (_dir, access) = root_with_files();
        for key in ["sub/a.txt", "./sub/a.txt", "inside.txt"] {
            assert_eq!(read(access.open(key).unwrap().0), "a", "{key:?}");
        }
    }

    #[test]
    fn escapes_are_refused_as_invalid_jobs() {
        let (dir, access) = root_with_files();
        rustix::fs::mkfifoat(rustix::fs::CWD, dir.path().join("root/fifo"), Mode::RUSR | Mode::WUSR).unwrap();
        for key in [
            "../outside.txt",
            "sub/../../outside.txt",
            "/etc/passwd",
            "escape.txt",
            "relative-escape.txt",
            "absolute-inside.txt",
            "",
            "sub",
            "fifo",
            "a\0b",
        ] {
            let error = access.open(key).unwrap_err();
            assert!(matches!(error, AccessError::InvalidJob(_)), "{key:?}: {error}");
        }
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let (_dir, access) = root_with_files();
        assert!(matches!(access.open("sub/nope.txt"), Err(AccessError::NotFound(_))));
    }

    #[test]
    fn a_symbolic_link_loop_is_not_found_not_retried() {
        let (dir, access) = root_with_files();
        let root = dir.path().join("root");
        std::os::unix::fs::symlink("loop-b", root.join("loop-a")).unwrap();
        std::os::unix::fs::symlink("loop-a", root.join("loop-b")).unwrap();
        let error = access.open("loop-a").unwrap_err();
        assert!(matches!(error, AccessError::NotFound(_)), "{error}");
        assert!(!error.kind().retryable());
    }

    /// The race a check-then-open leaves: a folder of the root swapped, between the check
    /// and the open, for a link that leads out. Another thread swaps them atomically
    /// (`renameat2(RENAME_EXCHANGE)`) without pause while the provider opens a file in that
    /// folder, until both outcomes were seen many times: every open is the inside file or a
    /// refusal, never the outside one.
    #[test]
    fn a_folder_swapped_for_an_outward_link_is_never_followed() {
        let (dir, access) = root_with_files();
        let root = dir.path().join("root");
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        std::fs::write(dir.path().join("elsewhere/a.txt"), "secret").unwrap();
        std::os::unix::fs::symlink("../elsewhere", root.join("swap")).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (mut opened, mut refused, mut escaped) = (0, 0, 0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    rustix::fs::renameat_with(
                        rustix::fs::CWD,
                        root.join("sub"),
                        rustix::fs::CWD,
                        root.join("swap"),
                        rustix::fs::RenameFlags::EXCHANGE,
                    )
                    .unwrap();
                }
            });
            for _ in 0..1_000_000 {
                match access.open("sub/a.txt").map(|(file, _)| read(file)) {
                    Ok(text) if text == "a" => opened += 1,
                    Ok(_) => escaped += 1,
                    Err(AccessError::InvalidJob(_) | AccessError::NotFound(_)) => refused += 1,
                    Err(_) => break,
                }
                if escaped > 0 || (opened >= 200 && refused >= 200) {
                    break;
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(escaped, 0, "a file outside the root was opened ({opened} inside, {refused} refused)");
        assert!(
            opened >= 200 && refused >= 200,
            "the swap did not race the open: {opened} opened, {refused} refused"
        );
    }

    #[test]
    fn the_root_must_exist() {
        assert!(matches!(LocalAccess::new(Path::new("/no/such/root")), Err(AccessError::Misconfigured(_))));
    }
}
