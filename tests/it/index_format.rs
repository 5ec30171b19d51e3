//! The index's candle digests moved from one redb entry per candle (table
//! `digests`) to blocks of 64 intervals per series (`digest_blocks`). A data
//! directory whose index was written before is read as it is, and its next
//! writer converts it; nothing is appended again and the audit stays clean.

use crate::support::{self, run};
use redb::{ReadableDatabase, ReadableTable};

const BLOCKS: redb::TableDefinition<(&str, u8, i64), &[u8]> = redb::TableDefinition::new("digest_blocks");
const LEGACY: redb::TableDefinition<(&str, u8, i64), [u8; 16]> = redb::TableDefinition::new("digests");

/// Rewrites the index's digest blocks as the per-candle table of an index
/// written before blocks (each block: 24-byte entries, open time i64 LE and
/// the digest). Returns how many candles it wrote.
fn to_per_candle_digests(index: &std::path::Path) -> usize {
    let db = redb::Database::create(index).unwrap();
    let tx = db.begin_write().unwrap();
    let mut n = 0;
    {
        let blocks = tx.open_table(BLOCKS).unwrap();
        let mut legacy = tx.open_table(LEGACY).unwrap();
        for row in blocks.iter().unwrap() {
            let (k, v) = row.unwrap();
            let (symbol, code, _) = k.value();
            for e in v.value().chunks_exact(24) {
                let open = i64::from_le_bytes(e[..8].try_into().unwrap());
                legacy.insert((symbol, code, open), <[u8; 16]>::try_from(&e[8..]).unwrap()).unwrap();
                n += 1;
            }
        }
    }
    tx.delete_table(BLOCKS).unwrap();
    tx.commit().unwrap();
    n
}

/// Each health check's name and status (messages carry ages and free space,
/// which move between two runs).
fn checks(dir: &std::path::Path) -> Vec<String> {
    let report = support::json(&run(dir, &["health", "--json"]));
    let checks = report["checks"].as_array().unwrap();
    checks.iter().map(|c| format!("{} {}", c["name"], c["status"])).collect()
}

fn tables(index: &std::path::Path) -> Vec<String> {
    let db = redb::Builder::new().open_read_only(index).unwrap();
    let tx = db.begin_read().unwrap();
    tx.list_tables().unwrap().map(|t| redb::TableHandle::name(&t).to_string()).collect()
}

#[test]
fn an_index_written_before_digest_blocks_is_read_as_it_is_and_converted_by_the_next_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let archives = support::shared_archives();
    assert_eq!(run(&dir, &["import", archives.to_str().unwrap()]).code, 0);
    let index = dir.join("index.redb");
    let health_before = checks(&dir);
    let candles = to_per_candle_digests(&index);
    assert!(candles > 100, "a real index, {candles} candles");
    assert!(tables(&index).contains(&"digests".to_string()));

    // Readers read the old table: the deep audit compares its digests with the log.
    let deep = run(&dir, &["verify", "--deep", "--json"]);
    assert_eq!(deep.code, 0, "verify --deep of the old index: {}", deep.stdout);
    assert_eq!(checks(&dir), health_before, "health of the old index");

    // A writer converts it, and still knows every candle it holds.
    let again = run(&dir, &["-v", "import", archives.to_str().unwrap()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("converted the index's candle digests to blocks"), "{}", again.stderr);
    assert!(again.stderr.contains(&format!("candles={candles}")), "{}", again.stderr);
    assert!(again.stdout.contains(", 0 appended"), "nothing appended again: {}", again.stdout);
    let after = tables(&index);
    assert!(after.contains(&"digest_blocks".to_string()) && !after.contains(&"digests".to_string()), "{after:?}");
    let deep = run(&dir, &["verify", "--deep", "--json"]);
    assert_eq!(deep.code, 0, "verify --deep after the conversion: {}", deep.stdout);
}
