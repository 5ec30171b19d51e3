//! Backups: sealed segments (each stored once, named by its blake3 hash, so
//! every backup after the first is incremental) and snapshots of the
//! projection, in a repository; `restore` builds a data directory from them,
//! optionally cut at an LSN or a commit time (point-in-time restore).
//!
//! ```text
//! REPO/candlelog-repository.json              {"format": 3, "chain": {"lsn", "hash"}}: the one chain it holds (marker.rs)
//! REPO/segments/<seq:020>-<blake3>.seg        sealed segments, byte for byte
//! REPO/snapshots/<lsn:020>-<created_ms>.sqlite.zst   + .json manifest (published last)
//! REPO/snapshots/<lsn:020>-<created_ms>.delta.zst    a delta snapshot: the pages changed since its parent (chain.rs)
//! REPO/log-start.json                         where the log starts when older segments were pruned (prune.rs)
//! ```
//!
//! The layout, the manifest schema and what readers must refuse are specified
//! in format/repository.md. This layer moves objects (streamed: no object is
//! held whole in memory) and checks them; the commands that use it are in ops/.

pub mod carry;
pub mod chain;
pub mod error;
pub mod marker;
pub mod object;
pub mod prune;
pub mod repo;
pub mod source;
pub mod uploaded;
pub mod verify;

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::log::{SegmentEnd, scan_segment};
pub use crate::snapshot::{self, REPO_FORMAT, SnapshotManifest};
use crate::store::{ChainId, Paths, Store};
pub use chain::DeltaPolicy;
pub use error::RepoError;
pub use marker::{MARKER, Marker, check_format, read_marker};
pub use repo::{DirRepository, Repository};
pub use source::{RepoSegments, parse_segment_object, segment_object_name};
pub use verify::{RepoVerifyReport, VerifyProgress, verify_repo, verify_repo_with};

/// `snapshots/<lsn:020>-<created_ms>.json` → (lsn, the name of the snapshot
/// file it describes: the same stem with `.sqlite.zst`).
pub fn parse_manifest_name(name: &str) -> Option<(u64, String)> {
    let stem = name.strip_prefix("snapshots/")?.strip_suffix(".json")?;
    let (lsn, created) = stem.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (lsn.len() == 20 && digits(lsn) && digits(created)).then_some(())?;
    created.parse::<i64>().ok()?;
    Some((lsn.parse().ok()?, format!("snapshots/{stem}.sqlite.zst")))
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub repository: String,
    pub segments_uploaded: u64,
    pub segments_present: u64,
    pub bytes_uploaded: u64,
    pub snapshot: Option<SnapshotManifest>,
    pub elapsed_ms: u64,
    /// Snapshot manifests removed by retention (`keep_days`).
    pub retention_removed: Vec<String>,
    /// What `--prune-segments-before` removed.
    pub pruned: Option<prune::PruneReport>,
    /// Why no snapshot was taken (`snapshot_every`).
    pub snapshot_skipped: Option<String>,
    /// The published snapshot, proven: the caller appends it to the local log
    /// with the backup's `Run` record (event format 6).
    #[serde(skip)]
    pub anchor: Option<crate::event::Anchor>,
}

impl BackupReport {
    /// Nothing done yet to `repository`.
    pub fn empty(repository: String) -> BackupReport {
        BackupReport {
            repository,
            segments_uploaded: 0,
            segments_present: 0,
            bytes_uploaded: 0,
            snapshot: None,
            elapsed_ms: 0,
            retention_removed: Vec::new(),
            pruned: None,
            snapshot_skipped: None,
            anchor: None,
        }
    }
}

/// Seals the active segment, uploads the sealed segments the repository
/// lacks (verifying what it wrote), then publishes a snapshot whatever the
/// spacing ([`SnapshotPolicy::every_backup`]; the CLI's default spaces them,
/// [`backup_with`] takes a policy): data first,
/// manifest last; last, appends the snapshot's anchor to the log (the
/// `backup` command appends it with its `Run` record instead).
pub fn backup(store: &mut Store, repo: &dyn Repository) -> Result<BackupReport> {
    let report = backup_with(store, repo, SnapshotPolicy::every_backup())?;
    if let Some(a) = &report.anchor {
        store.append(&[crate::event::Event::Anchor(a.clone())])?;
    }
    Ok(report)
}

