//! `candlelog sla` over a scripted month of sync runs.

use candlelog::event::{Event, Interval, Outcome, OutcomeStatus, Run, RunKind};
use candlelog::store::{Paths, Store, StoreOptions, init};

use crate::support::{json, run};

fn day(d: i64) -> i64 {
    // 2026-03-01 00:00 UTC + d days
    1_772_323_200_000 + d * 86_400_000
}

fn sync_run(ended_ms: i64, failed: &[&str]) -> Event {
    let outcomes = ["AUSDT", "BUSDT"]
        .iter()
        .map(|s| Outcome {
            unit: s.to_string(),
            interval: Some(Interval::H4),
            status: if failed.contains(s) { OutcomeStatus::Failed } else { OutcomeStatus::Ok },
            appended: 6,
            revisions: 0,
            message: String::new(),
        })
        .collect();
    Event::Run(Run { kind: RunKind::Sync, id: format!("sync-{ended_ms}"), started_ms: ended_ms - 60_000, ended_ms, outcomes })
}

#[test]
fn a_missed_night_and_a_failed_sync_are_exactly_the_breaches() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::new(&tmp.path().join("data"), None);
    init(&paths).unwrap();
    {
        let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
        // Nightly runs at 01:05 on March 1..31, except the 10th; on the 20th BUSDT fails.
        for d in 0..31 {
            match d {
                9 => continue,
                19 => store.append(&[sync_run(day(d) + 3_900_000, &["BUSDT"])]).unwrap(),
                _ => store.append(&[sync_run(day(d) + 3_900_000, &[])]).unwrap(),
            };
        }
    }
    let dir = &paths.root;
    // A repository with a backup every night at 02:00, except a late one: none on the 15th.
    let repo = tmp.path().join("repo");
    assert_eq!(run(dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let manifest = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let template: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let snapshot = repo.join(template["file"].as_str().unwrap());
    for d in (0..31).filter(|&d| d != 14) {
        // Each manifest describes its own file (format/repository.md): the same snapshot under the night's name.
        let mut m = template.clone();
        let stem = format!("{:020}-{}", m["lsn"].as_u64().unwrap(), day(d) + 7_200_000);
        m["created_ms"] = (day(d) + 7_200_000).into();
        m["file"] = format!("snapshots/{stem}.sqlite.zst").into();
        std::fs::copy(&snapshot, repo.join("snapshots").join(format!("{stem}.sqlite.zst"))).unwrap();
        std::fs::write(repo.join("snapshots").join(format!("{stem}.json")), m.to_string()).unwrap();
    }
    std::fs::remove_file(&snapshot).unwrap();
    std::fs::write(dir.join("candlelog.toml"), format!("[[backup.repositories]]\npath = {:?}\n", repo.to_str().unwrap())).unwrap();
    // Drills: one fine, one that took 45 minutes to restore.
    std::fs::create_dir_all(dir.join("runs")).unwrap();
    std::fs::write(dir.join("runs/drill-a.json"), format!("{{\"ok\": true, \"rto_ms\": 12000, \"ended_ms\": {}}}", day(1) + 14_400_000))
        .unwrap();
    std::fs::write(dir.join("runs/drill-b.json"), format!("{{\"ok\": true, \"rto_ms\": 2700000, \"ended_ms\": {}}}", day(22) + 14_400_000))
        .unwrap();
    let r = run(dir, &["sla", "--days", "30", "--json", "--now", "2026-03-31T12:00:00Z"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    let breaches: Vec<(String, String)> = v["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["kind"].as_str().unwrap().to_string(), b["when"].as_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("missed_sync", "2026-03-10"),
        ("failed_sync", "2026-03-20"),
        ("stale_series", "2026-03-09T01:05:00Z"),
        ("stale_series", "2026-03-09T01:05:00Z"),
        ("stale_series", "2026-03-19T01:05:00Z"),
        ("rpo", "2026-03-14T02:00:00Z"),
        ("rto", "2026-03-23T04:00:00Z"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut got = breaches.clone();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want, "{v:#}");
    assert_eq!(v["nights_ok"], 28);
    assert_eq!(v["nights_total"], 30);
    assert_eq!(v["worst_staleness_hours"], 48.0);
    assert_eq!(v["backups"][0]["worst_gap_hours"], 48.0);
    assert_eq!(v["backups"][0]["backups"], 29);
    assert_eq!(v["drills"].as_array().unwrap().len(), 2);
    let stale: Vec<&str> =
        v["breaches"].as_array().unwrap().iter().filter(|b| b["kind"] == "stale_series").map(|b| b["message"].as_str().unwrap()).collect();
    assert!(
        stale.iter().filter(|m| m.starts_with("BUSDT")).count() == 2 && stale.iter().filter(|m| m.starts_with("AUSDT")).count() == 1,
        "{stale:?}"
    );

    // A clean window: the last 8 days (after the late backup and the slow drill).
    let r = run(dir, &["sla", "--days", "8", "--json", "--now", "2026-03-31T12:00:00Z"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(json(&r)["breaches"].as_array().unwrap().len(), 0);
}

fn backup_run(id: &str, started_ms: i64, repository: &str, status: OutcomeStatus) -> Event {
    let outcome = Outcome { unit: repository.to_string(), interval: None, status, appended: 1, revisions: 0, message: String::new() };
    Event::Run(Run {
        kind: RunKind::Backup,
        id: format!("{id}-{started_ms}"),
        started_ms,
        ended_ms: started_ms + 300_000,
        outcomes: vec![outcome],
    })
}

/// A spaced repository (`snapshot_every`, `snapshot_tail_percent`) gets a
/// snapshot once in a while but its segments every night: the RPO is the
/// nights' backup runs in the log, not the snapshots alone. A night with only
/// retention, or a failed backup, is still a gap.
#[test]
fn nights_whose_backup_sent_only_segments_count_for_the_rpo() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::new(&tmp.path().join("data"), None);
    init(&paths).unwrap();
    let repo = tmp.path().join("repo");
    // A real repository, whose one snapshot (made now) lies after the window.
    let r = run(&paths.root, &["backup", "--to", repo.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let location = json(&r)[0]["repository"].as_str().unwrap().to_string();
    {
        let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
        for d in 0..31 {
            store.append(&[sync_run(day(d) + 3_900_000, &[])]).unwrap();
            let night = day(d) + 7_200_000;
            let backup = match d {
                14 => backup_run("retention", night, &location, OutcomeStatus::Skipped),
                15 => backup_run("backup", night, &location, OutcomeStatus::Failed),
                _ => backup_run("backup", night, &location, OutcomeStatus::Ok),
            };
            store.append(&[backup]).unwrap();
        }
    }
    std::fs::write(paths.root.join("candlelog.toml"), format!("[[backup.repositories]]\npath = {:?}\n", repo.to_str().unwrap())).unwrap();
    let r = run(&paths.root, &["sla", "--days", "30", "--json", "--now", "2026-03-31T12:00:00Z"]);
    let v = json(&r);
    assert_eq!(r.code, 1, "{v:#}");
    let breaches: Vec<(&str, &str)> =
        v["breaches"].as_array().unwrap().iter().map(|b| (b["kind"].as_str().unwrap(), b["when"].as_str().unwrap())).collect();
    assert_eq!(breaches, [("rpo", "2026-03-14T02:05:00Z")], "{v:#}");
    assert_eq!(v["backups"][0]["worst_gap_hours"], 72.0);
    assert_eq!(v["backups"][0]["backups"], 28);
}

/// A directory that started syncing on March 25 did not miss the 24 nights
/// before it existed.
#[test]
fn nights_before_the_directory_existed_are_not_missed() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::new(&tmp.path().join("data"), None);
    init(&paths).unwrap();
    {
        let mut store = Store::open(&paths, StoreOptions::default()).unwrap();
        for d in 24..31 {
            store.append(&[sync_run(day(d) + 3_900_000, &[])]).unwrap();
        }
    }
    let r = run(&paths.root, &["sla", "--days", "30", "--json", "--now", "2026-03-31T12:00:00Z"]);
    let v = json(&r);
    let missed = v["breaches"].as_array().unwrap().iter().filter(|b| b["kind"] == "missed_sync").count();
    assert_eq!(missed, 0, "{v:#}");
    assert_eq!(v["from"], "2026-03-25", "{v:#}");
    assert_eq!(v["nights_total"], 7, "{v:#}");
    assert_eq!(v["nights_ok"], 7, "{v:#}");
}
