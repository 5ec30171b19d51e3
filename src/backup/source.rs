//! A repository as a source of segments for the chain walk
//! (src/log/chain.rs): its segment objects from its log start on, each
//! checked against the blake3 in its name as it is read.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::RepoError;
use super::prune::{LogStart, log_start};
use super::repo::Repository;
use crate::log::{ChainCursor, ChainPos, DamageKind, ReadFailure, SegmentEntry, SegmentSource, scan_segment};

/// The largest segment object read into memory; the writer rolls segments at
/// `--segment-bytes` (64 MiB by default), far below it.
pub const MAX_SEGMENT_OBJECT: u64 = 1 << 30;

/// `segments/<seq:020>-<blake3 hex>.seg` → (seq, hash hex): exactly 20
/// decimal digits (seq ≥ 1) and 64 lowercase hex digits, as backups write
/// them. Any other name in `segments/` is not a segment object.
pub fn parse_segment_object(name: &str) -> Option<(u64, String)> {
    let file = name.strip_prefix("segments/")?.strip_suffix(".seg")?;
    let (seq, hash) = file.split_once('-')?;
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit()) && hash.len() == 64 && hash.bytes().all(lower_hex)).then_some(())?;
    let seq: u64 = seq.parse().ok().filter(|&s| s >= 1)?;
    Some((seq, hash.to_string()))
}

/// The object name of a segment with these bytes' hash.
pub fn segment_object_name(seq: u64, hash: &blake3::Hash) -> String {
    format!("segments/{seq:020}-{}.seg", hash.to_hex())
}

/// A repository's segments, listed once, where its chain starts, its
/// identity, and how to read them.
pub struct RepoSegments<'r> {
    repo: &'r dyn Repository,
    /// seq → its objects (name, blake3 hex): usually one; a second is another
    /// chain's copy (or another history's) that the chain walk tells apart.
    objects: BTreeMap<u64, Vec<(String, String)>>,
    pub start: Option<LogStart>,
    /// The identity of the chain the repository holds: its marker's, else
    /// derived from its own segments (`derive_identity`).
    pub identity: Option<ChainPos>,
    /// Copies of a segment passed over because another copy is the chain's.
    passed_over: RefCell<Vec<String>>,
}

impl<'r> RepoSegments<'r> {
    pub fn list(repo: &'r dyn Repository) -> Result<RepoSegments<'r>, crate::Error> {
        let marker = super::marker::read_marker(repo)?;
        let start = log_start(repo)?;
        let mut objects: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
        for (seq, name, hash) in super::segment_objects(repo)? {
            objects.entry(seq).or_default().push((name, hash));
        }
        let recorded = marker.and_then(|m| m.chain).and_then(|c| c.pos());
        let mut segments = RepoSegments { repo, objects, start, identity: recorded, passed_over: RefCell::default() };
        if recorded.is_none() {
            segments.identity = segments.derive_identity()?;
        }
        Ok(segments)
    }

    /// The identity of a repository whose marker records none (format 1):
    /// where `log-start.json` says its chain starts, else segment 1's first
    /// frame; `None` when it holds no segment 1 (or two of them).
    fn derive_identity(&self) -> Result<Option<ChainPos>, crate::Error> {
        if let Some(s) = &self.start {
            return Ok(Some(ChainPos::new(s.first_lsn - 1, s.base_hash()?)).filter(|p| p.lsn > 0));
        }
        let Some([(name, hash)]) = self.objects.get(&1).map(Vec::as_slice) else { return Ok(None) };
        let Ok(bytes) = self.fetch_object(name, hash) else { return Ok(None) };
        let scan = scan_segment(Path::new(name), 1, &bytes, false, None);
        Ok(scan.frames.first().map(|f| ChainPos::new(f.header.last_lsn(), f.hash)))
    }

    /// The first segment of the chain and the position it starts at.
    pub fn chain_start(&self) -> Result<(u64, ChainPos), crate::Error> {
        match &self.start {
            Some(s) => Ok((s.first_seq, ChainPos::new(s.first_lsn - 1, s.base_hash()?))),
            None => Ok(crate::log::chain::log_start()),
        }
    }

    /// (seq, object name, blake3 hex) from the chain's start on (every copy).
    pub fn objects(&self) -> impl Iterator<Item = (u64, &str, &str)> {
        let first = self.start.as_ref().map_or(1, |s| s.first_seq);
        self.objects.range(first..).flat_map(|(s, copies)| copies.iter().map(move |(n, h)| (*s, n.as_str(), h.as_str())))
    }

    pub fn repo(&self) -> &'r dyn Repository {
        self.repo
    }

