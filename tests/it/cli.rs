//! The commands end to end on the real SKRUSDT data and on bad input.

use std::io::Write;
use std::path::Path;

use crate::support::{self, json, run, shared_archives, table_rows};

fn csv_rows_of_shared_archives() -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut zips: Vec<_> = std::fs::read_dir(shared_archives())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "zip"))
        .collect();
    zips.sort();
    for z in zips {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&z).unwrap()).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_index(0).unwrap(), &mut text).unwrap();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with("open_time")) {
            rows.push(line.split(',').map(str::to_string).collect());
        }
    }
    rows
}

#[test]
fn import_of_shared_archives_gives_263_rows_equal_to_the_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = run(&dir, &["import", "--json", shared_archives().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = json(&r);
    assert_eq!(report["appended"], 263);
    assert_eq!(report["files_ok"], 3);

    let rows = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let csv = csv_rows_of_shared_archives();
    assert_eq!(rows.len(), 263);
    assert_eq!(csv.len(), 263);
    for (row, c) in rows.iter().zip(&csv) {
        assert_eq!(row.0, c[0].parse::<i64>().unwrap());
        assert_eq!(row.1, "SKRUSDT");
        for k in 0..6 {
            let col = [1, 2, 3, 4, 5, 7][k];
            assert_eq!(f64::from_bits(row.2[k]), c[col].parse::<f64>().unwrap(), "open time {} column {col}", c[0]);
        }
        assert_eq!(row.3, c[8].parse::<i64>().unwrap());
    }

    // Re-importing appends no candle: only the run record.
    let head = json(&run(&dir, &["status", "--json"]))["head_lsn"].as_u64().unwrap();
    let again = run(&dir, &["import", "--json", shared_archives().to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(json(&again)["appended"], 0);
    assert_eq!(json(&again)["duplicates"], 263);
    assert_eq!(json(&run(&dir, &["status", "--json"]))["head_lsn"].as_u64().unwrap(), head + 1);

    let v = run(&dir, &["verify", "--deep", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let v = json(&v);
    assert_eq!(v["ok"], true);
    assert_eq!(v["candles"], 263);
    assert!(v["problems"].as_array().unwrap().is_empty());
    assert_eq!(v["head_lsn"].as_u64().unwrap(), head + 1);
    assert_eq!(v["head_hash"].as_str().unwrap().len(), 64);
}

#[test]
fn klines_json_import_matches_the_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    assert_eq!(run(&a, &["import", shared_archives().to_str().unwrap()]).code, 0);
    let path = support::shared_klines_json();
    let r = run(&b, &["import", "--format", "klines-json", "--symbol", "SKRUSDT", "--interval", "4h", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(table_rows(&a.join("candles.sqlite"), "ohlcv_h4"), table_rows(&b.join("candles.sqlite"), "ohlcv_h4"));
    // Same candles, exact same decimal text: importing the JSON into `a` adds nothing.
    let r = run(&a, &["import", "--json", "--format", "klines-json", "--symbol", "SKRUSDT", "--interval", "4h", path.to_str().unwrap()]);
    assert_eq!(json(&r)["appended"], 0, "{}", r.stdout);
}

#[test]
fn rebuild_after_deleting_projections_restores_identical_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixtures = tmp.path().join("fixtures");
    support::gen_archives(&fixtures, 3, 2);
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["--segment-bytes", "4096", "import", fixtures.to_str().unwrap()]).code, 0);
    let before = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let status_before = json(&run(&dir, &["status", "--json"]));
    for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm", "index.redb"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let r = run(&dir, &["rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), before);
    let status_after = json(&run(&dir, &["status", "--json"]));
    assert_eq!(status_after["series"], status_before["series"]);
    assert_eq!(status_after["candles"], status_before["candles"]);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn revisions_are_appended_and_the_projection_shows_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rows = support::month_rows(7, 2024, 1);
    support::write_archive(&src, "REVUSDT", 2024, 1, &rows, true);
    assert_eq!(run(&dir, &["import", src.to_str().unwrap()]).code, 0);
    // The exchange corrects the volume of one candle.
    let mut fields: Vec<String> = rows[5].split(',').map(str::to_string).collect();
    fields[5] = "123456789".into();
    rows[5] = fields.join(",");
    support::write_archive(&src, "REVUSDT", 2024, 1, &rows, true);
    let r = run(&dir, &["import", "--json", src.to_str().unwrap()]);
    let r = json(&r);
    assert_eq!(r["appended"], 1);
    assert_eq!(r["revisions"], 1);
    let table = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    assert_eq!(f64::from_bits(table[5].2[4]), 123456789.0);
    let status = json(&run(&dir, &["status", "--json"]));
    assert_eq!(status["revisions"], 1);
    assert_eq!(status["candles"], rows.len());
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    // A rebuild (which sorts the rows by key before inserting them) keeps the newest revision too.
    let r = run(&dir, &["rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), table);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn torn_tail_is_truncated_on_next_open_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
    let seg = support::segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // Half of a frame: a header's magic and some of its fields, no payload.
    std::fs::OpenOptions::new().append(true).open(&seg).unwrap().write_all(b"CLFR\x10\x00\x00\x00\x09\x01").unwrap();
    let v = json(&run(&dir, &["verify", "--json"]));
    assert_eq!(v["ok"], true, "a torn tail is not damage: {v}");
    assert_eq!(v["warnings"][0]["kind"], "torn_tail");
    assert_eq!(v["warnings"][0]["offset"], len);

    let r = run(&dir, &["import", support::shared_archives().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("truncated a torn tail") && r.stderr.contains(&format!("offset {len}")), "{}", r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").len(), 263);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn a_missing_committed_frame_is_reported_as_lost_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
    let dump = run(&dir, &["dump", "--json"]);
    let frames: Vec<serde_json::Value> =
        dump.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|v: &serde_json::Value| v.get("frame").is_some()).collect();
    let last = frames.last().unwrap()["frame"].as_u64().unwrap();
    // Cut the log exactly at the last frame boundary: a clean-looking log that lost a commit.
    let seg = support::segments(&dir).pop().unwrap();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(last).unwrap();
    let v = run(&dir, &["verify", "--json"]);
    assert_eq!(v.code, 1);
    let v = json(&v);
    assert!(v["problems"].as_array().unwrap().iter().any(|p| p["kind"] == "lost_frames"), "{v}");
    let r = run(&dir, &["import", shared_archives().to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("lost frames"), "{}", r.stderr);
}

#[test]
fn a_second_writer_exits_75_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["init"]).code, 0);
    let lock = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(dir.join("lock"), "4242").unwrap();
    let r = run(&dir, &["import", shared_archives().to_str().unwrap()]);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("locked") && r.stderr.contains("pid 4242"), "{}", r.stderr);
    // Readers never take the writer's lock (issue 9): verify runs, and leaves the writer's lock alone.
    let v = run(&dir, &["verify", "--json"]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(json(&v)["writer_pid"], std::process::id());
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 75);
    drop(lock);
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(run(tmp.path(), &["verify", "--no-such-flag"]).code, 2);
    assert_eq!(run(&tmp.path().join("missing"), &["verify"]).code, 2);
    assert_eq!(run(tmp.path(), &["import", "--format", "klines-json", "x.json"]).code, 2);
}

fn bad_input_case(name: &str, write: impl FnOnce(&Path) -> std::path::PathBuf, expect: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
    let before = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad = write(&bad_dir);
    let r = run(&dir, &["import", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{name}: {}", r.stderr);
    let line = r.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{name}: no error line in {}", r.stderr));
    let file_name = bad.file_name().unwrap().to_str().unwrap();
    assert!(line.contains(file_name), "{name}: error does not name the file: {line}");
    for e in expect {
        assert!(line.contains(e), "{name}: error lacks {e:?}: {line}");
    }
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), before, "{name}: committed rows changed");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0, "{name}");
}

