//! The log base (`log/base.json` and its snapshot): what is wrong with it,
//! and bringing it back from a repository.

use super::*;

/// What is wrong with the log base, when something is: `base.json` missing
/// while the log starts after segment 1, damaged, or its snapshot file
/// missing or not the one it names.
pub(super) fn base_missing(paths: &Paths, local: &HashMap<u64, PathBuf>) -> Option<String> {
    let (json, file) = (paths.base_manifest(), paths.base_snapshot());
    match LogBase::load(paths) {
        Err(e) => Some(format!("{} is damaged ({e})", json.display())),
        Ok(None) => {
            let first = local.keys().copied().min()?;
            (first > 1).then(|| format!("the log starts at segment {first} but {} is missing", json.display()))
        }
        Ok(Some(b)) => match std::fs::read(&file) {
            Ok(bytes)
                if bytes.len() as u64 == b.snapshot.file_bytes && blake3::hash(&bytes).to_hex().as_str() == b.snapshot.file_blake3 =>
            {
                None
            }
            Ok(_) => Some(format!("{} is damaged (its size or blake3 differs from {})", file.display(), json.display())),
            Err(e) => Some(format!("{} cannot be read ({e})", file.display())),
        },
    }
}

/// Brings the log base back from the first repository that holds the log's
/// start: its `log-start.json` and a snapshot at or after it (the one the
/// local `base.json` names, when that is intact). A repository holding the
/// whole log makes the base unnecessary: the older segments are fetched
/// instead. The damaged files are set aside. `false`: no repository can.
pub(super) fn repair_base(paths: &Paths, remote: &Remote<'_>, missing: &str, r: &mut RecoverReport) -> Result<bool> {
    let named = LogBase::load(paths).ok().flatten().map(|b| b.snapshot.file);
    let set_aside = |r: &mut RecoverReport| -> Result<()> {
        let files: Vec<PathBuf> = [paths.base_manifest(), paths.base_snapshot()].into_iter().filter(|f| f.exists()).collect();
        if !files.is_empty() {
            let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            r.quarantined.push(quarantine(paths, &refs)?.display().to_string());
        }
        Ok(())
    };
    for source in &remote.repos {
        let repo = source.repo;
        let Some(s) = &source.start else {
            if source.objects.contains_key(&1) {
                set_aside(r)?;
                r.repaired.push(format!("{missing}: {} holds the whole log; its older segments are fetched instead", repo.location()));
                return Ok(true);
            }
            continue;
        };
        let (list, _) = manifests(repo)?;
        let mut candidates: Vec<&SnapshotManifest> = list.iter().filter(|m| m.lsn + 1 >= s.first_lsn).collect();
        // The snapshot the damaged base named first, then the oldest: the base is where replay starts.
        candidates.sort_by_key(|m| (Some(&m.file) != named.as_ref(), m.lsn));
        for m in candidates {
            let tmp = paths.log.join(".base-check.sqlite");
            if let Err(e) = crate::backup::chain::materialize(repo, &list, m, &tmp) {
                tracing::warn!(snapshot = %m.file, "skipped for the log base: {e}");
                continue;
            }
            set_aside(r)?;
            let base = LogBase {
                format: crate::store::base::BASE_FORMAT,
                first_seq: s.first_seq,
                first_lsn: s.first_lsn,
                base_hash: s.base_hash.clone(),
                snapshot: m.clone(),
                chain: RepoSegments::list(repo).ok().and_then(|l| l.identity).map(crate::store::ChainId::of),
            };
            let kept = crate::backup::chain::keep_as_base(repo, m, &tmp, base, paths);
            let _ = std::fs::remove_file(&tmp);
            kept?;
            r.repaired.push(format!("{missing}: the log base was brought back from {} (snapshot at LSN {})", repo.location(), m.lsn));
            return Ok(true);
        }
    }
    Ok(false)
}