/// When a backup takes a snapshot, and when that is a delta.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// Only when the repository's newest snapshot is at least this old (ms);
    /// `None`: at every backup. Segments are uploaded either way, so this
    /// trades replay time at restore for repository space, never data.
    pub every_ms: Option<i64>,
    /// With spacing, also when the log since the newest snapshot holds this
    /// percentage of its LSN (`snapshot_tail_percent`); alone, only then.
    pub tail_percent: Option<u32>,
    /// When the snapshot is a delta of the repository's newest one (chain.rs).
    pub delta: DeltaPolicy,
}

/// The share of the store a restore replays at most on top of a repository's
/// newest snapshot when its configuration says nothing (`snapshot_tail_percent`).
pub const DEFAULT_TAIL_PERCENT: u32 = 2;

/// By default a backup takes a snapshot once the log since the newest one
/// holds [`DEFAULT_TAIL_PERCENT`] of the store: a night costs what it brought.
impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy { every_ms: None, tail_percent: Some(DEFAULT_TAIL_PERCENT), delta: DeltaPolicy::default() }
    }
}

impl SnapshotPolicy {
    /// A snapshot at every backup (`snapshot_tail_percent = 0`, `--snapshot`).
    pub fn every_backup() -> Self {
        SnapshotPolicy { tail_percent: None, ..SnapshotPolicy::default() }
    }

    /// A repository's `snapshot_every` (ms) and `snapshot_tail_percent` as a
    /// policy: a tail percentage of 0 means a snapshot at every backup; unset,
    /// it is [`DEFAULT_TAIL_PERCENT`] unless `snapshot_every` alone spaces them.
    pub fn configured(every_ms: Option<i64>, tail_percent: Option<u32>, delta: DeltaPolicy) -> Self {
        match tail_percent {
            Some(0) => SnapshotPolicy { delta, ..SnapshotPolicy::every_backup() },
            Some(p) => SnapshotPolicy { every_ms, tail_percent: Some(p), delta },
            None => SnapshotPolicy { every_ms, tail_percent: every_ms.is_none().then_some(DEFAULT_TAIL_PERCENT), delta },
        }
    }
}

/// What a backup asks of the data directory's writer. The one-shot `backup`
/// is the writer ([`Store`]); the service's backup job runs on a thread beside
/// the writer, copies the projection through its own read-only connection and
/// asks the writer to seal (`ops::schedule`).
pub trait Writer {
    fn paths(&self) -> &Paths;
    /// Seals the active segment: every committed frame is then in a sealed segment.
    fn seal(&mut self) -> Result<()>;
    /// A page-stable copy of the projection at `dest`, and the LSN its rows reflect.
    fn snapshot_projection(&self, dest: &std::path::Path) -> Result<crate::projection::Applied>;
}

impl Writer for Store {
    fn paths(&self) -> &Paths {
        Store::paths(self)
    }
    fn seal(&mut self) -> Result<()> {
        Store::seal(self)
    }
    fn snapshot_projection(&self, dest: &std::path::Path) -> Result<crate::projection::Applied> {
        Store::snapshot_projection(self, dest)
    }
}

/// `backup` under a snapshot policy. The projection is copied before the seal,
/// so the segments uploaded reach the copy's LSN even when a writer appends
/// beside the backup (the service): a snapshot never runs ahead of the log
/// the repository holds.
pub fn backup_with(store: &mut dyn Writer, repo: &dyn Repository, policy: SnapshotPolicy) -> Result<BackupReport> {
    let started = Instant::now();
    // Nothing is written to a repository of another chain, not even a temporary.
    let (mark_now, upgrade) = adopt(store.paths(), repo)?;
    if let Some(m) = mark_now {
        marker::write_marker(repo, &m)?;
    }
    for t in repo.remove_stale_temporaries()? {
        tracing::info!(repository = %repo.location(), "removed {t}, left by a killed backup");
    }
    let mut report = BackupReport::empty(repo.location());
    report.snapshot_skipped = snapshot_not_due(store.paths(), repo, policy)?;
    let tmp = store.paths().root.join(format!(".snapshot-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let done = (|| {
        let copied = if report.snapshot_skipped.is_none() { Some(store.snapshot_projection(&tmp)?) } else { None };
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "snapshot: page-stable copy");
        store.seal()?;
        upload_segments(store.paths(), repo, &mut report)?;
        if let Some(m) = upgrade {
            marker::write_marker(repo, &m)?;
        }
        if let Some(applied) = copied {
            publish_snapshot(store.paths(), &tmp, applied, repo, policy.delta, &mut report)?;
        }
        Ok::<_, Error>(())
    })();
    let _ = std::fs::remove_file(&tmp);
    done?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Why `policy` takes no snapshot at this backup, or `None` when one is due:
/// always without spacing or without a snapshot yet; with spacing, when the
/// newest snapshot is `snapshot_every` old or the log since it (the
/// projection's LSN less the snapshot's) reaches `snapshot_tail_percent` of
/// the snapshot's LSN. The second bounds a restore's replay, whatever the
/// rate of change: a snapshot costs the whole store, and it is taken once
/// per that share of the store changed, so a night costs what it changed.
fn snapshot_not_due(paths: &Paths, repo: &dyn Repository, policy: SnapshotPolicy) -> Result<Option<String>> {
    if policy.every_ms.is_none() && policy.tail_percent.is_none() {
        return Ok(None);
    }
    let (list, _) = manifests(repo)?;
    let Some(newest) = list.iter().max_by_key(|m| m.created_ms) else { return Ok(None) };
    let age = crate::log::writer::now_ms() - newest.created_ms;
    if policy.every_ms.is_some_and(|every| age >= every) {
        return Ok(None);
    }
    // A projection that cannot be read is copied (and its error reported) as it would be without spacing.
    let Ok(lsn) = crate::projection::Projection::open_read_only(&paths.projection).and_then(|p| p.applied()).map(|a| a.lsn) else {
        return Ok(None);
    };
    let tail = lsn.saturating_sub(newest.lsn);
    if let Some(percent) = policy.tail_percent
        && u128::from(tail) * 100 >= u128::from(percent) * u128::from(newest.lsn)
    {
        return Ok(None);
    }
    let mut why = vec![];
    if policy.every_ms.is_some() {
        why.push("is younger than snapshot_every".to_string());
    }
    if let Some(percent) = policy.tail_percent {
        why.push(format!("has {tail} events of log after it, under snapshot_tail_percent ({percent} % of its LSN {})", newest.lsn));
    }
    Ok(Some(format!("the newest snapshot, {}, {}", newest.file, why.join(" and "))))
}

/// Checks that the data directory's chain is the repository's (its marker's
/// identity, or for a format-1 marker the one its segments hold); returns the
/// marker to write: before any other object in a new repository (first),
/// or once the segments are in when an older marker is upgraded or gets its
/// identity (second; a refused upload leaves the marker as it was).
fn adopt(paths: &Paths, repo: &dyn Repository) -> Result<(Option<Marker>, Option<Marker>)> {
    let local = crate::store::chain_identity(paths)?;
    let Some(marker) = read_marker(repo)? else {
        return Ok((Some(Marker { format: REPO_FORMAT, chain: local.map(ChainId::of) }), None));
    };
    let segments = RepoSegments::list(repo)?;
    let identity = segments.identity;
    if let (Some(id), Some(_)) = (identity, local) {
        let belongs = match crate::store::passes_through(paths, id)? {
            Some(b) => b,
            // The data directory holds no frame at the identity's LSN (its log was
            // pruned past it): the same chain when it shares a sealed segment with it.
            None => shares_a_segment(paths, &segments)?,
        };
        if !belongs {
            return Err(RepoError::ForeignChain {
                location: repo.location(),
                repository: ChainId::of(id).to_string(),
                dir: paths.root.display().to_string(),
                local: local.map(ChainId::of).map_or_else(|| "empty".to_string(), |c| c.to_string()),
            }
            .into());
        }
    }
    let chain = identity.or(local).map(ChainId::of);
    Ok((None, marker.needs_update(chain.as_ref()).then_some(Marker { format: REPO_FORMAT, chain })))
}