#[test]
fn bad_input_fails_alone_with_a_one_line_error() {
    let rows = support::month_rows(3, 2024, 2);
    bad_input_case(
        "corrupt zip",
        |d| {
            let p = d.join("BADUSDT-4h-2024-02.zip");
            std::fs::write(&p, b"PK\x03\x04 this is not a zip").unwrap();
            p
        },
        &[],
    );
    bad_input_case(
        "wrong checksum",
        |d| {
            let p = support::write_archive(d, "SUMUSDT", 2024, 2, &rows, true);
            std::fs::write(d.join("SUMUSDT-4h-2024-02.zip.CHECKSUM"), format!("{}  SUMUSDT-4h-2024-02.zip", "0".repeat(64))).unwrap();
            p
        },
        &["sha256 mismatch", "CHECKSUM"],
    );
    bad_input_case(
        "negative volume",
        |d| {
            let mut rows = rows.clone();
            let mut f: Vec<String> = rows[3].split(',').map(str::to_string).collect();
            f[5] = "-5".into();
            rows[3] = f.join(",");
            support::write_archive(d, "NEGUSDT", 2024, 2, &rows, true)
        },
        &["row 5", "volume"],
    );
    bad_input_case(
        "high below low",
        |d| {
            let mut rows = rows.clone();
            let mut f: Vec<String> = rows[0].split(',').map(str::to_string).collect();
            f[2] = "0.000001".into();
            rows[0] = f.join(",");
            support::write_archive(d, "HILOUSDT", 2024, 2, &rows, false)
        },
        &["row 1", "high"],
    );
    bad_input_case("non-ASCII symbol", |d| support::write_archive(d, "BTCÜSDT", 2024, 2, &rows, true), &["position 4"]);
}

