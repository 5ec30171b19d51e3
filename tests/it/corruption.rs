//! Real flipped bytes: every flip inside a committed structure (segment
//! header, frame, footer) — in a sealed segment or the active one — makes
//! `verify` exit 1 naming that segment and the offset where the damaged
//! structure starts; a writer refuses to open over damage.

use std::path::Path;

use candlelog::log::{SegmentEnd, scan_segment};

use crate::support::{self, Rng, json, run};

/// Start offsets of the structures of a pristine segment: header, frames, footer.
fn structures(seg: &Path, is_last: bool) -> Vec<u64> {
    let data = std::fs::read(seg).unwrap();
    let seq = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let scan = scan_segment(seg, seq, &data, is_last, None);
    assert!(scan.damage.is_empty(), "pristine segment is damaged: {:?}", scan.damage);
    let mut starts = vec![0];
    starts.extend(scan.frames.iter().map(|f| f.offset));
    if let SegmentEnd::Sealed(f) = scan.end {
        starts.push(f.footer_offset);
    }
    starts
}

fn containing(starts: &[u64], offset: u64) -> u64 {
    *starts.iter().rev().find(|&&s| s <= offset).unwrap()
}

fn pristine(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("pristine");
    let fixtures = tmp.join("fixtures");
    support::gen_archives(&fixtures, 2, 2);
    assert_eq!(run(&dir, &["--segment-bytes", "6000", "import", "--group-files", "1", fixtures.to_str().unwrap()]).code, 0);
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let segs = support::segments(&dir);
    assert!(segs.len() >= 3, "want sealed segments and an active one, got {}", segs.len());
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
    dir
}

#[test]
fn every_flipped_byte_is_reported_with_its_segment_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pristine(tmp.path());
    let segs = support::segments(&dir);
    let mut rng = Rng(0xC0FFEE);
    for case in 0..40 {
        let k = if case % 4 == 0 { segs.len() - 1 } else { rng.below(segs.len() as u64) as usize };
        let seg = &segs[k];
        let len = std::fs::metadata(seg).unwrap().len();
        let offset = rng.below(len);
        let starts = structures(seg, k + 1 == segs.len());
        let work = tmp.path().join(format!("case{case}"));
        support::copy_dir(&dir, &work);
        let target = work.join("log").join(seg.file_name().unwrap());
        let mut bytes = std::fs::read(&target).unwrap();
        bytes[offset as usize] ^= 1 + rng.below(255) as u8;
        std::fs::write(&target, &bytes).unwrap();

        let r = run(&work, &["verify", "--json"]);
        assert_eq!(r.code, 1, "case {case}: flip at {}:{offset} not detected: {}", seg.display(), r.stdout);
        let v = json(&r);
        let expected = containing(&starts, offset);
        let name = target.display().to_string();
        let problems = v["problems"].as_array().unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p["path"] == name.as_str() && p["offset"].as_u64().is_some_and(|o| o == expected || (expected == 0 && o < 80))),
            "case {case}: flip at {name}:{offset} (structure at {expected}) not reported there: {problems:#?}"
        );
        // The human output names file and offset too.
        let text = run(&work, &["verify"]);
        assert!(text.stdout.contains(&name), "case {case}: {}", text.stdout);
        // A writer refuses to build on a damaged log, and changes nothing.
        let before = std::fs::read(&target).unwrap();
        let w = run(&work, &["import", support::shared_archives().to_str().unwrap()]);
        if k + 1 == segs.len() {
            assert_eq!(w.code, 1, "case {case}: writer opened over damage in the active segment: {}", w.stderr);
        }
        assert_eq!(std::fs::read(&target).unwrap(), before, "case {case}: damaged segment was modified");
    }
}

#[test]
fn a_flip_in_the_last_frame_of_the_active_segment_is_damage_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(run(&dir, &["import", support::shared_archives().to_str().unwrap()]).code, 0);
    let seg = support::segments(&dir).pop().unwrap();
    let starts = structures(&seg, true);
    let last = *starts.last().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let len = bytes.len();
    for offset in [last as usize + 1, last as usize + 5, last as usize + 45, len - 1] {
        let mut b = bytes.clone();
        b[offset] ^= 0x40;
        std::fs::write(&seg, &b).unwrap();
        let r = run(&dir, &["verify", "--json"]);
        assert_eq!(r.code, 1, "flip at {offset}: {}", r.stdout);
        assert_eq!(json(&r)["problems"][0]["offset"], last);
        let w = run(&dir, &["import", support::shared_archives().to_str().unwrap()]);
        assert_eq!(w.code, 1, "{}", w.stderr);
        assert_eq!(std::fs::read(&seg).unwrap(), b, "the damaged frame must not be truncated away");
    }
    bytes.truncate(len);
    std::fs::write(&seg, &bytes).unwrap();
    assert_eq!(run(&dir, &["verify", "--deep"]).code, 0);
}

#[test]
fn a_missing_sealed_segment_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pristine(tmp.path());
    let segs = support::segments(&dir);
    std::fs::remove_file(&segs[1]).unwrap();
    let r = run(&dir, &["verify", "--json"]);
    assert_eq!(r.code, 1);
    let v = json(&r);
    assert!(v["problems"].as_array().unwrap().iter().any(|p| p["kind"] == "missing_segment"), "{v}");
}

/// Issue 10, part 8: a writer checks the chain it extends. A flipped byte in
/// a frame of a *sealed* segment (which the writer used not to read) makes
/// import, init-then-import and rebuild refuse with the recover hint, and
/// nothing is appended on top of the damage.
#[test]
fn writers_refuse_to_extend_a_damaged_sealed_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = pristine(tmp.path());
    let segs = support::segments(&dir);
    let sealed = &segs[0];
    let starts = structures(sealed, false);
    let frame = starts[1];
    let mut bytes = std::fs::read(sealed).unwrap();
    bytes[frame as usize + 60] ^= 0x04; // inside the first frame's payload
    std::fs::write(sealed, &bytes).unwrap();
    let before: Vec<Vec<u8>> = support::segments(&dir).iter().map(|p| std::fs::read(p).unwrap()).collect();
    for args in [&["import", support::shared_archives().to_str().unwrap()][..], &["init"]] {
        let r = run(&dir, args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(&format!("byte offset {frame}")), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("candlelog recover --from REPO"), "{args:?}: {}", r.stderr);
    }
    let after: Vec<Vec<u8>> = support::segments(&dir).iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after, "nothing appended or truncated");
    // health's integrity check runs the same walk: CRITICAL, naming the offset.
    let h = run(&dir, &["health", "--json"]);
    assert_eq!(h.code, 2, "{}", h.stdout);
    let integrity = json(&h)["checks"].as_array().unwrap().iter().find(|c| c["name"] == "integrity").unwrap().clone();
    assert_eq!(integrity["status"], "CRITICAL", "{integrity}");
    assert!(integrity["message"].as_str().unwrap().contains(&format!("byte offset {frame}")), "{integrity}");
}
