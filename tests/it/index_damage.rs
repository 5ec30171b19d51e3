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