#[test]
fn an_unwritable_data_directory_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let r = run(&file.join("data"), &["import", shared_archives().to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("plain-file/data"), "{}", r.stderr);
}

#[test]
fn the_projection_can_live_inside_an_agent_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let agent = tmp.path().join("agent.db");
    {
        let c = rusqlite::Connection::open(&agent).unwrap();
        c.execute_batch("CREATE TABLE positions (symbol TEXT, qty REAL); INSERT INTO positions VALUES ('SKRUSDT', 12.5);").unwrap();
    }
    let p = agent.to_str().unwrap();
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&agent).unwrap());
    let before = inode();
    assert_eq!(run(&dir, &["--projection", p, "import", shared_archives().to_str().unwrap()]).code, 0);
    assert!(!dir.join("candles.sqlite").exists());
    assert_eq!(inode(), before, "the agent's database is created into, never replaced");
    assert_eq!(table_rows(&agent, "ohlcv_h4").len(), 263);
    assert_eq!(run(&dir, &["--projection", p, "rebuild"]).code, 0);
    assert_eq!(run(&dir, &["--projection", p, "verify", "--deep"]).code, 0);
    let c = rusqlite::Connection::open(&agent).unwrap();
    let qty: f64 = c.query_row("SELECT qty FROM positions WHERE symbol = 'SKRUSDT'", [], |r| r.get(0)).unwrap();
    assert_eq!(qty, 12.5, "rebuild must touch only candlelog's tables");
}

