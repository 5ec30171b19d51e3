//! The source layer on the real SKRUSDT data in ../shared/data, through the
//! library: the archives and the saved REST body hold the same candles.

use candlelog::event::{Interval, Symbol};
use candlelog::source::{SourceFormat, discover, read_path};

use crate::support;

#[test]
fn reads_the_real_skrusdt_archives_and_klines_json() {
    let dir = support::shared_archives();
    let files = discover(std::slice::from_ref(&dir)).unwrap();
    let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["SKRUSDT-4h-2026-01.zip", "SKRUSDT-4h-2026-02.zip", "SKRUSDT-4h-2026-03.zip"]);
    for f in &files {
        assert!(
            f.with_file_name(format!("{}.CHECKSUM", f.file_name().unwrap().to_string_lossy())).is_file(),
            "{} has no CHECKSUM to verify",
            f.display()
        );
    }

    let mut from_zips = Vec::new();
    for f in &files {
        let parsed = read_path(f, &SourceFormat::Archive).unwrap();
        assert_eq!((parsed.symbol.as_str(), parsed.interval), ("SKRUSDT", Interval::H4));
        from_zips.extend(parsed.candles);
    }
    assert_eq!(from_zips.len(), 263);
    assert!(from_zips.windows(2).all(|w| w[0].interval.next_open(w[0].open_time) == Some(w[1].open_time)));

    let first = &from_zips[0];
    assert_eq!(first.open_time, 1_769_068_800_000);
    assert_eq!(first.open.to_string(), "0.043680");
    assert_eq!(first.quote_volume.to_string(), "9837383.904067");

    let format = SourceFormat::KlinesJson { symbol: Symbol::parse("SKRUSDT").unwrap(), interval: Interval::H4 };
    let json = read_path(&support::shared_klines_json(), &format).unwrap();
    assert_eq!(json.candles.len(), 263);
    assert_eq!(json.candles[0].open.to_string(), "0.043680");
    let last = json.candles.last().unwrap();
    assert_eq!((last.open_time, last.close.to_string()), (1_772_841_600_000, "0.027403".to_string()));
    assert_eq!(json.candles, from_zips, "the REST body and the archives hold the same candles");
}
