//! Segments as the chain needs them: the repositories' copies, the local
//! files, salvage of what is damaged, and what is not on the chain.

use super::*;

/// One repository's segment objects, every copy of each segment number.
pub(super) struct RemoteRepo<'a> {
    pub(super) repo: &'a dyn Repository,
    pub(super) start: Option<LogStart>,
    /// seq → (object name, blake3 hex) of each copy.
    pub(super) objects: BTreeMap<u64, Vec<(String, String)>>,
}

/// Every repository's segments, listed once. A repository may hold more than
/// one object for a segment number (one of another chain, or the copy of a
/// segment before a loss was recorded in it): each is a candidate, and the
/// caller takes the one that fits the chain.
pub(super) struct Remote<'a> {
    pub(super) repos: Vec<RemoteRepo<'a>>,
}

impl<'a> Remote<'a> {
    pub(super) fn list(repos: &[&'a dyn Repository]) -> Result<Remote<'a>> {
        let mut out = Vec::new();
        for repo in repos {
            let start = log_start(*repo)?;
            let first = start.as_ref().map_or(1, |s| s.first_seq);
            let mut objects: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
            for name in repo.list("segments")? {
                if let Some((seq, hash)) = parse_segment_object(&name).filter(|(seq, _)| *seq >= first) {
                    objects.entry(seq).or_default().push((name, hash));
                }
            }
            out.push(RemoteRepo { repo: *repo, start, objects });
        }
        Ok(Remote { repos: out })
    }

    pub(super) fn has(&self, seq: u64) -> bool {
        self.repos.iter().any(|r| r.objects.contains_key(&seq))
    }

    pub(super) fn max_seq(&self) -> u64 {
        self.repos.iter().filter_map(|r| r.objects.keys().next_back().copied()).max().unwrap_or(0)
    }

    /// The first copy of segment `seq`, in any repository, whose bytes match
    /// the hash in its name and that `fits`; damaged copies are passed over.
    pub(super) fn fitting(&self, seq: u64, fits: impl Fn(&[u8]) -> bool) -> Result<Option<Vec<u8>>> {
        for r in &self.repos {
            for (name, hash) in r.objects.get(&seq).into_iter().flatten() {
                let bytes = match r.repo.read_all(name, MAX_SEGMENT_OBJECT) {
                    Ok(b) => b,
                    Err(e @ RepoError::Damaged { .. }) => {
                        tracing::warn!(segment = seq, "skipped a repository copy: {e}");
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                if blake3::hash(&bytes).to_hex().as_str() != hash {
                    tracing::warn!(segment = seq, object = %name, "skipped a repository copy: blake3 differs from the hash in its name");
                    continue;
                }
                if fits(&bytes) {
                    return Ok(Some(bytes));
                }
            }
        }
        Ok(None)
    }
}

/// What a segment's repair needs to know about the whole log.
pub(super) struct RepairCtx<'a, 'r> {
    pub(super) paths: &'a Paths,
    pub(super) remote: &'a Remote<'r>,
    pub(super) local_max: u64,
    pub(super) remote_max: u64,
    /// The chain's last segment.
    pub(super) last: u64,
    /// The newest `commit_ms` before the segment: a loss frame never goes below it.
    pub(super) commit_floor: i64,
}

/// A segment recover rebuilt, kept to write it once more with the lost candles named.
pub(super) struct SalvageInput {
    pub(super) data: Option<Vec<u8>>,
    pub(super) spec: SalvageSpec,
    pub(super) out: Salvaged,
}

/// A repository whose chain identity the data directory's chain does not
/// pass through is another chain's: nothing of it is mixed into this one.
pub(super) fn refuse_foreign(paths: &Paths, repo: &dyn Repository) -> Result<()> {
    let Some(id) = RepoSegments::list(repo)?.identity else { return Ok(()) };
    // A log base too damaged to tell is what recover is here to repair: the chain checks still apply.
    if matches!(crate::store::passes_through(paths, id), Ok(Some(false))) {
        let local = crate::store::chain_identity(paths).ok().flatten().map(crate::store::ChainId::of);
        return Err(RepoError::incomplete(
            repo.location(),
            format!(
                "holds another chain (its identity: {}) than the data directory {} (its chain: {}); recover does not use it: give a repository of this data directory's chain",
                crate::store::ChainId::of(id),
                paths.root.display(),
                local.map_or_else(|| "unknown".into(), |c| c.to_string())
            ),
        )
        .into());
    }
    Ok(())
}

/// Segment `seq` as the chain needs it: the local copy when it checks out
/// (extended from a repository when the repository's copy continues the same
/// chain further), else a repository's copy that fits, else the local bytes
/// salvaged: every frame that still verifies kept, a rebuilt header or
/// footer, and what is lost recorded as a loss frame. `None`: nothing fits,
/// the log ends before it.
pub(super) fn repair_segment(
    ctx: &RepairCtx<'_, '_>,
    cursor: &ChainCursor,
    path: &Path,
    seq: u64,
    salvaged: &mut Vec<(PathBuf, SalvageInput)>,
    r: &mut RecoverReport,
) -> Result<Option<(Vec<u8>, Checked)>> {
    let (paths, remote, is_last) = (ctx.paths, ctx.remote, seq == ctx.last);
    let current = std::fs::read(path).ok();
    if let Some(bytes) = &current {
        let local = cursor.check(path, seq, bytes, is_last);
        if local.is_clean() {
            // The newest local segment may have lost committed frames at its end (a clean cut):
            // a repository copy that extends the same chain brings them back.
            let s = &local.scan;
            let extends = |copy: &[u8]| {
                let longer = cursor.check(path, seq, copy, is_last);
                longer.is_clean()
                    && longer.scan.next_lsn > s.next_lsn
                    && longer.scan.frames.iter().any(|f| f.header.last_lsn() == s.next_lsn - 1 && f.hash == s.head_hash)
            };
            if seq == ctx.local_max
                && seq <= ctx.remote_max
                && let Some(copy) = remote.fitting(seq, extends)?
            {
                let longer = cursor.check(path, seq, &copy, is_last);
                {
                    write_segment(path, &copy)?;
                    r.fetched_segments.push(format!("{} (frames up to LSN {})", path.display(), longer.scan.next_lsn - 1));
                    return Ok(Some((copy, longer)));
                }
            }
            // A segment holding a recorded loss is refilled by a repository copy of the same range without one.
            let refills = |copy: &[u8]| {
                let full = cursor.check(path, seq, copy, is_last);
                full.is_clean() && !holds_loss(&full) && full.scan.next_lsn >= local.scan.next_lsn
            };
            if holds_loss(&local)
                && let Some(copy) = remote.fitting(seq, refills)?
            {
                let full = cursor.check(path, seq, &copy, is_last);
                {
                    let q = quarantine(paths, &[path])?;
                    r.quarantined.push(q.join(path.file_name().unwrap_or_default()).display().to_string());
                    r.replaced_segments.push(format!("{} (its recorded loss refilled from the repository)", path.display()));
                    write_segment(path, &copy)?;
                    return Ok(Some((copy, full)));
                }
            }
            return Ok(current.map(|b| (b, local)));
        }
    }
    if let Some(copy) = remote.fitting(seq, |c| cursor.check(path, seq, c, is_last).is_clean())? {
        let checked = cursor.check(path, seq, &copy, is_last);
        {
            if current.is_some() {
                let q = quarantine(paths, &[path])?;
                r.quarantined.push(q.join(path.file_name().unwrap_or_default()).display().to_string());
                r.replaced_segments.push(path.display().to_string());
            } else {
                r.fetched_segments.push(path.display().to_string());
            }
            write_segment(path, &copy)?;
            return Ok(Some((copy, checked)));
        }
    }
    if remote.has(seq) {
        r.repaired.push(format!("segment {seq}: no repository copy fits the chain; none used"));
    }
    let Some(start) = cursor.expect() else {
        r.problems.push(format!("segment {seq}: where the chain stands before it is unknown; the log ends before it"));
        return Ok(None);
    };
    let end = if is_last { None } else { next_start(ctx, seq + 1)? };
    let spec = SalvageSpec { seq, start, end, recorded_ms: now_ms(), commit_floor: ctx.commit_floor };
    let what = path.display().to_string();
    let out = match salvage(current.as_deref(), spec, &what, &[]) {
        Ok(out) => out,
        Err(m) => {
            r.problems.push(format!("segment {seq} is damaged or missing, no repository holds a copy, and it cannot be salvaged: {m}"));
            return Ok(None);
        }
    };
    let checked = cursor.check(path, seq, &out.bytes, is_last);
    if let Some(d) = checked.damage.first() {
        r.problems
            .push(format!("segment {seq}: the salvaged segment does not check out ({}: {}); the log ends before it", d.kind, d.message));
        return Ok(None);
    }
    if current.is_some() {
        let q = quarantine(paths, &[path])?;
        r.quarantined.push(q.join(path.file_name().unwrap_or_default()).display().to_string());
    }
    write_segment(path, &out.bytes)?;
    r.repaired.extend(out.repairs.iter().cloned());
    r.losses.extend(out.losses.iter().map(|l| format!("LSN {}..={} ({} LSNs): {}", l.first_lsn, l.last_lsn, l.lsn_count(), l.reason)));
    let bytes = out.bytes.clone();
    salvaged.push((path.to_path_buf(), SalvageInput { data: current, spec, out }));
    Ok(Some((bytes, checked)))
}

pub(super) fn holds_loss(c: &Checked) -> bool {
    c.scan.frames.iter().any(|f| f.header.event_format == EVENT_FORMAT_LOSS)
}

pub(super) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Where segment `seq` starts, from its header (the local file's, else a repository copy's).
pub(super) fn next_start(ctx: &RepairCtx<'_, '_>, seq: u64) -> Result<Option<ChainPos>> {
    let from =
        |bytes: &[u8]| SegmentHeader::decode(bytes).ok().filter(|h| h.seq == seq).map(|h| ChainPos::new(h.first_lsn - 1, h.base_hash));
    if let Some(p) = std::fs::read(segment_path(&ctx.paths.log, seq)).ok().and_then(|b| from(&b)) {
        return Ok(Some(p));
    }
    Ok(ctx.remote.fitting(seq, |b| from(b).is_some())?.and_then(|b| from(&b)))
}

/// The chain's last segment: segment numbers run on from `first` as long as
/// the data directory or a repository holds them. A single missing number is
/// bridged when the segment after it is there (its range becomes a loss);
/// files beyond a longer hole are not on the chain.
pub(super) fn chain_end(first: u64, local: &HashMap<u64, PathBuf>, remote: &Remote<'_>) -> u64 {
    let present = |s: u64| local.contains_key(&s) || remote.has(s);
    let mut last = first - 1;
    let mut s = first;
    loop {
        if present(s) {
            last = s;
        } else if !present(s + 1) {
            return last;
        }
        s += 1;
    }
}

/// Sets aside what in `log/` is not on the chain: segment files beyond its end
/// and files that are no part of a log. One that is a readable segment of its
/// own (its header names it) may hold acknowledged candles: that is a problem.
pub(super) fn set_aside_strays(paths: &Paths, local: &HashMap<u64, PathBuf>, first: u64, last: u64, r: &mut RecoverReport) -> Result<()> {
    let mut strays: Vec<PathBuf> = Vec::new();
    let mut beyond: Vec<_> = local.iter().filter(|(s, _)| **s > last).collect();
    beyond.sort();
    for (seq, path) in beyond {
        let header = std::fs::read(path).ok().and_then(|b| SegmentHeader::decode(&b).ok());
        if header.is_some_and(|h| h.seq == *seq) {
            r.problems.push(format!(
                "{}: segment {seq} is not on the chain (it ends at segment {last}, from segment {first}); set aside, its candles are not in the result",
                path.display()
            ));
        } else {
            r.repaired.push(format!("{}: not a segment of this log; set aside", path.display()));
        }
        strays.push(path.clone());
    }
    let known = [paths.base_manifest(), paths.base_snapshot()];
    if let Ok(entries) = std::fs::read_dir(&paths.log) {
        for e in entries.flatten() {
            let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            let ours = parse_segment_name(&name).is_some() || known.contains(&path) || (name.starts_with('.') && name.ends_with(".tmp"));
            if is_file && !ours {
                r.repaired.push(format!("{}: not part of the log; set aside", path.display()));
                strays.push(path);
            }
        }
    }
    if !strays.is_empty() {
        let refs: Vec<&Path> = strays.iter().map(PathBuf::as_path).collect();
        r.quarantined.push(quarantine(paths, &refs)?.display().to_string());
    }
    Ok(())
}