#[test]
fn a_full_disk_mid_import_fails_clearly_and_loses_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fixtures = tmp.path().join("fixtures");
    let total = support::gen_archives(&fixtures, 6, 12);
    // RLIMIT_FSIZE makes writes past 192 KiB fail with EFBIG, as a full disk would.
    let script = format!(
        "ulimit -f 192; trap '' XFSZ; exec {} --data-dir {} --segment-bytes 1000000 import --group-files 4 {}",
        env!("CARGO_BIN_EXE_candlelog"),
        dir.display(),
        fixtures.display()
    );
    let out = std::process::Command::new("bash").arg("-c").arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("File too large") && line.contains(dir.to_str().unwrap()), "{line}");
    let v = run(&dir, &["verify", "--deep"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    // Without the limit the next writer repairs, catches up and completes.
    let r = run(&dir, &["import", fixtures.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").len() as u64, total);
}

#[test]
fn rebuild_quarantines_a_projection_too_damaged_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["rebuild"]).code, 0); // checkpoints the WAL into the main file
    let before = table_rows(&dir.join("candles.sqlite"), "ohlcv_h4");
    std::fs::write(dir.join("candles.sqlite"), b"this is not a database").unwrap();
    std::fs::write(dir.join("index.redb"), b"nor is this").unwrap();
    let r = run(&dir, &["rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("quarantine"), "{}", r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4"), before);
    // Each damaged file is kept, not deleted (the index is moved as the store opens, the projection by rebuild).
    let kept: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("quarantine"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap())
        .map(|f| (f.file_name().to_string_lossy().into_owned(), std::fs::read(f.path()).unwrap()))
        .collect();
    assert!(kept.contains(&("candles.sqlite".into(), b"this is not a database".to_vec())), "{kept:?}");
    assert!(kept.contains(&("index.redb".into(), b"nor is this".to_vec())), "{kept:?}");
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn verify_deep_finds_a_projection_row_edited_deleted_or_added_behind_its_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    let edits = [
        ("a changed close", "UPDATE ohlcv_h4 SET close = close * 1.0001 WHERE timestamp = (SELECT max(timestamp) FROM ohlcv_h4)"),
        ("a changed symbol", "UPDATE ohlcv_h4 SET symbol = 'SKRUSDC' WHERE timestamp = (SELECT min(timestamp) FROM ohlcv_h4)"),
        ("a deleted row", "DELETE FROM ohlcv_h4 WHERE timestamp = (SELECT min(timestamp) FROM ohlcv_h4)"),
        (
            "an extra row",
            "INSERT INTO ohlcv_h4 SELECT timestamp - 1, symbol, open, high, low, close, volume, quote_volume, trades_count FROM ohlcv_h4 LIMIT 1",
        ),
    ];
    for (what, sql) in edits {
        let work = tmp.path().join(what.replace(' ', "_"));
        support::copy_dir(&dir, &work);
        rusqlite::Connection::open(work.join("candles.sqlite")).unwrap().execute_batch(sql).unwrap();
        assert_eq!(run(&work, &["verify"]).code, 0, "{what}: the shallow audit does not read rows");
        let v = run(&work, &["verify", "--deep", "--json"]);
        assert_eq!(v.code, 1, "{what}: {}", v.stdout);
        let problems = json(&v)["problems"].as_array().unwrap().clone();
        assert!(
            problems.iter().any(|p| p["kind"] == "projection_rows" && p["message"].as_str().unwrap().contains("ohlcv_h4")),
            "{what}: {problems:?}"
        );
    }
}

/// Every command that prints exits cleanly when its reader has gone away
/// (`candlelog status --json | head`): exit 0, no panic (issue 9, part 4).
#[test]
fn a_closed_stdout_ends_every_command_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    let r = repo.to_str().unwrap();
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["verify", "--json"],
        &["verify", "--deep"],
        &["dump", "--events", "--json"],
        &["dump"],
        &["health", "--json"],
        &["sla", "--json"],
        &["backup", "list", "--from", r, "--json"],
        &["backup", "verify", "--from", r],
    ] {
        let mut child = support::bin()
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first write
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // health and sla report through their exit code; every other command ends with success.
        if !matches!(args[0], "health" | "sla") {
            assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        }
    }
}

