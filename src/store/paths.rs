//! Where things live in a data directory.

use std::path::{Path, PathBuf};

/// The files of a data directory (`--data-dir`, default `./data`).
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    /// `DIR/log/`: the segments.
    pub log: PathBuf,
    /// `DIR/index.redb`.
    pub index: PathBuf,
    /// `DIR/candles.sqlite`, or `--projection PATH`.
    pub projection: PathBuf,
    /// `DIR/lock`.
    pub lock: PathBuf,
}

impl Paths {
    /// `DIR/log/base.json`: the log base, when older history was pruned (src/store/base.rs).
    pub fn base_manifest(&self) -> PathBuf {
        self.log.join("base.json")
    }
    /// `DIR/log/base.sqlite.zst`: the snapshot the log base starts from.
    pub fn base_snapshot(&self) -> PathBuf {
        self.log.join("base.sqlite.zst")
    }

    /// Refuses a data directory that does not exist: the caller named the
    /// wrong one (a usage error, exit 2) or has not run `init`.
    pub fn require_dir(&self) -> crate::error::Result<()> {
        if self.root.is_dir() {
            return Ok(());
        }
        let d = self.root.display();
        Err(crate::error::Error::Usage(format!("data directory {d} does not exist; create it with `candlelog --data-dir {d} init`")))
    }

    pub fn new(root: &Path, projection: Option<&Path>) -> Paths {
        Paths {
            root: root.to_path_buf(),
            log: root.join("log"),
            index: root.join("index.redb"),
            projection: projection.map_or_else(|| root.join("candles.sqlite"), Path::to_path_buf),
            lock: root.join("lock"),
        }
    }
}
