//! data.binance.vision archives: `SYMBOL-INTERVAL-YYYY-MM(-DD).zip` holding
//! one CSV, with a `.CHECKSUM` file beside it; bare `.csv` files with the
//! same naming are read the same way.

use std::io::{Cursor, Read};
use std::path::Path;

use super::checksum;
use super::csv_klines::parse_csv;
use super::file_name::{ArchiveKind, ArchiveName};
use super::{ParsedFile, SourceError};

/// Largest CSV we inflate. A month of 1m candles is ~7 MB; the cap keeps a
/// zip bomb from taking the machine down.
pub const MAX_CSV_BYTES: u64 = 512 << 20;

/// Reads one archive: name → checksum (if present) → unzip → CSV rows.
pub fn read_archive(path: &Path) -> Result<ParsedFile, SourceError> {
    let name = ArchiveName::parse(path)?;
    let bytes = std::fs::read(path).map_err(|e| SourceError::io("read", path, e))?;
    let verified = checksum::verify_if_present(path, &bytes)?;
    let period = Some((name.range, name.period.as_str()));
    let candles = match name.kind {
        ArchiveKind::Zip => parse_csv(path, &single_csv(path, &bytes)?, &name.symbol, name.interval, period)?,
        ArchiveKind::Csv => parse_csv(path, &bytes, &name.symbol, name.interval, period)?,
    };
    Ok(ParsedFile { path: path.to_path_buf(), symbol: name.symbol, interval: name.interval, candles, checksum_verified: Some(verified) })
}