/// Exit 2 only for usage and configuration; damage and an unreachable or
/// damaged repository exit 1 (issue 9, part 4).
#[test]
fn exit_codes_tell_a_typo_from_an_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", shared_archives().to_str().unwrap()]).code, 0);
    // Usage: a malformed repository address, a missing data directory.
    assert_eq!(run(&dir, &["backup", "list", "--from", "s3://"]).code, 2);
    assert_eq!(run(&tmp.path().join("nowhere"), &["status"]).code, 2);
    // An unreachable S3 endpoint is an outage, not a typo.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = support::bin()
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .args(["--data-dir", dir.to_str().unwrap(), "backup", "list", "--from", "s3://bucket/prefix"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("s3://bucket/prefix"), "{stderr}");
    // A damaged repository object: exit 1, naming it.
    let repo = tmp.path().join("repo");
    assert_eq!(run(&dir, &["backup", "--to", repo.to_str().unwrap()]).code, 0);
    std::fs::write(repo.join("candlelog-repository.json"), "{not json").unwrap();
    let r = run(&dir, &["backup", "verify", "--from", repo.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("candlelog-repository.json"), "{}", r.stderr);
    // A corrupt log base: damage, exit 1.
    std::fs::write(dir.join("log/base.json"), "{}").unwrap();
    let r = run(&dir, &["status"]);
    assert_eq!(r.code, 0, "status does not read the base: {}", r.stderr);
    let v = run(&dir, &["verify", "--json"]);
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert!(json(&v)["problems"].as_array().unwrap().iter().any(|p| p["kind"] == "log_base"), "{}", v.stdout);
}

/// Issue 10, part 9 (what a file can make candlelog do): a FIFO given to
/// import is refused at once instead of hanging with the lock held; an
/// oversized .CHECKSUM is refused without being echoed; a lock that is not a
/// regular file gets a clear error, and recover moves it aside.
#[test]
fn odd_files_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["init"]).code, 0);

    let fifo = tmp.path().join("BTCUSDT-4h-2024-01.csv");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut child = support::bin()
        .args(["--data-dir", dir.to_str().unwrap(), "import"])
        .arg(&fifo)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("import of a FIFO hangs");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");

    let archives = tmp.path().join("archives");
    std::fs::create_dir_all(&archives).unwrap();
    let zip = support::write_archive(&archives, "BTCUSDT", 2024, 2, &support::month_rows(1, 2024, 2), true);
    std::fs::write(archives.join("BTCUSDT-4h-2024-02.zip.CHECKSUM"), "Q".repeat(5000)).unwrap();
    let r = run(&dir, &["import", zip.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("larger than 4096 bytes"), "{}", r.stderr);
    assert!(!r.stderr.contains("QQQQ"), "the file is not echoed: {}", r.stderr);

    std::fs::remove_file(dir.join("lock")).unwrap();
    std::fs::create_dir(dir.join("lock")).unwrap();
    let r = run(&dir, &["import", support::shared_archives().to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("is not a regular file") && r.stderr.contains("candlelog recover"), "{}", r.stderr);
    let r = run(&dir, &["recover", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(dir.join("lock").is_file());
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
}

/// Issue 10, part 4 (what import accepts from a file): rows outside the
/// month the name gives, a month 13, a zip entry for another symbol, zero
/// prices and taker-buy volume above volume are refused, naming file and row.
#[test]
fn import_refuses_rows_the_file_name_or_the_market_rules_out() {
    let rows = support::month_rows(5, 2024, 3);
    // A row of April in the March archive.
    bad_input_case(
        "a row outside the month",
        |d| {
            let mut r = rows.clone();
            r.extend(support::month_rows(5, 2024, 4).into_iter().take(1));
            support::write_archive(d, "ABCUSDT", 2024, 3, &r, true)
        },
        &["lies outside 2024-03", "row 188"],
    );
    bad_input_case(
        "month 13",
        |d| {
            let p = d.join("ABCUSDT-4h-2024-13.csv");
            std::fs::write(&p, rows.join("\n")).unwrap();
            p
        },
        &["2024-13 is not a date"],
    );
    bad_input_case(
        "a zip entry for another symbol",
        |d| {
            let good = support::write_archive(d, "XYZUSDT", 2024, 3, &rows, true);
            let renamed = d.join("ABCUSDT-4h-2024-03.zip");
            std::fs::rename(&good, &renamed).unwrap();
            std::fs::remove_file(d.join("XYZUSDT-4h-2024-03.zip.CHECKSUM")).unwrap();
            renamed
        },
        &["XYZUSDT-4h-2024-03.csv", "not ABCUSDT-4h-2024-03.csv"],
    );
    let with = |f: &dyn Fn(&mut Vec<String>)| {
        let mut fields: Vec<String> = rows[5].split(',').map(str::to_string).collect();
        f(&mut fields);
        let mut r = rows.clone();
        r[5] = fields.join(",");
        r
    };
    let zero_price = with(&|f| f[3] = "0.000000".into()); // low
    bad_input_case("a zero price", |d| support::write_archive(d, "ABCUSDT", 2024, 3, &zero_price, true), &["row 7", "low", "is zero"]);
    let taker_above = with(&|f| f[9] = format!("{}", f[5].parse::<u64>().unwrap() + 1));
    bad_input_case(
        "taker-buy volume above volume",
        |d| support::write_archive(d, "ABCUSDT", 2024, 3, &taker_above, true),
        &["row 7", "taker_buy_volume", "above the volume"],
    );
}

/// Issue 10, part 4: only candles closed when their file was written enter
/// the log. A saved klines response ends with the candle still open then: it
/// is left out with a warning. An archive row from the future is refused.
#[test]
fn import_keeps_only_candles_closed_when_the_file_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // The real saved response plus the candle open right now, as the exchange would end it.
    let text = std::fs::read_to_string(support::shared_klines_json()).unwrap();
    let mut rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let n = rows.len();
    let h4 = support::H4;
    let open = jiff::Timestamp::now().as_millisecond() / h4 * h4;
    let mut current = rows[n - 1].clone();
    current[0] = open.into();
    current[6] = (open + h4 - 1).into();
    rows.push(current);
    let saved = tmp.path().join("SKRUSDT-4h-now.json");
    std::fs::write(&saved, serde_json::to_string(&rows).unwrap()).unwrap();
    let r = run(&dir, &["import", "--format", "klines-json", "--symbol", "SKRUSDT", "--interval", "4h", saved.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("still open when the file was written"), "{}", r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").len(), n, "the open candle is not stored");

    // A CSV row of 2099 in a 2099 archive: from the future, refused naming the file.
    let future = tmp.path().join("ABCUSDT-4h-2099-01.csv");
    let t = support::month_start(2099, 1);
    std::fs::write(&future, format!("{t},1.0,1.0,1.0,1.0,1,{},1.0,1,0,0.0,0\n", t + h4 - 1)).unwrap();
    let r = run(&dir, &["import", future.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("ABCUSDT-4h-2099-01.csv") && r.stderr.contains("was not closed when the file was written"), "{}", r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").len(), n);
}

/// Issue 10, part 4: an archive without a `.CHECKSUM` is imported with a
/// warning; `--require-checksum` makes it an error naming the file.
#[test]
fn a_missing_checksum_warns_and_require_checksum_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let archives = tmp.path().join("archives");
    std::fs::create_dir_all(&archives).unwrap();
    let zip = support::write_archive(&archives, "ABCUSDT", 2024, 5, &support::month_rows(9, 2024, 5), true);
    std::fs::remove_file(archives.join("ABCUSDT-4h-2024-05.zip.CHECKSUM")).unwrap();
    let r = run(&dir, &["import", "--require-checksum", zip.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("ABCUSDT-4h-2024-05.zip") && r.stderr.contains("--require-checksum"), "{}", r.stderr);
    let r = run(&dir, &["import", zip.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no .CHECKSUM beside it"), "{}", r.stderr);
    assert_eq!(table_rows(&dir.join("candles.sqlite"), "ohlcv_h4").len(), 31 * 6);
}
