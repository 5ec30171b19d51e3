//! Chains of delta snapshots in a repository: which snapshot a delta is
//! applied to (its `parent`, down to a full snapshot, the chain's base),
//! building the database a snapshot restores to as one verified step, and
//! choosing, at backup, whether the next snapshot can be a delta
//! (format/repository.md, "Delta snapshots").
//!
//! A snapshot's database is proven by its own manifest: every object of its
//! chain is checked against its manifest's `file_bytes` and `file_blake3` as
//! it streams in, and the database the chain builds against the snapshot's
//! `raw_bytes` and `raw_blake3`, so a chain restores exactly that database or
//! nothing. Every reader (restore, recover, drill, `backup verify --deep`)
//! builds snapshots here.

use std::path::Path;

use super::Repository;
use crate::error::{Error, Result};
use crate::snapshot::pages::PageImage;
use crate::snapshot::{self, SnapshotManifest};

/// The longest chain a reader follows (a writer's cap, `delta_chain_max`, is far below).
pub const MAX_CHAIN: usize = 1000;

/// When a backup's snapshot is a delta instead of a full copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaPolicy {
    /// At most this many deltas after a full snapshot (`delta_chain_max`); 0: every snapshot is full.
    pub chain_max: u32,
    /// A delta holding more than this share of the database's pages (percent) is taken as a full snapshot instead.
    pub max_percent: u32,
}

impl Default for DeltaPolicy {
    fn default() -> DeltaPolicy {
        DeltaPolicy { chain_max: 14, max_percent: 50 }
    }
}

/// The snapshot a delta is applied to; `None` for a full snapshot. Refuses a
/// parent that is not among the readable manifests, is not older, or holds
/// another database than the delta says.
pub fn parent_of<'a>(list: &'a [SnapshotManifest], m: &SnapshotManifest) -> Result<Option<&'a SnapshotManifest>> {
    let Some(parent) = &m.parent else { return Ok(None) };
    let refuse = |why: String| Err(Error::Damaged(format!("snapshot {}: {why}; it cannot be restored", m.file)));
    let Some(p) = list.iter().find(|p| &p.file == parent) else {
        return refuse(format!("its parent {parent} is missing (no readable manifest describes it)"));
    };
    if (p.lsn, p.created_ms) >= (m.lsn, m.created_ms) {
        return refuse(format!("its parent {parent} is not older than it"));
    }
    if m.parent_raw_blake3.as_deref() != Some(p.raw_blake3.as_str()) {
        return refuse(format!("its parent {parent} holds another database (raw_blake3 {}) than it names", p.raw_blake3));
    }
    Ok(Some(p))
}

/// The chain of `m`: its base (a full snapshot) first, `m` last.
pub fn lineage<'a>(list: &'a [SnapshotManifest], m: &'a SnapshotManifest) -> Result<Vec<&'a SnapshotManifest>> {
    let mut chain = vec![m];
    let mut at = m;
    while let Some(p) = parent_of(list, at)? {
        if chain.len() > MAX_CHAIN {
            return Err(Error::Damaged(format!("snapshot {}: its chain is longer than {MAX_CHAIN} snapshots; refused", m.file)));
        }
        chain.push(p);
        at = p;
    }
    chain.reverse();
    Ok(chain)
}

/// Builds snapshots' databases at one path, reusing the one it holds when the
/// next snapshot is a delta of it (`backup verify --deep` checks a chain in
/// one pass of its objects).
#[derive(Default)]
pub struct Builder {
    /// The snapshot whose database `dest` holds, proven.
    held: Option<String>,
}

impl Builder {
    /// Builds the database of `m` at `dest`: the base unpacked, each delta
    /// applied, the result checked against `m`'s `raw_bytes` and
    /// `raw_blake3`. `durable`: fsynced (a restore); else a scratch copy.
    /// On failure `dest` is removed.
    pub fn build(
        &mut self,
        repo: &dyn Repository,
        list: &[SnapshotManifest],
        m: &SnapshotManifest,
        dest: &Path,
        durable: bool,
    ) -> Result<()> {
        let held = self.held.take();
        let built = (|| {
            let chain = lineage(list, m)?;
            let from = held.as_ref().and_then(|h| chain.iter().position(|c| &c.file == h)).filter(|_| dest.exists());
            let rest = match from {
                Some(i) => chain.get(i + 1..).unwrap_or(&[]),
                None => {
                    let (base, rest) = chain.split_first().ok_or_else(|| Error::Failed(format!("snapshot {}: empty chain", m.file)))?;
                    let reader = repo.open_reader(&base.file)?;
                    if durable {
                        snapshot::unpack_to(base, reader, dest)?
                    } else {
                        snapshot::unpack_scratch(base, reader, dest)?
                    }
                    rest
                }
            };
            for d in rest {
                snapshot::delta::apply_delta(d, repo.open_reader(&d.file)?, dest)?;
            }
            if !rest.is_empty() {
                snapshot::delta::check_raw(m, dest)?;
                if durable {
                    let f = std::fs::OpenOptions::new().write(true).open(dest).map_err(|e| Error::io("open", dest, e))?;
                    f.sync_all().map_err(|e| Error::io("fsync", dest, e))?;
                }
            }
            Ok(())
        })();
        match built {
            Ok(()) => self.held = Some(m.file.clone()),
            Err(_) => {
                let _ = std::fs::remove_file(dest);
            }
        }
        built
    }
}

