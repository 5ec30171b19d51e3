//! The repository conformance suite (litestream's `RunWithReplicaClient`):
//! one set of cases, each taking `&dyn Repository`, run against every
//! backend — a directory (`DirRepository` in a tempdir) and S3
//! (`S3Repository` against `s3s-fs` on loopback, tests/support/s3.rs). Each
//! case checks the contract written in the trait's doc comments
//! (src/backup/repo.rs). Where the backends legitimately differ (which error
//! variant carries a transport failure), the case says so.

use std::io::Read;

use candlelog::backup::object::S3Repository;
use candlelog::backup::{DirRepository, RepoError, Repository};

use crate::support::s3 as server;

/// S3Repository's part size (src/backup/object.rs, `PART`): at or above it a
/// write is a multipart upload, below it one PUT.
const PART: u64 = 8 << 20;

/// Reading from a stream that was told to break.
const BROKEN: &str = "the source broke";

/// A deterministic stream of `len` bytes (blake3's XOF of `seed`) handed out
/// at most `chunk` bytes per `read`, like a pipe or a socket; with `fail_at`
/// it fails once that many bytes were read.
struct Source {
    xof: blake3::OutputReader,
    left: u64,
    chunk: usize,
    fail_at: Option<u64>,
    read: u64,
}

impl Source {
    fn new(seed: &str, len: u64, chunk: usize) -> Source {
        Source { xof: blake3::Hasher::new().update(seed.as_bytes()).finalize_xof(), left: len, chunk, fail_at: None, read: 0 }
    }

    fn failing_at(mut self, at: u64) -> Source {
        self.fail_at = Some(at);
        self
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let before_failure = match self.fail_at {
            Some(at) if self.read >= at => return Err(std::io::Error::other(BROKEN)),
            Some(at) => at - self.read,
            None => u64::MAX,
        };
        let n = (buf.len() as u64).min(self.chunk as u64).min(self.left).min(before_failure) as usize;
        self.xof.fill(&mut buf[..n]);
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

/// The blake3 of `Source::new(seed, len, _)`'s bytes.
fn source_hash(seed: &str, len: u64) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut Source::new(seed, len, 1 << 16), &mut hasher).unwrap();
    hasher.finalize()
}

/// Reads object `name` back and compares it byte for byte with the source's
/// bytes, naming the first offset that differs.
fn assert_holds_source(repo: &dyn Repository, name: &str, seed: &str, len: u64) {
    let mut object = repo.open_reader(name).unwrap();
    let mut expected = Source::new(seed, len, usize::MAX);
    let (mut got, mut want) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut offset = 0u64;
    loop {
        let n = object.read(&mut got).unwrap();
        if n == 0 {
            break;
        }
        let m = expected.read(&mut want[..n]).unwrap();
        assert_eq!(m, n, "{name}: the object is longer than the {len} bytes written");
        if let Some(i) = got[..n].iter().zip(&want[..n]).position(|(a, b)| a != b) {
            panic!("{name}: byte {} differs", offset + i as u64);
        }
        offset += n as u64;
    }
    assert_eq!(offset, len, "{name}: length read back");
}

fn is_s3(repo: &dyn Repository) -> bool {
    repo.location().starts_with("s3://")
}

