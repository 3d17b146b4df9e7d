//! The local provider: files under one configured root folder, for development and demos
//! (`ASSET_WORKER_LOCAL_ROOT`; off when unset). A job's `key` is a relative path; `..`,
//! absolute paths and symbolic links that lead out of the root are refused, so a job can
//! never name `/etc/passwd` or a neighbour's folder.
//!
//! The check resolves links at mint time; a link swapped in between the check and the read
//! could still escape. That is acceptable for a provider meant for trusted development roots,
//! and why production jobs use the cloud providers.

use std::io;
use std::path::{Component, Path, PathBuf};

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
    /// Canonical (links resolved), so that containment is a prefix test.
    root: PathBuf,
}

impl LocalAccess {
    /// A provider over `root`, which must be an existing folder.
    pub fn new(root: &Path) -> Result<Self, AccessError> {
        let misconfigured = |why: String| {
            AccessError::Misconfigured(format!("ASSET_WORKER_LOCAL_ROOT={}: {why}", root.display()))
        };
        let root = root.canonicalize().map_err(|e| misconfigured(e.to_string()))?;
        if !root.is_dir() {
            return Err(misconfigured("not a folder".into()));
        }
        Ok(LocalAccess { root })
    }

    /// The file a job's key names, if it stays inside the root.
    pub fn resolve(&self, key: &str) -> Result<PathBuf, AccessError> {
        let refuse = |why: &str| AccessError::InvalidJob(format!("local key {key:?} is refused: {why}"));
        let relative = Path::new(key);
        if key.is_empty() || key.contains('\0') {
            return Err(refuse("it is empty or holds a NUL byte"));
        }
        for component in relative.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => return Err(refuse("`..` is not allowed")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse("absolute paths are not allowed"));
                }
            }
        }
        let resolved = self.root.join(relative).canonicalize().map_err(|e| match path_error_kind(&e) {
            ErrorKind::NotFound => {
                AccessError::NotFound(format!("no file {key:?} under the local root: {e}"))
            }
            ErrorKind::AccessDenied => {
                AccessError::AccessDenied(format!("the worker may not read {key:?} under the local root"))
            }
            _ => AccessError::Transient(format!("resolving {key:?} under the local root failed: {e}")),
        })?;
        if !resolved.starts_with(&self.root) {
            return Err(refuse("a symbolic link leads out of the local root"));
        }
        if !resolved.is_file() {
            return Err(refuse("not a regular file"));
        }
        Ok(resolved)
    }
}

impl Provider for LocalAccess {
    type Source = LocalSource;

    async fn mint(&self, source: &LocalSource, _request: &MintRequest) -> Result<Fetchable, AccessError> {
        self.resolve(&source.key).map(Fetchable::File)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with_files() -> (tempfile::TempDir, LocalAccess) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("escape.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.txt"), root.join("inside.txt")).unwrap();
        let access = LocalAccess::new(&root).unwrap();
        (dir, access)
    }

    #[test]
    fn relative_keys_and_inner_links_resolve() {
        let (_dir, access) = root_with_files();
        assert!(access.resolve("sub/a.txt").unwrap().ends_with("sub/a.txt"));
        assert!(access.resolve("./sub/a.txt").is_ok());
        assert!(access.resolve("inside.txt").unwrap().ends_with("sub/a.txt"));
    }

    #[test]
    fn escapes_are_refused_as_invalid_jobs() {
        let (_dir, access) = root_with_files();
        for key in ["../outside.txt", "sub/../../outside.txt", "/etc/passwd", "escape.txt", "", "sub", "a\0b"]
        {
            let error = access.resolve(key).unwrap_err();
            assert!(matches!(error, AccessError::InvalidJob(_)), "{key:?}: {error}");
        }
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let (_dir, access) = root_with_files();
        assert!(matches!(access.resolve("sub/nope.txt"), Err(AccessError::NotFound(_))));
    }

    #[test]
    fn a_symbolic_link_loop_is_not_found_not_retried() {
        let (dir, access) = root_with_files();
        let root = dir.path().join("root");
        std::os::unix::fs::symlink(root.join("loop-b"), root.join("loop-a")).unwrap();
        std::os::unix::fs::symlink(root.join("loop-a"), root.join("loop-b")).unwrap();
        let error = access.resolve("loop-a").unwrap_err();
        assert!(matches!(error, AccessError::NotFound(_)), "{error}");
        assert!(!error.kind().retryable());
    }

    #[test]
    fn the_root_must_exist() {
        assert!(matches!(LocalAccess::new(Path::new("/no/such/root")), Err(AccessError::Misconfigured(_))));
    }
}