/// Builds the database of snapshot `m` durably at `dest` (restore, recover).
pub fn materialize(repo: &dyn Repository, list: &[SnapshotManifest], m: &SnapshotManifest, dest: &Path) -> Result<()> {
    Builder::default().build(repo, list, m, dest, true)
}

/// Keeps snapshot `m`, already built at `db`, as the log base of `paths`
/// (restore and recover from a pruned repository): a full snapshot's object
/// byte for byte; a delta's database compressed again as a full snapshot,
/// whose `file_bytes` and `file_blake3` the base's manifest then records
/// (`file` still names `m`'s object; no `parent`).
pub fn keep_as_base(
    repo: &dyn Repository,
    m: &SnapshotManifest,
    db: &Path,
    base: crate::store::LogBase,
    paths: &crate::store::Paths,
) -> Result<()> {
    if m.parent.is_none() {
        return base.write(paths, &mut repo.open_reader(&m.file)?);
    }
    let head = crate::projection::unhex32(&m.head_hash)
        .ok_or_else(|| Error::Damaged(format!("snapshot {}: head_hash is not 64 hex digits", m.file)))?;
    let mut pack = snapshot::pack(db, m.lsn, head, &m.file, m.created_ms)?;
    // A scratch file (thrown away): `LogBase::write` makes the base durable.
    let tmp = std::env::temp_dir().join(format!("candlelog-base-pack-{}-{}.zst", std::process::id(), m.lsn));
    let packed = std::fs::File::create(&tmp).and_then(|mut f| std::io::copy(&mut pack, &mut f)).map_err(|e| Error::io("write", &tmp, e));
    let written = packed.and_then(|_| {
        let packed = pack.manifest();
        let snapshot = SnapshotManifest {
            file_bytes: packed.file_bytes,
            file_blake3: packed.file_blake3,
            parent: None,
            parent_raw_blake3: None,
            ..m.clone()
        };
        let file = std::fs::File::open(&tmp).map_err(|e| Error::io("open", &tmp, e))?;
        crate::store::LogBase { snapshot, ..base }.write(paths, &mut std::io::BufReader::new(file))
    });
    let _ = std::fs::remove_file(&tmp);
    written
}

/// The parent a backup's snapshot of `image` is a delta of, with the parent's
/// page hashes — or `None`: take a full snapshot. A delta needs the
/// repository's newest snapshot to be the one whose page hashes this data
/// directory saved (`cached`, from the last snapshot it published there), its
/// chain readable, shorter than `chain_max`, its base present and its deltas
/// reading back as their manifests say, the same page size, and at most
/// `max_percent` of the pages changed.
pub fn delta_parent<'a>(
    repo: &dyn Repository,
    list: &'a [SnapshotManifest],
    cached: Option<(PageImage, String)>,
    image: &PageImage,
    policy: DeltaPolicy,
) -> Result<Option<(&'a SnapshotManifest, PageImage)>> {
    let Some((pages, name)) = cached.filter(|_| policy.chain_max > 0) else { return Ok(None) };
    let Some(newest) = list.iter().max_by_key(|m| (m.lsn, m.created_ms)).filter(|m| m.file == name) else { return Ok(None) };
    if newest.raw_blake3 != crate::projection::hex(&pages.raw_blake3) || pages.page_size != image.page_size || !repo.exists(&newest.file)? {
        return Ok(None);
    }
    let Ok(chain) = lineage(list, newest) else { return Ok(None) };
    // The chain holds its base and chain.len() - 1 deltas; this one would be the next.
    if chain.len() > policy.chain_max as usize {
        return Ok(None);
    }
    // Never build on a chain whose deltas no longer read back as published (a few MB
    // each): nights of deltas on a damaged one would all be unusable. The base is
    // checked by `backup verify` and the drill.
    for d in chain.iter().skip(1) {
        let intact = repo.hash(&d.file).is_ok_and(|(h, n)| h.to_hex().as_str() == d.file_blake3 && n == d.file_bytes);
        if !intact {
            tracing::warn!(repository = %repo.location(), object = %d.file, "differs from its manifest: this snapshot is a full one; run `candlelog backup verify`");
            return Ok(None);
        }
    }
    if !repo.exists(&chain.first().map_or(String::new(), |b| b.file.clone()))? {
        return Ok(None);
    }
    let changed = image.changed_since(&pages).len() as u64;
    if changed * 100 > u64::from(policy.max_percent) * image.hashes.len() as u64 {
        return Ok(None);
    }
    Ok(Some((newest, pages)))
}

/// The snapshots that must stay as long as one of `kept` does: their chains.
pub fn needed_by<'a>(
    list: &'a [SnapshotManifest],
    kept: impl IntoIterator<Item = &'a SnapshotManifest>,
) -> std::collections::HashSet<String> {
    let mut needed = std::collections::HashSet::new();
    for m in kept {
        let mut at = m;
        for _ in 0..=MAX_CHAIN {
            if !needed.insert(at.file.clone()) {
                break;
            }
            match parent_of(list, at) {
                Ok(Some(p)) => at = p,
                _ => break,
            }
        }
    }
    needed
}
