//! Issue 10, part 7: untrusted snapshot contents. A snapshot whose hashes
//! were recomputed after a price was changed, one relabelled from another
//! chain, or one carrying a trigger, a view, a table or an index of its own
//! passes every hash check; restore, recover and drill must still refuse it
//! (schema, state row, row digests against the log) and fall back to an older
//! snapshot or the log, and `backup verify --deep` must name it.
//!
//! Every case tampers with the real bytes of a real backup: the SQLite file
//! is decompressed, changed with SQLite, compressed again, and the manifest's
//! sizes and hashes (and, where the case says so, its `row_digests`) are
//! recomputed so that the old checks pass.

use std::path::{Path, PathBuf};

use crate::support::{self, json, run, table_rows};

/// A live data directory and a repository of it holding snapshot S1 (after
/// the real SKRUSDT archives) and S2 (after more), and segments beyond S2
/// with candles in them (a third backup's snapshot removed), so whatever is
/// installed from S2 sees rows replayed on top of it.
struct Setup {
    live: PathBuf,
    repo: PathBuf,
    /// A backup of another data directory (another chain).
    other_repo: PathBuf,
    /// Manifest stems (`snapshots/<lsn>-<ms>`) of S1 and S2, and their LSNs.
    s1: (String, u64),
    s2: (String, u64),
}

fn manifests(repo: &Path) -> Vec<(String, serde_json::Value)> {
    let mut v: Vec<(String, serde_json::Value)> = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let stem = format!("snapshots/{}", p.file_stem().unwrap().to_str().unwrap());
            (stem, serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap())
        })
        .collect();
    v.sort_by_key(|(s, _)| s.clone());
    v
}