/// Whether one of the local log's segments is, byte for byte, one of the repository's.
fn shares_a_segment(paths: &crate::store::Paths, segments: &RepoSegments<'_>) -> Result<bool> {
    let held: std::collections::HashSet<&str> = segments.objects().map(|(_, name, _)| name).collect();
    for (seq, path) in crate::log::segment::list_segments(&paths.log).map_err(|e| Error::io("list", &paths.log, e))? {
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        if held.contains(segment_object_name(seq, &blake3::hash(&bytes)).as_str()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Uploads the sealed segments the repository lacks, each read back before
/// it counts; refuses a repository that holds another history. A segment
/// recorded as held by the repository (`uploaded.rs`: its number, length and
/// footer unchanged, its object still listed) is counted without reading it.
fn upload_segments(paths: &Paths, repo: &dyn Repository, report: &mut BackupReport) -> Result<()> {
    // The objects per segment number: this log's segment must be one of them (another is another history).
    let mut by_seq: HashMap<u64, Vec<String>> = HashMap::new();
    for (seq, name, _) in segment_objects(repo)? {
        by_seq.entry(seq).or_default().push(name);
    }
    let held = |seq: u64, name: &str| by_seq.get(&seq).is_some_and(|p| p.iter().any(|n| n == name));
    let record_at = local_state_path(paths, repo, "segments");
    let mut record = uploaded::Uploaded::load(&record_at);
    let footers = sealed_footers(paths)?;
    let segments = crate::log::segment::list_segments(&paths.log).map_err(|e| Error::io("list", &paths.log, e))?;
    let first_seq = segments_start(paths, repo, &by_seq)?;
    for (seq, path) in segments.iter().filter(|(seq, _)| *seq >= first_seq) {
        if let Some((bytes, head)) = footers.get(seq)
            && record.name(*seq, *bytes, head).is_some_and(|name| held(*seq, name))
        {
            report.segments_present += 1;
            continue;
        }
        let Some(sealed) = read_sealed(path, *seq)? else {
            continue; // only sealed segments never change
        };
        match by_seq.get(seq) {
            Some(_) if held(*seq, &sealed.name) => report.segments_present += 1,
            Some(other) => return Err(another_history(repo, *seq, &other.join(" and "), &sealed.name)),
            None => {
                repo.put(&sealed.name, &sealed.bytes)?;
                read_back(repo, &sealed.name, &sealed.blake3, sealed.bytes.len() as u64)?;
                report.segments_uploaded += 1;
                report.bytes_uploaded += sealed.bytes.len() as u64;
            }
        }
        record.record(*seq, sealed.bytes.len() as u64, sealed.head_hash, sealed.name);
    }
    if let Err(e) = record.save(&record_at) {
        tracing::warn!(path = %record_at.display(), "the segments the repository holds were not recorded ({e}): the next backup reads them again");
    }
    Ok(())
}

/// Length and footer head hash of each sealed segment of the local log, from
/// their footers (nothing else of them is read).
fn sealed_footers(paths: &Paths) -> Result<HashMap<u64, (u64, [u8; 32])>> {
    let catalog = crate::log::catalog::disk_catalog(&paths.log, crate::log::ChainPos::GENESIS)?;
    Ok(catalog.into_iter().filter(|s| s.sealed).map(|s| (s.seq, (s.bytes, s.head_hash))).collect())
}

/// A sealed local segment, read whole and checked, as the object it uploads as.
struct Sealed {
    bytes: Vec<u8>,
    name: String,
    blake3: String,
    head_hash: [u8; 32],
}

/// Reads segment `seq` at `path`: `None` when it is not sealed (the active
/// one), an error naming the damage when its frames do not check.
fn read_sealed(path: &std::path::Path, seq: u64) -> Result<Option<Sealed>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let scan = scan_segment(path, seq, &bytes, false, None);
    let SegmentEnd::Sealed(footer) = scan.end else { return Ok(None) };
    if let Some(d) = scan.damage.into_iter().next() {
        return Err(d.into_error().into());
    }
    let hash = blake3::hash(&bytes);
    Ok(Some(Sealed { name: segment_object_name(seq, &hash), blake3: hash.to_hex().to_string(), head_hash: footer.head_hash, bytes }))
}

/// The repository holds `other` as segment `seq` where this log has `name`.
fn another_history(repo: &dyn Repository, seq: u64, other: &str, name: &str) -> Error {
    RepoError::incomplete(
        repo.location(),
        format!(
            "holds {other} as segment {seq}, but this log's segment {seq} is {name}: this data directory's log is not \
             the history backed up there (restored to an earlier point?); back up to a new repository"
        ),
    )
    .into()
}

/// The first segment to upload: the repository's log start; a data directory
/// whose older history was pruned gives a new repository the same start.
fn segments_start(paths: &Paths, repo: &dyn Repository, by_seq: &HashMap<u64, Vec<String>>) -> Result<u64> {
    let mut start = prune::log_start(repo)?;
    if let Some(base) = crate::store::LogBase::load(paths)?
        && start.is_none()
        && !by_seq.keys().any(|seq| *seq < base.first_seq)
    {
        let log_start = prune::LogStart {
            format: REPO_FORMAT,
            first_seq: base.first_seq,
            first_lsn: base.first_lsn,
            base_hash: base.base_hash.clone(),
            pruned_before_ms: 0,
            pruned_at_ms: crate::log::writer::now_ms(),
        };
        prune::write_log_start(repo, &log_start)?;
        start = Some(log_start);
    }
    Ok(start.map_or(1, |s| s.first_seq))
}

/// Reads an object back (streamed) and compares its size and blake3.
fn read_back(repo: &dyn Repository, name: &str, blake3_hex: &str, bytes: u64) -> Result<()> {
    let (h, n) = repo.hash(name)?;
    if h.to_hex().as_str() != blake3_hex || n != bytes {
        return Err(RepoError::damaged(repo.location(), name, "reads back differently from what was written").into());
    }
    Ok(())
}

/// A snapshot of the projection, streamed, from its page-stable copy at `tmp`: its rows
/// checked against the log, its pages hashed; then the pages that changed
/// since the repository's newest snapshot (a delta, when `delta` allows) or
/// the whole copy, compressed and hashed on the way to the repository, read
/// back, and only then the manifest (with the digests of the rows the log
/// gives). Last, the copy's page hashes are kept for the next delta.
fn publish_snapshot(
    paths: &Paths,
    tmp: &std::path::Path,
    applied: crate::projection::Applied,
    repo: &dyn Repository,
    delta: DeltaPolicy,
    report: &mut BackupReport,
) -> Result<()> {
    let pages_at = page_hashes_path(paths, repo);
    let published = (|| {
        // Where a snapshot's time goes (`-vv`): the copy and its checks scale with the store, the rest with the change.
        let mut t = Instant::now();
        let step = |what: &str, t: &mut Instant| {
            tracing::debug!(ms = t.elapsed().as_millis() as u64, "snapshot: {what}");
            *t = Instant::now();
        };
        let sums_at = local_state_path(paths, repo, "sums");
        let proven = rows_as_the_log_gives(paths, tmp, applied.lsn, &sums_at)?;
        step("rows and indexes checked against the log", &mut t);
        let image = snapshot::pages::PageImage::scan(tmp)?;
        step("pages hashed", &mut t);
        let created = crate::log::writer::now_ms();
        let base = format!("snapshots/{:020}-{created}", applied.lsn);
        let (list, _) = manifests(repo)?;
        let mut pack = match chain::delta_parent(repo, &list, snapshot::pages::PageImage::load(&pages_at), &image, delta)? {
            Some((parent, parent_pages)) => snapshot::pack_delta(
                tmp,
                (&image, &parent_pages),
                parent,
                (applied.lsn, applied.hash),
                &format!("{base}.delta.zst"),
                created,
            )?,
            None => snapshot::pack(tmp, applied.lsn, applied.hash, &format!("{base}.sqlite.zst"), created)?,
        };
        repo.write_from(&pack_name(&pack), &mut pack)?;
        step("quick_check, compressed and uploaded", &mut t);
        let mut manifest = pack.manifest();
        manifest.row_digests = Some(snapshot::row_digests_json(&proven.side.digests()));
        // Read back before the manifest makes it a backup.
        read_back(repo, &manifest.file, &manifest.file_blake3, manifest.file_bytes)?;
        step("read back", &mut t);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::io("serialise manifest", "", std::io::Error::other(e)))?;
        repo.put(&format!("{base}.json"), &json)?;
        // Only a copy whose whole bytes are the manifest's is a parent for the next delta.
        if manifest.raw_blake3 == crate::projection::hex(&image.raw_blake3)
            && let Err(e) = image.save(&pages_at, &manifest.file)
        {
            tracing::warn!(path = %pages_at.display(), "page hashes not kept ({e}): the next snapshot is a full one");
        }
        // The next night's log side starts from these sums, once this snapshot's anchor is in the log.
        if let Err(e) = carry::keep(&sums_at, applied, &proven.side.sums) {
            tracing::warn!(path = %sums_at.display(), "the rows' sums were not kept ({e}): the next backup replays the whole log");
        }
        let anchor = proven.anchor(&manifest, applied)?;
        Ok::<_, Error>((manifest, json.len() as u64, anchor))
    })();
    let (manifest, json_len, anchor) = published?;
    report.bytes_uploaded += manifest.file_bytes + json_len;
    report.snapshot = Some(manifest);
    report.anchor = Some(anchor);
    Ok(())
}

/// The object a pack is written as.
fn pack_name(pack: &snapshot::Pack) -> String {
    pack.name().to_string()
}

/// Where the page hashes of the last snapshot published to `repo` are kept:
/// `DIR/backup-pages/<blake3 of the repository's location, 16 hex digits>.pages`.
pub fn page_hashes_path(paths: &crate::store::Paths, repo: &dyn Repository) -> std::path::PathBuf {
    local_state_path(paths, repo, "pages")
}

/// What the data directory keeps about `repo` (never in the repository):
/// `DIR/backup-pages/<blake3 of the repository's location, 16 hex digits>.<kind>`,
/// `pages` (page hashes), `segments` (`uploaded.rs`) or `sums` (`carry.rs`).
pub fn local_state_path(paths: &crate::store::Paths, repo: &dyn Repository, kind: &str) -> std::path::PathBuf {
    let key = blake3::hash(repo.location().as_bytes()).to_hex();
    paths.root.join("backup-pages").join(format!("{}.{kind}", &key.as_str()[..16]))
}

/// What a backup proved about its projection copy before publishing it.
struct Proven {
    /// What the log gives at the copy's LSN: the rows' digests (equal in the
    /// copy) and the series (what the redb index holds there).
    side: carry::LogSide,
    /// `CHECK_STRUCTURE` when every index of the copy holds exactly its table's entries.
    structure: u8,
}

impl Proven {
    /// The anchor recording the published snapshot (`quick_check` passed in
    /// `snapshot::pack`, or it would not have been published).
    fn anchor(self, m: &SnapshotManifest, applied: crate::projection::Applied) -> Result<crate::event::Anchor> {
        let raw_blake3 = crate::projection::unhex32(&m.raw_blake3)
            .ok_or_else(|| Error::Failed(format!("snapshot {}: raw_blake3 {:?} is not 64 hex digits", m.file, m.raw_blake3)))?;
        let tables =
            self.side.digests().iter().map(|(i, d)| crate::event::AnchorTable { interval: *i, rows: d.rows, digest: d.digest }).collect();
        Ok(crate::event::Anchor {
            lsn: applied.lsn,
            head_hash: applied.hash,
            raw_bytes: m.raw_bytes,
            raw_blake3,
            checks: crate::event::CHECK_QUICK | self.structure,
            tables,
            series: self.side.series,
        })
    }
}

/// The digests of the rows the log gives at `lsn` (computed from the log, on
/// a second core) — provided the snapshot copy at `copy` holds exactly them:
/// a projection that drifted from the log is never published as a backup.
/// The copy's table scan also checks every index against its table
/// (`projection::structure`), and the log's replay gives its series.
fn rows_as_the_log_gives(paths: &crate::store::Paths, copy: &std::path::Path, lsn: u64, sums: &std::path::Path) -> Result<Proven> {
    let (from_log, in_copy) = std::thread::scope(|s| {
        let from_log = s.spawn(|| carry::log_side(paths, sums, lsn));
        let in_copy =
            crate::projection::Projection::open_read_only(copy).and_then(|p| crate::projection::structure::audit(&p)).map_err(Error::from);
        (from_log.join().unwrap_or_else(|_| Err(Error::Failed("the log digest thread panicked".into()))), in_copy)
    });
    let (from_log, in_copy) = (from_log?, in_copy?);
    if let Some((i, e, f)) = crate::projection::digest::differences(&from_log.digests(), &in_copy.digests).first() {
        return Err(Error::Damaged(format!(
            "{}: table {} holds {} rows at LSN {lsn} that differ from the log's ({} rows): no snapshot of it is published; \
             run `candlelog verify --deep`, then `candlelog rebuild`",
            paths.projection.display(),
            i.table(),
            f.rows,
            e.rows
        )));
    }
    let structure = if in_copy.problems.is_empty() {
        crate::event::CHECK_STRUCTURE
    } else {
        // Published as before (quick_check passed), but not anchored as proven: recover audits it whole.
        tracing::warn!(copy = %copy.display(), "indexes against their tables: {}", in_copy.problems.join("; "));
        0
    };
    Ok(Proven { side: from_log, structure })
}

/// The snapshot manifests of a repository, oldest LSN first. Unreadable or
/// refused ones are returned as reasons beside the good ones.
pub fn manifests(repo: &dyn Repository) -> Result<(Vec<SnapshotManifest>, Vec<String>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for name in repo.list("snapshots")?.into_iter().filter(|n| n.ends_with(".json")) {
        let Some((lsn, file)) = parse_manifest_name(&name) else {
            bad.push(format!("{name}: not a manifest name (snapshots/<lsn:020>-<created_ms>.json); refused"));
            continue;
        };
        let parsed = repo.get(&name).map_err(Error::from).and_then(|b| {
            serde_json::from_slice::<SnapshotManifest>(&b).map_err(|e| RepoError::damaged(repo.location(), &name, e.to_string()).into())
        });
        match parsed {
            Ok(m) if !(marker::OLDEST_REPO_FORMAT..=REPO_FORMAT).contains(&m.format) => bad.push(format!(
                "{name}: written in repository format {} (this build reads 1 to {REPO_FORMAT}); upgrade candlelog",
                m.format
            )),
            // The file is the manifest's own: a manifest names nothing else (retention deletes it).
            // A delta's (format 3) ends in .delta.zst instead.
            Ok(m) if m.file != own_file(&file, &m) || repo::check_name(&m.file).is_err() => {
                bad.push(format!("{name}: file name {:?} refused: a manifest describes {}", m.file, own_file(&file, &m)))
            }
            Ok(m) if let Err(e) = snapshot::check_manifest(&m) => bad.push(format!("{name}: {e}")),
            Ok(m) if m.lsn != lsn => bad.push(format!("{name}: its lsn {} differs from the LSN in its name; refused", m.lsn)),
            Ok(m) => good.push(m),
            Err(e) => bad.push(e.to_string()),
        }
    }
    good.sort_by_key(|m| (m.lsn, m.created_ms));
    Ok((good, bad))
}

/// The snapshot object a manifest describes: `full` (`<stem>.sqlite.zst`),
/// or `<stem>.delta.zst` for a delta.
fn own_file(full: &str, m: &SnapshotManifest) -> String {
    match (&m.parent, full.strip_suffix(".sqlite.zst")) {
        (Some(_), Some(stem)) => format!("{stem}.delta.zst"),
        _ => full.to_string(),
    }
}

/// Segment objects, sorted by sequence number then name: (seq, object
/// name, blake3 hex). One number may have several objects (another chain's
/// copy beside the chain's): the chain walk tells them apart (source.rs).
pub fn segment_objects(repo: &dyn Repository) -> Result<Vec<(u64, String, String)>> {
    let mut v: Vec<_> =
        repo.list("segments")?.into_iter().filter_map(|name| parse_segment_object(&name).map(|(s, h)| (s, name, h))).collect();
    v.sort();
    Ok(v)
}

/// Where a repository's log ends: the last frame of its newest segment.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RepoHead {
    pub seq: u64,
    pub lsn: u64,
    pub commit_ms: i64,
}