/// Inflates the one `.csv` entry of a zip; the CRC is checked as it is read.
fn single_csv(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, SourceError> {
    let fail = |message: String| SourceError::Zip { path: path.to_path_buf(), message };
    let mut zip =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| fail(format!("not a zip file, or truncated ({e}); download it again")))?;
    let mut names = Vec::with_capacity(zip.len());
    for name in zip.file_names() {
        names.push(name.map_err(|e| fail(format!("unreadable entry name: {e}")))?.into_owned());
    }
    let files: Vec<(usize, &String)> = names.iter().enumerate().filter(|(_, n)| !n.ends_with('/')).collect();
    let [(index, entry_name)] = files.as_slice() else {
        return Err(fail(format!("holds {} files {:?}; expected exactly one .csv", files.len(), names)));
    };
    if !entry_name.to_ascii_lowercase().ends_with(".csv") {
        return Err(fail(format!("holds {entry_name:?}; expected exactly one .csv")));
    }
    // The entry is the archive's own CSV: another symbol's, interval's or period's is refused.
    let stem = path.file_name().and_then(|n| n.to_str()).map(|n| n.get(..n.len().saturating_sub(4)).unwrap_or(n)).unwrap_or("");
    let entry_file = entry_name.rsplit('/').next().unwrap_or(entry_name);
    if !entry_file.eq_ignore_ascii_case(&format!("{stem}.csv")) {
        return Err(fail(format!("holds {entry_name:?}, which is not {stem}.csv: another symbol's, interval's or period's data")));
    }
    let mut entry = zip.by_index(*index).map_err(|e| fail(format!("entry {entry_name:?}: {e}")))?;
    if entry.size() > MAX_CSV_BYTES {
        return Err(fail(format!("entry {entry_name:?} inflates to {} bytes, more than the {MAX_CSV_BYTES} allowed", entry.size())));
    }
    let mut csv = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    (&mut entry)
        .take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut csv)
        .map_err(|e| fail(format!("entry {entry_name:?}: {e} (truncated or damaged; download it again)")))?;
    if csv.len() as u64 > MAX_CSV_BYTES {
        return Err(fail(format!("entry {entry_name:?} inflates to more than the {MAX_CSV_BYTES} bytes allowed")));
    }
    Ok(csv)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use sha2::{Digest, Sha256};
    use zip::write::SimpleFileOptions;

    use super::*;
    use crate::event::Interval;

    pub(crate) const HEADER: &str =
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore";
    /// The first three rows of the real SKRUSDT-4h-2026-01 archive.
    pub(crate) const ROWS: [&str; 3] = [
        "1769068800000,0.043680,0.044317,0.036651,0.038367,246654515,1769083199999,9837383.904067,192604,118803768,4742965.716141,0",
        "1769083200000,0.038360,0.053362,0.038301,0.047144,1427389883,1769097599999,65551245.816869,1008861,726522285,33380502.115828,0",
        "1769097600000,0.047172,0.049686,0.040775,0.044546,613529081,1769111999999,27864046.523007,443373,306390108,13922314.897619,0",
    ];

    fn csv(header: bool, rows: &[&str]) -> String {
        let mut s = String::new();
        if header {
            s.push_str(HEADER);
            s.push('\n');
        }
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    fn write_zip_entries(dir: &Path, name: &str, entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> PathBuf {
        let path = dir.join(name);
        let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (entry, data) in entries {
            w.start_file(*entry, SimpleFileOptions::default().compression_method(method)).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        path
    }

    /// A subdirectory, so several archives of one month can sit in one test.
    fn sub(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn write_zip(dir: &Path, name: &str, content: &str) -> PathBuf {
        let entry = name.replace(".zip", ".csv");
        write_zip_entries(dir, name, &[(&entry, content.as_bytes())], zip::CompressionMethod::Deflated)
    }

    fn write_checksum(path: &Path, hex: &str) {
        let name = path.file_name().unwrap().to_str().unwrap();
        std::fs::write(checksum::checksum_path(path), format!("{hex}  {name}")).unwrap();
    }

    fn sha256_hex(path: &Path) -> String {
        Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn row_error(e: SourceError) -> (u64, String) {
        match e {
            SourceError::Row { row, message, .. } => (row, message),
            other => panic!("expected a row error, got {other}"),
        }
    }

    #[test]
    fn reads_a_verified_zip_with_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_zip(dir.path(), "SKRUSDT-4h-2026-01.zip", &csv(true, &ROWS));
        write_checksum(&path, &sha256_hex(&path));
        let parsed = read_archive(&path).unwrap();
        assert_eq!(parsed.symbol.as_str(), "SKRUSDT");
        assert_eq!(parsed.interval, Interval::H4);
        assert_eq!(parsed.candles.len(), 3);
        let c = &parsed.candles[0];
        assert_eq!((c.open_time, c.close_time, c.trades), (1_769_068_800_000, 1_769_083_199_999, 192_604));
        assert_eq!(c.open.to_string(), "0.043680");
        assert_eq!(c.quote_volume.to_string(), "9837383.904067");
        assert_eq!(parsed.candles[2].taker_buy_volume.to_string(), "306390108");
    }

    #[test]
    fn header_is_optional_and_blank_trailing_lines_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let with = read_archive(&write_zip(dir.path(), "SKRUSDT-4h-2026-01.zip", &csv(true, &ROWS))).unwrap();
        let without = write_zip(&sub(dir.path(), "b"), "SKRUSDT-4h-2026-01.zip", &format!("{}\n\n  \n", csv(false, &ROWS)));
        assert_eq!(read_archive(&without).unwrap().candles, with.candles);
        // A bare CSV with the same naming, CRLF line ends.
        let bare = dir.path().join("SKRUSDT-4h-2026-01.csv");
        std::fs::write(&bare, csv(true, &ROWS).replace('\n', "\r\n") + "\r\n").unwrap();
        assert_eq!(read_archive(&bare).unwrap().candles, with.candles);
    }

    #[test]
    fn microsecond_timestamps_become_exact_milliseconds() {
        let dir = tempfile::tempdir().unwrap();
        let ms = read_archive(&write_zip(dir.path(), "SKRUSDT-4h-2026-01.zip", &csv(false, &ROWS))).unwrap();
        let micros: Vec<String> = ROWS
            .iter()
            .map(|r| {
                let mut f: Vec<String> = r.split(',').map(str::to_owned).collect();
                f[0] = format!("{}000", f[0]);
                f[6] = format!("{}999", f[6]);
                f.join(",")
            })
            .collect();
        let micros: Vec<&str> = micros.iter().map(String::as_str).collect();
        assert!(micros[0].starts_with("1769068800000000,"));
        let us = read_archive(&write_zip(&sub(dir.path(), "c"), "SKRUSDT-4h-2026-01.zip", &csv(true, &micros))).unwrap();
        assert_eq!(us.candles, ms.candles);

        let odd = micros[1].replacen("1769083200000000", "1769083200000500", 1);
        let e = read_archive(&write_zip(&sub(dir.path(), "d"), "SKRUSDT-4h-2026-01.zip", &csv(true, &[micros[0], &odd]))).unwrap_err();
        let (row, message) = row_error(e);
        assert_eq!(row, 3);
        assert!(message.starts_with("field open_time: 1769083200000500 µs is not a whole millisecond"), "{message}");
    }

    #[test]
    fn wrong_checksum_rejects_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_zip(dir.path(), "SKRUSDT-4h-2026-01.zip", &csv(true, &ROWS));
        let wrong = "0".repeat(64);
        write_checksum(&path, &wrong);
        let e = read_archive(&path).unwrap_err();
        let text = e.to_string();
        let SourceError::Checksum { expected, actual, checksum_path, .. } = e else { panic!("{text}") };
        assert_eq!(expected, wrong);
        assert_eq!(actual, sha256_hex(&path));
        assert_eq!(checksum_path, dir.path().join("SKRUSDT-4h-2026-01.zip.CHECKSUM"));
        assert!(text.contains(&format!("expected {wrong}")) && text.contains(&format!("actual {actual}")), "{text}");
        assert!(text.contains("SKRUSDT-4h-2026-01.zip.CHECKSUM"), "{text}");
        assert!(!text.contains('\n'));

        std::fs::write(checksum::checksum_path(&path), "not a checksum").unwrap();
        assert!(matches!(read_archive(&path), Err(SourceError::ChecksumFile { .. })));
    }

    #[test]
    fn corrupt_zips_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = write_zip(dir.path(), "SKRUSDT-4h-2026-01.zip", &csv(true, &ROWS));
        let bytes = std::fs::read(&good).unwrap();

        let not_zip = dir.path().join("SKRUSDT-4h-2026-02.zip");
        std::fs::write(&not_zip, b"<html>404 Not Found</html>").unwrap();
        let truncated = dir.path().join("SKRUSDT-4h-2026-03.zip");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        // Stored, so flipping a byte of the data leaves the zip readable but fails its CRC.
        let content = csv(true, &ROWS);
        let bad_crc = write_zip_entries(
            dir.path(),
            "SKRUSDT-4h-2026-04.zip",
            &[("SKRUSDT-4h-2026-04.csv", content.as_bytes())],
            zip::CompressionMethod::Stored,
        );
        let mut raw = std::fs::read(&bad_crc).unwrap();
        let at = raw.windows(17).position(|w| w == b"0.043680,0.044317").unwrap() + 3;
        raw[at] = b'5';
        std::fs::write(&bad_crc, raw).unwrap();

        for (path, needle) in
            [(&not_zip, "not a zip file, or truncated"), (&truncated, "not a zip file, or truncated"), (&bad_crc, "Invalid checksum")]
        {
            let e = read_archive(path).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, SourceError::Zip { .. }), "{text}");
            assert!(text.contains(path.to_str().unwrap()) && text.contains(needle), "{text}");
        }
    }

    #[test]
    fn a_zip_holds_exactly_one_csv() {
        let dir = tempfile::tempdir().unwrap();
        let c = csv(true, &ROWS);
        let deflate = zip::CompressionMethod::Deflated;
        let two = write_zip_entries(dir.path(), "SKRUSDT-4h-2026-01.zip", &[("a.csv", c.as_bytes()), ("b.csv", c.as_bytes())], deflate);
        let txt = write_zip_entries(dir.path(), "SKRUSDT-4h-2026-02.zip", &[("a.txt", c.as_bytes())], deflate);
        let none = write_zip_entries(dir.path(), "SKRUSDT-4h-2026-03.zip", &[], deflate);
        for path in [two, txt, none] {
            let e = read_archive(&path).unwrap_err();
            assert!(matches!(e, SourceError::Zip { .. }) && e.to_string().contains("exactly one .csv"), "{e}");
        }
    }

    #[test]
    fn a_bad_row_rejects_the_whole_file_naming_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let negative = ROWS[1].replace(",1427389883,", ",-5,");
        let e = read_archive(&write_zip(dir.path(), "SKRUSDT-4h-2026-01.zip", &csv(true, &[ROWS[0], &negative, ROWS[2]]))).unwrap_err();
        let text = e.to_string();
        assert_eq!(row_error(e), (3, "field volume: is negative (-5)".to_string()));
        assert!(text.contains("SKRUSDT-4h-2026-01.zip: row 3: field volume"), "{text}");

        // high below low (and below open/close) — without a header the line is 1.
        let inverted = ROWS[0].replace("0.043680,0.044317,0.036651,0.038367", "0.043680,0.030000,0.036651,0.038367");
        let e = read_archive(&write_zip(&sub(dir.path(), "e"), "SKRUSDT-4h-2026-01.zip", &csv(false, &[&inverted]))).unwrap_err();
        let (row, message) = row_error(e);
        assert_eq!(row, 1);
        assert!(message.starts_with("field high: 0.030000 is below"), "{message}");

        for (rows, line, needle) in [
            (vec![ROWS[0], ROWS[0]], 3, "field open_time: 1769068800000 duplicates row 2"),
            (vec![ROWS[1], ROWS[0]], 3, "field open_time: 1769068800000 is before"),
            (vec![ROWS[0], "1769083200000,0.1"], 3, "has 2 fields, expected 12"),
            (vec![&ROWS[0].replace("0.044317", "4.4317e-2")], 2, "field high: unexpected character 'e'"),
            (vec![&ROWS[0].replace(",192604,", ",19x,")], 2, "field count: \"19x\" is not a non-negative integer"),
            (vec![&ROWS[0].replace("1769068800000,", "1769068801000,")], 2, "field open_time: not aligned"),
        ] {
            let e = read_archive(&write_zip(&sub(dir.path(), "f"), "SKRUSDT-4h-2026-01.zip", &csv(true, &rows))).unwrap_err();
            let (row, message) = row_error(e);
            assert_eq!(row, line, "{message}");
            assert!(message.starts_with(needle), "{message}");
        }

        let other_header = csv(false, &["open_time,open,high,low,close,volume", ROWS[0]]);
        let e = read_archive(&write_zip(dir.path(), "SKRUSDT-4h-2026-04.zip", &other_header)).unwrap_err();
        let (row, message) = row_error(e);
        assert_eq!(row, 1);
        assert!(message.contains("is neither a kline row nor the kline header"), "{message}");
    }

    #[test]
    fn non_ascii_symbol_in_the_file_name_is_one_line_naming_file_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_zip(dir.path(), "SKRÜSDT-4h-2026-01.zip", &csv(true, &ROWS));
        let e = read_archive(&path).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, SourceError::FileName { .. }), "{text}");
        assert!(text.contains("SKRÜSDT-4h-2026-01.zip") && text.contains("non-ASCII character 'Ü' at position 4"), "{text}");
        assert!(!text.contains('\n'));
    }
}