/// Asserts `e` is the error of reading object `name` that does not exist:
/// it names the repository and the object, and keeps "not found" as its
/// cause. The variant differs by backend: a directory's is a file error
/// (`Io`, from open), S3's a request error (`Store`, from GET).
fn assert_missing(repo: &dyn Repository, e: &RepoError, name: &str) {
    let text = e.to_string();
    assert!(text.contains(name) && text.contains(&repo.location()), "{text}");
    if is_s3(repo) {
        assert!(
            matches!(e, RepoError::Store { op: "get", name: n, source, .. }
                if n == name && matches!(**source, object_store::Error::NotFound { .. })),
            "{e:?}"
        );
    } else {
        assert!(
            matches!(e, RepoError::Io { op: "open", name: n, source, .. }
                if n == name && source.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
    }
}

/// Asserts `e` is the failure of a write whose source broke. The operation
/// named differs by backend: a directory reports its temporary file's
/// `write` (std::io::copy cannot tell the reader's error from the file's),
/// S3 the `read source` that fills the next part.
fn assert_source_broke(repo: &dyn Repository, e: &RepoError, name: &str) {
    let op_expected = if is_s3(repo) { "read source" } else { "write" };
    assert!(
        matches!(e, RepoError::Io { op, name: n, source, .. }
            if *op == op_expected && n == name && source.to_string() == BROKEN),
        "{e:?}"
    );
}

// ---------------------------------------------------------------- the cases

fn put_and_get_round_trip(repo: &dyn Repository) {
    let name = "snapshots/00000000000000000007-5.json";
    repo.put(name, b"{\"lsn\": 7, \"file\": \"x\"}").unwrap();
    assert_eq!(repo.get(name).unwrap(), b"{\"lsn\": 7, \"file\": \"x\"}");
    // Replacing with a shorter object leaves none of the old one's tail.
    assert_eq!(repo.write_from(name, &mut &b"{}"[..]).unwrap(), 2);
    assert_eq!(repo.get(name).unwrap(), b"{}");
    let mut streamed = Vec::new();
    repo.open_reader(name).unwrap().read_to_end(&mut streamed).unwrap();
    assert_eq!(streamed, b"{}");
    assert_eq!(repo.hash(name).unwrap(), (blake3::hash(b"{}"), 2));
}

fn write_from_streams_an_object_of_several_parts(repo: &dyn Repository) {
    // 20 MiB + 3 handed out 1,000 bytes at a time: two whole parts and a
    // partial one on S3 (a multipart upload), and no read lines up with a part.
    let (name, len) = ("segments/00000000000000000001-big.seg", (20 << 20) + 3);
    assert_eq!(repo.write_from(name, &mut Source::new("big", len, 1000)).unwrap(), len);
    assert_holds_source(repo, name, "big", len);
    assert_eq!(repo.hash(name).unwrap(), (source_hash("big", len), len));
    assert_eq!(repo.read_all(name, len).unwrap().len() as u64, len);
    assert!(matches!(repo.read_all(name, len - 1), Err(RepoError::Damaged { object, .. }) if object == name));
    // Replaced by a small object: one PUT on S3 over a multipart object.
    assert_eq!(repo.write_from(name, &mut Source::new("small", 5000, 1000)).unwrap(), 5000);
    assert_eq!(repo.hash(name).unwrap(), (source_hash("small", 5000), 5000));
}

fn write_from_at_the_part_boundary(repo: &dyn Repository) {
    // On S3 one byte below a part is one PUT; a whole part and one byte more
    // are multipart uploads of one part and of a part plus one byte.
    for (i, len) in [PART - 1, PART, PART + 1].into_iter().enumerate() {
        let (name, seed) = (format!("segments/edge-{i}"), format!("edge-{len}"));
        assert_eq!(repo.write_from(&name, &mut Source::new(&seed, len, 1 << 16)).unwrap(), len, "{name}");
        assert_holds_source(repo, &name, &seed, len);
        assert_eq!(repo.hash(&name).unwrap(), (source_hash(&seed, len), len), "{name}");
    }
}

fn an_empty_object_is_an_object(repo: &dyn Repository) {
    let name = "snapshots/empty.json";
    assert_eq!(repo.write_from(name, &mut std::io::empty()).unwrap(), 0);
    assert!(repo.exists(name).unwrap());
    assert_eq!(repo.list("snapshots").unwrap(), [name]);
    assert_eq!(repo.get(name).unwrap(), b"");
    assert_eq!(repo.read_all(name, 0).unwrap(), b"");
    assert_eq!(repo.hash(name).unwrap(), (blake3::hash(b""), 0));
}

fn a_write_whose_source_fails_leaves_no_object(repo: &dyn Repository) {
    // Fails inside the first part (S3: before any request) and after one
    // whole part was uploaded (S3: a multipart upload that must be aborted).
    for (i, at) in [1 << 20, PART + (4 << 20)].into_iter().enumerate() {
        let name = format!("segments/broken-{i}.seg");
        let e = repo.write_from(&name, &mut Source::new("broken", 20 << 20, 1000).failing_at(at)).unwrap_err();
        assert_source_broke(repo, &e, &name);
        assert!(!repo.exists(&name).unwrap(), "{name} exists after a failed write");
        assert_eq!(repo.list("segments").unwrap(), Vec::<String>::new());
        assert_missing(repo, &repo.open_reader(&name).err().unwrap(), &name);
    }
}

fn a_failed_write_leaves_the_existing_object_unchanged(repo: &dyn Repository) {
    let (name, len) = ("snapshots/00000000000000000009-1.sqlite.zst", PART + 12_345);
    repo.write_from(name, &mut Source::new("old", len, 1 << 16)).unwrap();
    for at in [0, 1 << 20, PART + (1 << 20)] {
        let e = repo.write_from(name, &mut Source::new("new", 20 << 20, 1000).failing_at(at)).unwrap_err();
        assert_source_broke(repo, &e, name);
        assert_holds_source(repo, name, "old", len);
    }
    assert_eq!(repo.list("snapshots").unwrap(), [name]);
}

fn list_is_sorted_one_level_under_the_prefix_without_hidden_names(repo: &dyn Repository) {
    for name in [
        "segments/a0",
        "segments/B",
        "segments/9",
        "segments/a",
        "segments/10",
        "segments/.hidden",
        "segments/sub/deep",
        "segmentsX/other",
        "snapshots/s.json",
    ] {
        repo.put(name, name.as_bytes()).unwrap();
    }
    // Byte order; a name one level deeper is not listed: S3 has no
    // directories, and a directory repository's subdirectory is not an object.
    assert_eq!(repo.list("segments").unwrap(), ["segments/10", "segments/9", "segments/B", "segments/a", "segments/a0"]);
    assert_eq!(repo.list("segments/sub").unwrap(), ["segments/sub/deep"]);
    assert_eq!(repo.list("segmentsX").unwrap(), ["segmentsX/other"]);
    assert_eq!(repo.list("nothing").unwrap(), Vec::<String>::new());
    // Hidden from listings only: the object is there.
    assert!(repo.exists("segments/.hidden").unwrap());
    assert_eq!(repo.get("segments/.hidden").unwrap(), b"segments/.hidden");
}

fn exists_is_true_for_objects_only(repo: &dyn Repository) {
    let name = "snapshots/x/y.json";
    assert!(!repo.exists(name).unwrap());
    repo.put(name, b"1").unwrap();
    assert!(repo.exists(name).unwrap());
    // A prefix of an object's name is not an object. Not asked of S3 here:
    // S3 answers such a HEAD with 404, but s3s-fs (which keeps prefixes as
    // directories) answers 500, which the client retries and reports.
    if !is_s3(repo) {
        assert!(!repo.exists("snapshots/x").unwrap());
        assert!(!repo.exists("snapshots").unwrap());
    }
    repo.delete(name).unwrap();
    assert!(!repo.exists(name).unwrap());
}

fn delete_of_a_missing_object_is_ok(repo: &dyn Repository) {
    repo.delete("segments/never-written").unwrap();
    repo.put("segments/once", b"x").unwrap();
    repo.delete("segments/once").unwrap();
    repo.delete("segments/once").unwrap();
    assert!(!repo.exists("segments/once").unwrap());
    assert_eq!(repo.list("segments").unwrap(), Vec::<String>::new());
    assert_missing(repo, &repo.get("segments/once").unwrap_err(), "segments/once");
}

fn read_all_refuses_an_object_larger_than_its_limit(repo: &dyn Repository) {
    let name = "snapshots/x.json";
    repo.put(name, &[b'x'; 100]).unwrap();
    assert_eq!(repo.read_all(name, 100).unwrap(), [b'x'; 100]);
    let e = repo.read_all(name, 99).unwrap_err();
    assert!(
        matches!(&e, RepoError::Damaged { location, object, message }
            if *location == repo.location() && object == name && message == "larger than the 99 bytes such an object may hold"),
        "{e:?}"
    );
    // `get` is `read_all` with the JSON limit, 1 MiB.
    let limit = candlelog::backup::repo::MAX_JSON_OBJECT;
    repo.write_from(name, &mut Source::new("json", limit, 1 << 16)).unwrap();
    assert_eq!(repo.get(name).unwrap().len() as u64, limit);
    repo.write_from(name, &mut Source::new("json", limit + 1, 1 << 16)).unwrap();
    assert!(matches!(repo.get(name), Err(RepoError::Damaged { object, .. }) if object == name));
}

fn names_that_are_not_plain_relative_paths_are_refused(repo: &dyn Repository) {
    for bad in ["../x", "a//b", "/etc/passwd", "a/../../b", "./a", "a/", "", "a\\b", "a\0b"] {
        let refused = |r: Result<(), RepoError>| matches!(r, Err(RepoError::BadName { name }) if name == bad);
        assert!(refused(repo.put(bad, b"x")), "put {bad:?}");
        assert!(refused(repo.write_from(bad, &mut &b"x"[..]).map(|_| ())), "write_from {bad:?}");
        assert!(refused(repo.open_reader(bad).map(|_| ())), "open_reader {bad:?}");
        assert!(refused(repo.get(bad).map(|_| ())), "get {bad:?}");
        assert!(refused(repo.read_all(bad, 10).map(|_| ())), "read_all {bad:?}");
        assert!(refused(repo.hash(bad).map(|_| ())), "hash {bad:?}");
        assert!(refused(repo.exists(bad).map(|_| ())), "exists {bad:?}");
        assert!(refused(repo.list(bad).map(|_| ())), "list {bad:?}");
        assert!(refused(repo.delete(bad)), "delete {bad:?}");
    }
}

fn reading_a_missing_object_names_it(repo: &dyn Repository) {
    let name = "snapshots/00000000000000000003-9.json";
    assert_missing(repo, &repo.open_reader(name).err().unwrap(), name);
    assert_missing(repo, &repo.get(name).unwrap_err(), name);
    assert_missing(repo, &repo.read_all(name, 10).unwrap_err(), name);
    assert_missing(repo, &repo.hash(name).unwrap_err(), name);
}

// ------------------------------------------------------------ the backends

fn on_dir(case: fn(&dyn Repository)) {
    let tmp = tempfile::tempdir().unwrap();
    case(&DirRepository::open(&tmp.path().join("repo")).unwrap());
}

fn on_s3(test: &str, case: fn(&dyn Repository)) {
    let Some(s3s) = server::start(test) else { return };
    let url = format!("s3://{}/nightly/repo", server::BUCKET);
    let repo = S3Repository::open_with_vars(&url, s3s.env()).unwrap();
    assert_eq!(repo.location(), url);
    case(&repo);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod dir {
            $( #[test] fn $case() { super::on_dir(super::$case) } )*
        }
        mod s3 {
            $( #[test] fn $case() { super::on_s3(concat!("it::repository::s3::", stringify!($case)), super::$case) } )*
        }
    };
}

conformance!(
    put_and_get_round_trip,
    write_from_streams_an_object_of_several_parts,
    write_from_at_the_part_boundary,
    an_empty_object_is_an_object,
    a_write_whose_source_fails_leaves_no_object,
    a_failed_write_leaves_the_existing_object_unchanged,
    list_is_sorted_one_level_under_the_prefix_without_hidden_names,
    exists_is_true_for_objects_only,
    delete_of_a_missing_object_is_ok,
    read_all_refuses_an_object_larger_than_its_limit,
    names_that_are_not_plain_relative_paths_are_refused,
    reading_a_missing_object_names_it,
);