/// The repository's log head, read from its newest segment (checked against
/// the hash in its name, a damaged one refused); `None` without segments.
pub fn repo_head(repo: &dyn Repository) -> Result<Option<RepoHead>> {
    let segments = RepoSegments::list(repo)?;
    let Some(seq) = segments.objects().map(|(seq, _, _)| seq).max() else { return Ok(None) };
    let Some(bytes) = segments.fetch(seq)? else { return Ok(None) };
    let name = std::path::PathBuf::from(format!("{}/segments/{seq:020}", repo.location()));
    let scan = scan_segment(&name, seq, &bytes, false, None);
    if let Some(d) = scan.damage.into_iter().next() {
        return Err(d.into_error().into());
    }
    Ok(scan.frames.last().map(|f| RepoHead { seq, lsn: f.header.last_lsn(), commit_ms: f.header.commit_ms }))
}

/// Deletes snapshots (manifest first, then data) created more than
/// `keep_days` before `now_ms` (but see `expired`: never the one a restore to the
/// window's start needs, nor a kept delta's chain), newest first (a delta goes
/// before its parent). Segments are history and are kept. Returns the
/// manifests removed.
pub fn apply_retention(repo: &dyn Repository, keep_days: u32, now_ms: i64) -> Result<Vec<String>> {
    let (list, _) = manifests(repo)?;
    let mut removed = Vec::new();
    for m in expired(&list, now_ms - i64::from(keep_days) * 86_400_000).into_iter().rev() {
        let manifest = m.manifest_name();
        // Manifest first: a snapshot without its manifest is an unreferenced file, never a broken backup.
        repo.delete(&manifest)?;
        repo.delete(&m.file)?;
        removed.push(manifest);
    }
    Ok(removed)
}

