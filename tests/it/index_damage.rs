//! A damaged `index.redb` never takes candlelog down (issue 10, part 2): the
//! index is derived from the log, so no failure or panic inside redb may
//! escape. Readers report the damage (verify exit 1, health CRITICAL with the
//! reason); writers and `recover` quarantine the index and rebuild it.

use crate::support::{self, run};

/// Runs a command and checks it ended as a program, not as a panic.
fn no_panic(dir: &std::path::Path, args: &[&str], page: usize) -> i32 {
    let r = run(dir, args);
    assert_ne!(r.code, 101, "page {page}: {args:?} panicked: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "page {page}: {args:?}: {}", r.stderr);
    r.code
}

#[test]
fn bytes_flipped_on_every_page_of_the_index_never_panic_and_recover_ends_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    assert_eq!(run(&pristine, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let index = std::fs::read(pristine.join("index.redb")).unwrap();
    let pages = index.len() / 4096;
    assert!(pages >= 8, "a real index of several pages, got {pages}");
    let mut reported = 0;
    for page in 0..pages {
        let dir = tmp.path().join(format!("page-{page}"));
        support::copy_dir(&pristine, &dir);
        let mut bytes = index.clone();
        for b in &mut bytes[page * 4096..page * 4096 + 64] {
            *b ^= 0xA5;
        }
        std::fs::write(dir.join("index.redb"), &bytes).unwrap();

        let verify = no_panic(&dir, &["verify", "--json"], page);
        assert!(verify == 0 || verify == 1, "page {page}: verify exit {verify}");
        reported += usize::from(verify == 1);
        let deep = no_panic(&dir, &["verify", "--deep", "--json"], page);
        assert!(deep == 0 || deep == 1, "page {page}: verify --deep exit {deep}");
        let health = no_panic(&dir, &["health", "--json"], page);
        assert!((0..=2).contains(&health), "page {page}: health exit {health}");
        no_panic(&dir, &["status", "--json"], page);
        // A writer quarantines a damaged index and rebuilds it from the log; recover ends clean.
        let writer = no_panic(&dir, &["import", support::shared_archives().to_str().unwrap()], page);
        assert_eq!(writer, 0, "page {page}: a writer must rebuild a damaged index");
        assert_eq!(no_panic(&dir, &["recover"], page), 0, "page {page}: recover");
        assert_eq!(no_panic(&dir, &["verify", "--deep"], page), 0, "page {page}: verify --deep after recover");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(reported > 0, "no flipped page was ever reported by verify");
}

/// The stored digests of a few candles (first, middle, last of the table),
/// read from the index's digest blocks through redb itself (each block a run
/// of 24-byte entries: open time i64 LE, then the 16-byte digest).
fn some_digests(index: &std::path::Path) -> Vec<[u8; 16]> {
    use redb::{ReadableDatabase, ReadableTable};
    const BLOCKS: redb::TableDefinition<(&str, u8, i64), &[u8]> = redb::TableDefinition::new("digest_blocks");
    let db = redb::Builder::new().open_read_only(index).unwrap();
    let tx = db.begin_read().unwrap();
    let t = tx.open_table(BLOCKS).unwrap();
    let mut all: Vec<[u8; 16]> = Vec::new();
    for row in t.iter().unwrap() {
        let v = row.unwrap().1.value().to_vec();
        assert_eq!(v.len() % 24, 0, "whole entries");
        all.extend(v.chunks_exact(24).map(|e| <[u8; 16]>::try_from(&e[8..]).unwrap()));
    }
    let n = all.len();
    assert!(n > 100, "a real digests table, got {n} candles");
    vec![all[0], all[n / 2], all[n - 1]]
}

/// Issue 10: a flipped byte inside a stored candle digest changes nothing redb
/// can see, but the next writer would trust it (and append a stored candle
/// again). `verify --deep` compares the digests with the log and names the
/// index; `recover` rebuilds it.
#[test]
fn a_flipped_byte_in_a_stored_candle_digest_is_found_by_verify_deep_and_recover_repairs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    assert_eq!(run(&pristine, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let index = std::fs::read(pristine.join("index.redb")).unwrap();
    let mut flipped = 0;
    for (n, digest) in some_digests(&pristine.join("index.redb")).into_iter().enumerate() {
        // Only a digest whose bytes occur once: the live copy, not a freed page's.
        let at: Vec<usize> = index.windows(16).enumerate().filter(|(_, w)| *w == digest).map(|(i, _)| i).collect();
        let [offset] = at[..] else { continue };
        let dir = tmp.path().join(format!("digest-{n}"));
        support::copy_dir(&pristine, &dir);
        let mut bytes = index.clone();
        bytes[offset + 7] ^= 0xFF;
        std::fs::write(dir.join("index.redb"), &bytes).unwrap();
        flipped += 1;

        let deep = run(&dir, &["verify", "--deep", "--json"]);
        assert_eq!(deep.code, 1, "byte {}: verify --deep: {}", offset + 7, deep.stdout);
        let report = support::json(&deep);
        let problems = report["problems"].as_array().unwrap();
        let p = problems.iter().find(|p| p["kind"] == "index_digests").unwrap_or_else(|| panic!("no index_digests: {}", deep.stdout));
        assert!(p["path"].as_str().unwrap().ends_with("index.redb"), "{p}");
        assert!(p["message"].as_str().unwrap().contains("candlelog rebuild"), "{p}");
        assert_eq!(run(&dir, &["recover"]).code, 0, "byte {}: recover", offset + 7);
        let after = run(&dir, &["verify", "--deep"]);
        assert_eq!(after.code, 0, "byte {}: verify --deep after recover: {}", offset + 7, after.stdout);
    }
    assert!(flipped > 0, "no stored digest found once in the index file");
}
