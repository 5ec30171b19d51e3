//! `candlelog run`'s `[run.schedule]` (issue 13), driving the real binary against
//! `fake-binance`: scheduled backups, drills and reconcile syncs run inside the service
//! while the stream keeps appending; a failing job leaves a failed Run record and the
//! service goes on; a one-shot backup meanwhile exits 75 naming the service. Schedules
//! with a seconds field put jobs seconds apart. No timing assertion: every wait polls.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use fake_binance::{Clock, Config, FakeExchange};

use super::service::{MINUTE, SYMBOLS, T0, assert_complete_and_equal, newest, stored, wait_for};
use crate::support::{bin, run};

/// Starts the service on `dir` (whose candlelog.toml is `toml`); its stderr goes to `log`.
fn start(fx: &FakeExchange, dir: &Path, toml: &str, log: &Path) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("candlelog.toml"), toml).unwrap();
    bin()
        .env("RUST_LOG", "info")
        .args(["--data-dir", dir.to_str().unwrap(), "run", "--json", "--symbols", &SYMBOLS.join(","), "--interval", "1m"])
        .args(["--lookback", "3", "--exchange-url", &fx.url(), "--stream-url", &fx.stream_url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

/// The Run records in the log: (kind, id, outcome statuses).
fn runs(dir: &Path) -> Vec<(String, String, Vec<String>)> {
    let dump = run(dir, &["dump", "--events", "--json"]);
    dump.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let r = v.get("run")?;
            let statuses = r["outcomes"].as_array()?.iter().map(|o| o["status"].as_str().unwrap_or("").to_string()).collect();
            Some((r["kind"].as_str()?.to_string(), r["id"].as_str()?.to_string(), statuses))
        })
        .collect()
}

/// Snapshot manifests a repository directory holds.
fn snapshots(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("snapshots"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0)
}

/// SIGTERM, exit 0, the printed report.
fn stop(child: Child, log: &Path) -> serde_json::Value {
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).expect("the report is printed")
}

