//! The `asset-worker extract` command. Being written.
