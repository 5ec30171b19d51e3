//! Properties against a plain in-memory model: random batches applied
//! incrementally give the model's rows, and `rebuild` gives the same rows.

use std::collections::HashMap;

use candlelog::event::{Candle, Decimal, Interval, Symbol};
use candlelog::store::{Paths, Store, StoreOptions, init};
use proptest::prelude::*;

fn candle(sym: u8, interval: Interval, slot: i64, v: u32) -> Candle {
    let ms = interval.fixed_ms().unwrap();
    let open_time = 1_704_067_200_000 + slot * ms; // 2024-01-01
    let d = |m: u64, s: u8| Decimal::from_parts(false, u128::from(m), s).unwrap();
    let base = 100_000 + u64::from(v % 1000);
    Candle {
        symbol: Symbol::parse(["AUSDT", "BUSDT", "C1USDT"][usize::from(sym)]).unwrap(),
        interval,
        open_time,
        close_time: open_time + ms - 1,
        open: d(base, 4),
        high: d(base + 50, 4),
        low: d(base - 50, 4),
        close: d(base + u64::from(v % 7), 4),
        volume: d(u64::from(v), 0),
        quote_volume: d(u64::from(v) * 3, 2),
        trades: u64::from(v % 97),
        taker_buy_volume: d(u64::from(v / 2), 0),
        taker_buy_quote_volume: d(u64::from(v), 2),
    }
}

fn arb_candle() -> impl Strategy<Value = Candle> {
    (0u8..3, prop_oneof![Just(Interval::H1), Just(Interval::H4)], 0i64..12, 0u32..4).prop_map(|(s, i, slot, v)| candle(s, i, slot, v))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_apply_equals_model_and_rebuild(batches in prop::collection::vec(prop::collection::vec(arb_candle(), 0..20), 1..6)) {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(&tmp.path().join("data"), None);
        init(&paths).unwrap();
        // Runs of 3 rows: the rebuild spills sorted runs and merges them, revisions
        // of a key landing in different runs.
        let opts = StoreOptions { writer: candlelog::log::WriterOptions { max_segment_bytes: 2048, ..Default::default() }, sort_run_rows: 3 };
        let mut store = Store::open(&paths, opts).unwrap();
        let mut model: HashMap<(Interval, i64, String), Candle> = HashMap::new();
        let mut revisions = 0u64;
        for batch in batches {
            let mut expect_appended = 0;
            for c in &batch {
                match model.insert((c.interval, c.open_time, c.symbol.to_string()), c.clone()) {
                    Some(old) if old == *c => {}
                    Some(_) => { revisions += 1; expect_appended += 1; }
                    None => expect_appended += 1,
                }
            }
            let stats = store.ingest(batch).unwrap();
            prop_assert_eq!(stats.appended, expect_appended);
        }
        let incremental = store.projection().digests().unwrap();
        let rows: u64 = incremental.values().map(|d| d.rows).sum();
        prop_assert_eq!(rows, model.len() as u64);
        let cursors = store.index().cursors().unwrap();
        prop_assert_eq!(cursors.iter().map(|c| c.revisions).sum::<u64>(), revisions);
        prop_assert_eq!(cursors.iter().map(|c| c.candles).sum::<u64>(), model.len() as u64);
        for ((interval, open, sym), c) in &model {
            let got: f64 = store.projection().connection().query_row(
                &format!("SELECT volume FROM {} WHERE timestamp = ?1 AND symbol = ?2", interval.table()),
                rusqlite::params![open, sym], |r| r.get(0)).unwrap();
            prop_assert_eq!(got, c.volume.to_f64());
        }
        let stats = store.rebuild().unwrap();
        prop_assert_eq!(store.projection().digests().unwrap(), incremental);
        prop_assert_eq!(stats.candles, model.len() as u64);
        drop(store);
        // Reopening finds everything level: nothing to replay. (Other tests of this
        // process spawn children: a fork that has not yet exec'd holds a duplicate of
        // the lock's descriptor, and so the flock, for a moment.)
        let store = (0..200)
            .find_map(|_| match Store::open(&paths, opts) {
                Err(candlelog::Error::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                }
                other => Some(other),
            })
            .unwrap()
            .unwrap();
        prop_assert_eq!(store.report().replayed_projection, 0);
    }
}