#[test]
fn scheduled_backups_drills_and_syncs_run_inside_the_service_while_it_streams() {
    let fx = FakeExchange::start(Config { clock: Clock::accelerated(T0, 60), ..Config::default() }).unwrap();
    fx.set_stream_update(Duration::from_millis(50));
    let tmp = tempfile::tempdir().unwrap();
    let (dir, repo, log) = (tmp.path().join("data"), tmp.path().join("repo"), tmp.path().join("service.log"));
    let toml = format!(
        "[run.schedule]\nsync = \"*/3 * * * * *\"\nbackup = \"*/2 * * * * *\"\ndrill = \"*/5 * * * * *\"\nretention = \"off\"\n\n\
         [[backup.repositories]]\npath = {:?}\nkeep_days = 30\n",
        repo.to_str().unwrap()
    );
    let mut child = start(&fx, &dir, &toml, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_for("the stream connects", &mut child, || fx.stream_stats().connections_open == 1);
    wait_for("a scheduled backup publishes a snapshot", &mut child, || snapshots(&repo) >= 1);
    let at_first_backup = newest(&stored(&dir));
    // The stream keeps committing between and during the backups, which read beside the writer.
    wait_for("more closes stored while backups keep running", &mut child, || {
        newest(&stored(&dir)) >= at_first_backup + 3 * MINUTE && snapshots(&repo) >= 3
    });
    assert_complete_and_equal(&fx, &stored(&dir), &log_text());

    // The writer is the service: a one-shot backup meanwhile is refused, naming it.
    let refused = run(&dir, &["backup", "--to", repo.to_str().unwrap()]);
    assert_eq!(refused.code, 75, "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("candlelog run service"), "{}", refused.stderr);
    // Readers work as always.
    assert_eq!(run(&dir, &["status"]).code, 0);

    // A snapshot is published before its Run record reaches the log (the job thread sends
    // it to the writer when done): wait for the records, not only the snapshots.
    wait_for("a scheduled drill, a scheduled sync and three backup records", &mut child, || {
        let r = runs(&dir);
        r.iter().any(|(k, _, s)| k == "drill" && s.iter().all(|s| s == "ok"))
            && r.iter().filter(|(k, id, _)| k == "backup" && id.starts_with("backup-")).count() >= 3
            && log_text().contains("scheduled reconcile sync starting")
            && log_text().contains("scheduled sync done")
    });
    let before_stop = runs(&dir);
    let backups: Vec<_> = before_stop.iter().filter(|(k, id, _)| k == "backup" && id.starts_with("backup-")).collect();
    assert!(backups.len() >= 3, "{before_stop:?}");
    assert!(backups.iter().all(|(_, _, s)| s.iter().all(|s| s == "ok")), "{before_stop:?}\n{}", log_text());

    let report = stop(child, &log);
    assert!(report["jobs"]["started"]["backup"].as_u64().unwrap() >= 3, "{report}");
    assert!(report["jobs"]["started"]["sync"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["jobs"]["started"]["drill"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["jobs"]["last_failure"], serde_json::Value::Null, "{report}");
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");

    // What the service backed up is sound and restores to the rows it had then.
    assert_eq!(run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep"]).code, 0);
    let drill = run(&dir, &["drill", "--from", repo.to_str().unwrap()]);
    assert_eq!(drill.code, 0, "{}\n{}", drill.stdout, drill.stderr);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);

    // The jobs' samples were recorded as the one-shot commands' are: the start sync and
    // the reconcile syncs count as syncs, the backups as backups (DailySyncFailed and
    // BackupStale read these).
    let prom = tmp.path().join("candlelog.prom");
    assert_eq!(run(&dir, &["--metrics-file", prom.to_str().unwrap(), "status"]).code, 0);
    let text = std::fs::read_to_string(&prom).unwrap();
    let sample = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} missing:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(sample("candlelog_sync_last_success_timestamp_seconds ") > 0.0, "{text}");
    assert!(sample("candlelog_sync_runs_total{outcome=\"success\"}") >= 2.0, "{text}");
    assert!(sample("candlelog_backup_last_success_timestamp_seconds{") > 0.0, "{text}");
}

#[test]
fn a_failing_scheduled_backup_leaves_a_failed_run_and_the_service_goes_on() {
    let fx = FakeExchange::start(Config { clock: Clock::accelerated(T0, 60), ..Config::default() }).unwrap();
    fx.set_stream_update(Duration::from_millis(50));
    let tmp = tempfile::tempdir().unwrap();
    let (dir, log) = (tmp.path().join("data"), tmp.path().join("service.log"));
    // A repository that cannot be created: its parent is a regular file.
    let blocker = tmp.path().join("not-a-directory");
    std::fs::write(&blocker, b"x").unwrap();
    let repo = blocker.join("repo");
    let toml = format!(
        "[run.schedule]\nsync = \"off\"\nbackup = \"*/2 * * * * *\"\ndrill = \"off\"\n\n[[backup.repositories]]\npath = {:?}\n",
        repo.to_str().unwrap()
    );
    let mut child = start(&fx, &dir, &toml, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_for("the stream connects", &mut child, || fx.stream_stats().connections_open == 1);
    wait_for("a failed backup Run record", &mut child, || {
        runs(&dir).iter().any(|(k, _, s)| k == "backup" && s.iter().any(|s| s == "failed"))
    });
    // The Run record is written before the failure is logged: wait for the line too.
    wait_for("the failure logged", &mut child, || log_text().contains("scheduled backup failed"));
    // The service goes on: closes keep arriving after the failure.
    let after_failure = newest(&stored(&dir));
    wait_for("closes stored after the failed backup", &mut child, || newest(&stored(&dir)) >= after_failure + 2 * MINUTE);
    assert_complete_and_equal(&fx, &stored(&dir), &log_text());

    let report = stop(child, &log);
    assert!(report["jobs"]["failed"]["backup"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["jobs"]["last_failure"].as_str().unwrap().contains("not-a-directory"), "{report}");
    // A failed job is not the service's failure.
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
}
