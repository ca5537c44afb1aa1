//! The one error type of the spool.

use std::path::PathBuf;

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process (or another [`crate::Spool`] in this one) holds the
    /// directory's lock.
    #[error("spool directory {dir} is in use by another process")]
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Under [`crate::WhenFull::Block`], the append's deadline passed before
    /// room was freed.
    #[error("spool is full")]
    Full,
    /// The record is larger than [`crate::MAX_RECORD_BYTES`].
    #[error("record of {len} bytes is too large")]
    TooLarge {
        /// The record's length.
        len: usize,
    },
}

impl SpoolError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