/// The snapshots of `list` (oldest first) retention deletes at `horizon`:
/// those created before it, but never the newest of them, which a restore to
/// any moment since the horizon starts from (with spaced snapshots there may
/// be none inside the window), nor one a kept delta is built on (its chain,
/// chain.rs). With no snapshot inside the window, that is the newest one.
fn expired(list: &[SnapshotManifest], horizon: i64) -> Vec<&SnapshotManifest> {
    let covers_horizon = list.iter().filter(|m| m.created_ms <= horizon).max_by_key(|m| m.created_ms).map(|m| &m.file);
    let old = |m: &SnapshotManifest| m.created_ms < horizon && Some(&m.file) != covers_horizon;
    let needed = chain::needed_by(list, list.iter().filter(|m| !old(m)));
    list.iter().filter(|m| old(m) && !needed.contains(&m.file)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made_at(created_ms: i64, parent: Option<&str>) -> SnapshotManifest {
        SnapshotManifest {
            format: REPO_FORMAT,
            lsn: created_ms as u64,
            head_hash: String::new(),
            file: format!("snapshots/{created_ms}"),
            file_bytes: 0,
            file_blake3: String::new(),
            raw_bytes: 0,
            raw_blake3: format!("raw{created_ms}"),
            rows: std::collections::BTreeMap::new(),
            row_digests: None,
            created_ms,
            candlelog_version: String::new(),
            parent: parent.map(String::from),
            parent_raw_blake3: parent.map(|p| format!("raw{}", &p["snapshots/".len()..])),
        }
    }

    #[test]
    fn retention_keeps_the_snapshot_a_restore_to_the_start_of_the_window_needs() {
        let files = |v: Vec<&SnapshotManifest>| v.into_iter().map(|m| m.created_ms).collect::<Vec<_>>();
        // Spaced snapshots on days 1, 20 and 40; a window from day 30 keeps day 20's.
        let list = [made_at(1, None), made_at(20, None), made_at(40, None)];
        assert_eq!(files(expired(&list, 30)), vec![1]);
        // All before the horizon: only the newest stays; all inside: none goes.
        assert_eq!(files(expired(&list, 50)), vec![1, 20]);
        assert_eq!(files(expired(&list, 1)), Vec::<i64>::new());
        // One taken at the horizon itself covers it alone.
        assert_eq!(files(expired(&list, 20)), vec![1]);
        // A delta kept keeps its chain.
        let chain = [made_at(1, None), made_at(20, Some("snapshots/1")), made_at(40, Some("snapshots/20"))];
        assert_eq!(files(expired(&chain, 50)), Vec::<i64>::new());
    }

    #[test]
    fn object_names_are_exactly_what_backups_write() {
        let h = "ab".repeat(32);
        assert_eq!(parse_segment_object(&format!("segments/00000000000000000042-{h}.seg")), Some((42, h.clone())));
        for bad in [
            format!("segments/0000000000000000042-{h}.seg"),                  // 19 digits
            format!("segments/+0000000000000000042-{h}.seg"),                 // a sign
            format!("segments/00000000000000000000-{h}.seg"),                 // seq 0
            format!("segments/00000000000000000042-{}.seg", "AB".repeat(32)), // upper case
            format!("segments/00000000000000000042-{}.seg", &h[1..]),         // 63 digits
            format!("segments/00000000000000000042-{h}.seg.tmp"),
            format!("snapshots/00000000000000000042-{h}.seg"),
        ] {
            assert_eq!(parse_segment_object(&bad), None, "{bad}");
        }
        assert_eq!(
            parse_manifest_name("snapshots/00000000000000000004-1769097607000.json"),
            Some((4, "snapshots/00000000000000000004-1769097607000.sqlite.zst".into()))
        );
        for bad in [
            "snapshots/4-1769097607000.json",
            "snapshots/00000000000000000004-.json",
            "snapshots/00000000000000000004-17690976070x0.json",
            "snapshots/00000000000000000004-1769097607000.sqlite.zst",
            "segments/00000000000000000004-1769097607000.json",
        ] {
            assert_eq!(parse_manifest_name(bad), None, "{bad}");
        }
    }
}