    /// Copies passed over so far, each with why (another chain's).
    pub fn passed_over(&self) -> Vec<String> {
        self.passed_over.borrow().clone()
    }

    fn fetch_object(&self, name: &str, hash: &str) -> Result<Vec<u8>, RepoError> {
        let bytes = self.repo.read_all(name, MAX_SEGMENT_OBJECT)?;
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(RepoError::damaged(self.repo.location(), name, "blake3 differs from the hash in its name"));
        }
        Ok(bytes)
    }

    /// Segment `seq`'s object, its bytes checked against the hash in its
    /// name. Of several copies, the one that continues the chain: it starts
    /// where the chain's segment `seq - 1` ends (or at the chain's start) and
    /// passes through the identity where it spans it; the others are passed
    /// over and reported. Two that both fit are two histories: refused.
    pub fn fetch(&self, seq: u64) -> Result<Option<Vec<u8>>, RepoError> {
        let copies = match self.objects.get(&seq).map(Vec::as_slice) {
            None | Some([]) => return Ok(None),
            Some([(name, hash)]) => return self.fetch_object(name, hash).map(Some),
            Some(copies) => copies,
        };
        let first_seq = self.start.as_ref().map_or(1, |s| s.first_seq);
        let expect = if seq == first_seq {
            self.chain_start().ok().map(|(_, pos)| pos)
        } else {
            self.fetch(seq - 1)?.and_then(|prev| crate::log::chain::trusted_footer(&prev)).map(|f| ChainPos::new(f.last_lsn, f.head_hash))
        };
        let mut fitting = Vec::new();
        let mut last_err = None;
        for (name, hash) in copies {
            let bytes = match self.fetch_object(name, hash) {
                Ok(b) => b,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let checked = ChainCursor::new(seq, expect.unwrap_or(ChainPos::GENESIS)).with_identity(self.identity).check(
                Path::new(name),
                seq,
                &bytes,
                false,
            );
            match checked.damage.first() {
                None if expect.is_some() => fitting.push((name, bytes)),
                None => {
                    let message = format!(
                        "{name}: one of several copies of segment {seq}, and segment {} is missing: cannot tell which continues the chain",
                        seq - 1
                    );
                    last_err = Some(RepoError::incomplete(self.repo.location(), message));
                }
                Some(d) => {
                    let why = format!(
                        "{name}: passed over: a copy of segment {seq} that does not continue this repository's chain ({}: {})",
                        d.kind, d.message
                    );
                    tracing::warn!(repository = %self.repo.location(), "{why}");
                    self.passed_over.borrow_mut().push(why);
                }
            }
        }
        match fitting.len() {
            1 => Ok(fitting.pop().map(|(_, b)| b)),
            0 => Err(last_err.unwrap_or_else(|| {
                RepoError::incomplete(self.repo.location(), format!("no copy of segment {seq} continues this repository's chain"))
            })),
            _ => Err(RepoError::incomplete(
                self.repo.location(),
                format!(
                    "{} are all segment {seq} and each continues the chain: the repository holds two different histories; refusing it",
                    fitting.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" and ")
                ),
            )),
        }
    }
}

impl SegmentSource for RepoSegments<'_> {
    fn location(&self) -> String {
        self.repo.location()
    }

    /// One entry per segment number (its copies are told apart when it is read).
    fn list(&self, first_seq: u64) -> Result<Vec<SegmentEntry>, ReadFailure> {
        Ok(self
            .objects
            .range(first_seq..)
            .filter_map(|(seq, copies)| copies.first().map(|(name, _)| SegmentEntry { seq: *seq, name: PathBuf::from(name) }))
            .collect())
    }

    fn read(&self, entry: &SegmentEntry) -> Result<Vec<u8>, ReadFailure> {
        match self.fetch(entry.seq) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(ReadFailure { kind: DamageKind::MissingSegment, message: "listed but gone".into() }),
            Err(RepoError::Damaged { message, .. }) => Err(ReadFailure { kind: DamageKind::ObjectHash, message }),
            // No copy, or more than one, continues the chain.
            Err(RepoError::Incomplete { message, .. }) => Err(ReadFailure { kind: DamageKind::ForeignChain, message }),
            Err(e) => Err(ReadFailure { kind: DamageKind::Unreadable, message: e.to_string() }),
        }
    }

    /// Repositories hold sealed segments only.
    fn may_be_active(&self) -> bool {
        false
    }

    fn identity(&self) -> Option<ChainPos> {
        self.identity
    }
}