fn backup(dir: &Path, repo: &Path) {
    let r = run(dir, &["backup", "--to", repo.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

fn import(dir: &Path, what: &Path) {
    let r = run(dir, &["import", what.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

fn setup(tmp: &Path) -> Setup {
    let live = tmp.join("live");
    let repo = tmp.join("repo");
    let (more, most) = (tmp.join("more"), tmp.join("most"));
    support::gen_archives(&more, 2, 2);
    support::gen_archives(&most, 3, 3);
    import(&live, &support::shared_archives());
    backup(&live, &repo);
    import(&live, &more);
    backup(&live, &repo);
    import(&live, &most);
    backup(&live, &repo);
    let m = manifests(&repo);
    assert_eq!(m.len(), 3, "{m:?}");
    // S3 goes: the repository's segments then reach past S2 with candles in them.
    std::fs::remove_file(repo.join(format!("{}.json", m[2].0))).unwrap();
    std::fs::remove_file(repo.join(format!("{}.sqlite.zst", m[2].0))).unwrap();
    for (_, v) in &m {
        assert!(v["row_digests"]["ohlcv_h4"].as_str().is_some_and(|d| d.len() == 64), "backup records the rows' digest: {v}");
    }

    let other = tmp.join("other");
    let other_repo = tmp.join("other-repo");
    let few = tmp.join("few");
    support::gen_archives(&few, 1, 1);
    import(&other, &few);
    backup(&other, &other_repo);
    let lsn = |v: &serde_json::Value| v["lsn"].as_u64().unwrap();
    Setup { live, repo, other_repo, s1: (m[0].0.clone(), lsn(&m[0].1)), s2: (m[1].0.clone(), lsn(&m[1].1)) }
}

/// Rewrites snapshot `stem` of `repo`: `change` runs on its SQLite file (taken
/// from `from` when given: another snapshot's object), the object is
/// compressed again and the manifest's sizes and hashes recomputed; its
/// `row_digests` are recomputed from the changed rows when `digests` is
/// `Some(true)`, left when `Some(false)`, removed (an older manifest) when `None`.
fn tamper(repo: &Path, stem: &str, from: Option<&Path>, digests: Option<bool>, change: &dyn Fn(&rusqlite::Connection, &serde_json::Value)) {
    let manifest_path = repo.join(format!("{stem}.json"));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let object = repo.join(format!("{stem}.sqlite.zst"));
    let raw = zstd::decode_all(std::fs::File::open(from.unwrap_or(&object)).unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("snapshot.sqlite");
    std::fs::write(&db, &raw).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        change(&conn, &m);
    }
    let raw = std::fs::read(&db).unwrap();
    let compressed = zstd::encode_all(&raw[..], 3).unwrap();
    std::fs::write(&object, &compressed).unwrap();
    m["file_bytes"] = compressed.len().into();
    m["file_blake3"] = blake3::hash(&compressed).to_hex().as_str().into();
    m["raw_bytes"] = raw.len().into();
    m["raw_blake3"] = blake3::hash(&raw).to_hex().as_str().into();
    match digests {
        Some(true) => {
            let d = candlelog::projection::Projection::open_read_only(&db).unwrap().digests().unwrap();
            m["row_digests"] = serde_json::to_value(candlelog::snapshot::row_digests_json(&d)).unwrap();
        }
        Some(false) => {}
        None => {
            m.as_object_mut().unwrap().remove("row_digests");
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn exec(sql: &'static str) -> impl Fn(&rusqlite::Connection, &serde_json::Value) {
    move |c, _| c.execute_batch(sql).unwrap()
}

const PRICE: &str = "UPDATE ohlcv_h4 SET close = close * 1.5 WHERE rowid = (SELECT min(rowid) FROM ohlcv_h4)";
const TRIGGER: &str = "CREATE TABLE spy (n INTEGER); \
     CREATE TRIGGER spy_on_insert AFTER INSERT ON ohlcv_h4 BEGIN INSERT INTO spy VALUES (1); END;";

/// Everything in `db`'s schema that candlelog did not create: must be nothing.
fn foreign_schema(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    candlelog::projection::sqlite::schema_problems(&conn).unwrap()
}

/// Restore, `backup verify --deep`, drill and recover against `repo`, whose
/// snapshots `refused` (stems) were tampered with: each is refused (its
/// report names it, with `why`), the result falls back to `fallback` (a
/// snapshot LSN, or `None`: the log alone) and holds the live rows, and
/// nothing of the tampered schema reached the result.
fn assert_refused_everywhere(s: &Setup, case: &Path, repo: &Path, refused: &[&str], why: &str, fallback: Option<u64>) {
    let truth = table_rows(&s.live.join("candles.sqlite"), "ohlcv_h4");
    let names = |list: &serde_json::Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let check_names = |what: &str, list: &[String]| {
        assert_eq!(list.len(), refused.len(), "{what}: {list:?}");
        for (stem, line) in refused.iter().zip(list) {
            assert!(
                line.contains(&format!("{stem}.sqlite.zst")) && line.contains(why),
                "{what}: {line:?} should name {stem} and say {why:?}"
            );
        }
    };

    // restore
    let into = case.join("restored");
    let r = run(case, &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "restore: {}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["snapshot_lsn"].as_u64(), fallback, "restore: {v}");
    check_names("restore", &names(&v["rejected_snapshots"]));
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), truth, "restore: rows");
    assert_eq!(foreign_schema(&into.join("candles.sqlite")), Vec::<String>::new(), "restore: schema");

    // backup verify --deep
    let r = run(case, &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep", "--json"]);
    assert_eq!(r.code, 1, "backup verify --deep: {}\n{}", r.stdout, r.stderr);
    let problems = names(&json(&r)["problems"]);
    for stem in refused {
        assert!(
            problems.iter().any(|p| p.contains(&format!("{stem}.sqlite.zst")) && p.contains(why)),
            "backup verify --deep: {problems:?} should name {stem} and say {why:?}"
        );
    }
    let plain = run(case, &["backup", "verify", "--from", repo.to_str().unwrap()]);
    assert_eq!(plain.code, 0, "the hashes were recomputed: the shallow verify passes: {}", plain.stdout);

    // drill, from a copy of the live directory
    let live = case.join("live");
    support::copy_dir(&s.live, &live);
    let r = run(&live, &["drill", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 1, "drill: {}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["snapshot_lsn"].as_u64(), fallback, "drill: {v}");
    check_names("drill", &names(&v["rejected_snapshots"]));
    let problems = names(&v["problems"]);
    assert_eq!(problems.len(), refused.len(), "drill: only the refused snapshots are problems: {problems:?}");
    assert!(v["tables_compared"].as_u64().unwrap() >= 1, "drill: {v}");

    // recover, after the live projection was lost
    for f in ["candles.sqlite", "candles.sqlite-wal", "candles.sqlite-shm"] {
        let _ = std::fs::remove_file(live.join(f));
    }
    let r = run(&live, &["recover", "--from", repo.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "recover: {}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["snapshot_lsn"].as_u64(), fallback, "recover: {v}");
    check_names("recover", &names(&v["rejected_snapshots"]));
    assert_eq!(table_rows(&live.join("candles.sqlite"), "ohlcv_h4"), truth, "recover: rows");
    assert_eq!(foreign_schema(&live.join("candles.sqlite")), Vec::<String>::new(), "recover: schema");
    assert_eq!(run(&live, &["verify", "--deep"]).code, 0);
}

#[test]
fn issue_10_tampered_snapshots_are_refused_by_restore_recover_drill_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    let other = manifests(&s.other_repo);
    let other_object = s.other_repo.join(format!("{}.sqlite.zst", other[0].0));
    let relabel = |c: &rusqlite::Connection, m: &serde_json::Value| {
        c.execute(
            "UPDATE candlelog_state SET applied_lsn = ?1, head_hash = ?2",
            rusqlite::params![m["lsn"].as_i64(), m["head_hash"].as_str()],
        )
        .unwrap();
    };
    type Case<'a> = (&'a str, Option<&'a Path>, Option<bool>, Box<dyn Fn(&rusqlite::Connection, &serde_json::Value) + 'a>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("price, hashes recomputed", None, Some(false), Box::new(exec(PRICE)), "differ from the manifest's row_digests"),
        ("price, hashes and row_digests recomputed", None, Some(true), Box::new(exec(PRICE)), "differ from the log's"),
        ("price, older manifest without row_digests", None, None, Box::new(exec(PRICE)), "differ from the log's"),
        (
            "another chain's snapshot, relabelled",
            Some(&other_object),
            Some(true),
            Box::new(|_: &rusqlite::Connection, _: &serde_json::Value| {}),
            "relabelled",
        ),
        (
            "another chain's snapshot, relabelled with its state row",
            Some(&other_object),
            Some(true),
            Box::new(relabel),
            "differ from the log's",
        ),
        ("a trigger", None, Some(true), Box::new(exec(TRIGGER)), "trigger \"spy_on_insert\""),
        ("a view", None, Some(true), Box::new(exec("CREATE VIEW latest AS SELECT * FROM ohlcv_h4")), "view \"latest\""),
        ("a table", None, Some(true), Box::new(exec("CREATE TABLE extra (x); INSERT INTO extra VALUES (1)")), "table \"extra\""),
        ("an index", None, Some(true), Box::new(exec("CREATE INDEX idx_close ON ohlcv_h4(close)")), "index \"idx_close\""),
        (
            "an altered table",
            None,
            Some(true),
            Box::new(exec("ALTER TABLE ohlcv_h4 ADD COLUMN note TEXT DEFAULT 'x'")),
            "not defined as candlelog defines it",
        ),
    ];
    for (k, (name, from, digests, change, why)) in cases.iter().enumerate() {
        let case = tmp.path().join(format!("case-{k}"));
        let repo = case.join("repo");
        support::copy_dir(&s.repo, &repo);
        tamper(&repo, &s.s2.0, *from, *digests, change.as_ref());
        eprintln!("case {k}: {name}");
        assert_refused_everywhere(&s, &case, &repo, &[&s.s2.0], why, Some(s.s1.1));
    }

    // Both snapshots carry the trigger: a full replay from the log, and the trigger never fires.
    let case = tmp.path().join("case-all");
    let repo = case.join("repo");
    support::copy_dir(&s.repo, &repo);
    for stem in [&s.s1.0, &s.s2.0] {
        tamper(&repo, stem, None, Some(true), &exec(TRIGGER));
    }
    assert_refused_everywhere(&s, &case, &repo, &[&s.s2.0, &s.s1.0], "trigger", None);
}

#[test]
fn issue_10_a_manifest_without_row_digests_is_still_used_its_rows_checked_against_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let s = setup(tmp.path());
    // As an older backup wrote it: the same snapshot, no row_digests.
    tamper(&s.repo, &s.s2.0, None, None, &|_, _| {});
    let into = tmp.path().join("restored");
    let r = run(tmp.path(), &["restore", "--from", s.repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!((v["snapshot_lsn"].as_u64(), v["rejected_snapshots"].as_array().unwrap().len()), (Some(s.s2.1), 0), "{v}");
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&s.live.join("candles.sqlite"), "ohlcv_h4"));
    let r = run(tmp.path(), &["backup", "verify", "--from", s.repo.to_str().unwrap(), "--deep"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn issue_10_backup_refuses_to_publish_a_projection_that_drifted_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    import(&dir, &support::shared_archives());
    // A changed price that keeps quick_check and the recorded head: only the rows differ from the log.
    rusqlite::Connection::open(dir.join("candles.sqlite")).unwrap().execute_batch(PRICE).unwrap();
    let r = run(&dir, &["backup", "--to", repo.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("differ from the log") && r.stderr.contains("ohlcv_h4"), "{}", r.stderr);
    let published = std::fs::read_dir(repo.join("snapshots")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(published, 0, "no snapshot object, no manifest");
}

#[test]
fn issue_10_a_projection_inside_an_agent_database_is_snapshotted_without_the_agents_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let repo = tmp.path().join("repo");
    let agent = tmp.path().join("agent.db");
    rusqlite::Connection::open(&agent)
        .unwrap()
        .execute_batch(
            "CREATE TABLE positions (symbol TEXT, qty REAL); INSERT INTO positions VALUES ('SKRUSDT', 12.5); \
             CREATE VIEW open_positions AS SELECT * FROM positions WHERE qty > 0;",
        )
        .unwrap();
    let p = agent.to_str().unwrap();
    assert_eq!(run(&dir, &["--projection", p, "import", support::shared_archives().to_str().unwrap()]).code, 0);
    let r = run(&dir, &["--projection", p, "backup", "--to", repo.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The snapshot holds candlelog's tables only, so its schema checks out and it is used.
    let (stem, _) = manifests(&repo).remove(0);
    let raw = zstd::decode_all(std::fs::File::open(repo.join(format!("{stem}.sqlite.zst"))).unwrap()).unwrap();
    let db = tmp.path().join("snapshot.sqlite");
    std::fs::write(&db, raw).unwrap();
    assert_eq!(foreign_schema(&db), Vec::<String>::new());
    assert_eq!(table_rows(&db, "ohlcv_h4"), table_rows(&agent, "ohlcv_h4"));
    assert_eq!(run(tmp.path(), &["backup", "verify", "--from", repo.to_str().unwrap(), "--deep"]).code, 0);
    let into = tmp.path().join("restored");
    let r = run(tmp.path(), &["restore", "--from", repo.to_str().unwrap(), "--into", into.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert!(v["snapshot_lsn"].as_u64().is_some() && v["rejected_snapshots"] == serde_json::json!([]), "{v}");
    assert_eq!(table_rows(&into.join("candles.sqlite"), "ohlcv_h4"), table_rows(&agent, "ohlcv_h4"));
    // The agent's database is untouched by the backup.
    let qty: f64 = rusqlite::Connection::open(&agent).unwrap().query_row("SELECT qty FROM open_positions", [], |r| r.get(0)).unwrap();
    assert_eq!(qty, 12.5);
}

#[test]
fn issue_10_a_log_base_carrying_a_trigger_is_refused_by_verify_and_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("pruned");
    support::copy_dir(&super::golden::vectors_dir().join("repository/pruned"), &repo);
    let dir = tmp.path().join("data");
    let r = run(tmp.path(), &["restore", "--from", repo.to_str().unwrap(), "--into", dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    // The base snapshot gains a trigger; its hashes in log/base.json are recomputed.
    let (object, manifest) = (dir.join("log/base.sqlite.zst"), dir.join("log/base.json"));
    let db = tmp.path().join("base.sqlite");
    std::fs::write(&db, zstd::decode_all(std::fs::File::open(&object).unwrap()).unwrap()).unwrap();
    rusqlite::Connection::open(&db).unwrap().execute_batch(TRIGGER).unwrap();
    let raw = std::fs::read(&db).unwrap();
    let compressed = zstd::encode_all(&raw[..], 3).unwrap();
    std::fs::write(&object, &compressed).unwrap();
    let mut base: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    base["snapshot"]["file_bytes"] = compressed.len().into();
    base["snapshot"]["file_blake3"] = blake3::hash(&compressed).to_hex().as_str().into();
    base["snapshot"]["raw_bytes"] = raw.len().into();
    base["snapshot"]["raw_blake3"] = blake3::hash(&raw).to_hex().as_str().into();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&base).unwrap()).unwrap();

    let v = run(&dir, &["verify", "--deep"]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.contains("trigger \"spy_on_insert\""), "{}", v.stdout);
    let r = run(&dir, &["rebuild"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("its schema is not candlelog's"), "{}", r.stderr);
    assert_eq!(foreign_schema(&dir.join("candles.sqlite")), Vec::<String>::new(), "nothing of the base's schema reached the projection");
}
