//! Folding a scan's rows inside SQLite: an application-defined aggregate
//! function that hands each row's values to Rust where SQLite's virtual
//! machine holds them, so the structure audit (src/projection/structure.rs)
//! reads a 10 M-row table without stepping a statement out to Rust and
//! fetching every column through the result API, row after row.
//!
//! The function exists only while one scan runs: [`fold`] registers it on
//! the connection it is given, runs `SELECT candlelog_structure_fold(..)`,
//! and removes it again (also when the scan fails), so no other statement on
//! that connection can call it.

use std::os::raw::c_int;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Error};

/// The aggregate's name: candlelog's own, so it cannot shadow a function an
/// agent database defines.
pub const FOLD: &str = "candlelog_structure_fold";

/// Most values one folded row carries (SQLite allows 127 arguments by default).
pub const MAX_ARGS: usize = 32;

/// What a scan folds its rows into.
pub trait Fold: Send + std::panic::UnwindSafe + std::panic::RefUnwindSafe + 'static {
    /// One row's values, in the order of the select list; an error stops the scan.
    fn row(&mut self, values: &[ValueRef<'_>]) -> Result<(), Error>;
}

/// Runs `SELECT candlelog_structure_fold(args) FROM from` on `conn`, folding
/// every row into `state`, and returns it. With `plan`, the statement's query
/// plan (`EXPLAIN QUERY PLAN`) must mention it, or the scan is refused: the
/// caller says which b-tree the scan must read, and SQLite is held to it.
pub fn fold<F: Fold>(conn: &Connection, args: &[String], from: &str, plan: Option<&str>, state: F) -> Result<F, Error> {
    if args.is_empty() || args.len() > MAX_ARGS {
        return Err(Error::InvalidParameterCount(args.len(), MAX_ARGS));
    }
    let n_arg = args.len() as c_int;
    let slot = Arc::new(Mutex::new(Some(state)));
    conn.create_aggregate_function(FOLD, n_arg, FunctionFlags::SQLITE_UTF8, Folder { slot: Arc::clone(&slot) })?;
    let registered = Registered { conn, n_arg };
    let sql = format!("SELECT {FOLD}({}) FROM {from}", args.join(", "));
    if let Some(want) = plan {
        let mut stmt = registered.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let details: Vec<String> = stmt.query_map([], |r| r.get::<_, String>(3))?.collect::<Result<_, _>>()?;
        if !details.iter().any(|d| d.contains(want)) {
            return Err(Error::UserFunctionError(format!("{sql}: SQLite would not scan {want} ({})", details.join("; ")).into()));
        }
    }
    registered.conn.query_row(&sql, [], |_| Ok(()))?;
    drop(registered);
    let state = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    state.ok_or_else(|| Error::UserFunctionError(format!("{FOLD}: the scan's state was not handed back").into()))
}

/// Removes the function when the scan ends, however it ends.
struct Registered<'c> {
    conn: &'c Connection,
    n_arg: c_int,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // Removing a function this scan registered cannot fail but on a closed handle.
        let _ = self.conn.remove_function(FOLD, self.n_arg);
    }
}

/// The aggregate: the state moves out of `slot` when the first row arrives
/// and back into it when SQLite finalizes the aggregate (with no rows, it
/// never leaves).
struct Folder<F> {
    slot: Arc<Mutex<Option<F>>>,
}

impl<F: Fold> Aggregate<F, Option<i64>> for Folder<F> {
    fn init(&self, _: &mut Context<'_>) -> Result<F, Error> {
        let state = self.slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        state.ok_or_else(|| Error::UserFunctionError(format!("{FOLD} called twice in one scan").into()))
    }

    fn step(&self, ctx: &mut Context<'_>, state: &mut F) -> Result<(), Error> {
        let n = ctx.len().min(MAX_ARGS);
        let mut values = [ValueRef::Null; MAX_ARGS];
        for (k, v) in values.iter_mut().take(n).enumerate() {
            *v = ctx.get_raw(k);
        }
        state.row(&values[..n])
    }

    fn finalize(&self, _: &mut Context<'_>, state: Option<F>) -> Result<Option<i64>, Error> {
        if let Some(state) = state {
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sum {
        rows: i64,
        total: i64,
        texts: Vec<String>,
    }

    impl Fold for Sum {
        fn row(&mut self, values: &[ValueRef<'_>]) -> Result<(), Error> {
            self.rows += 1;
            self.total += values[0].as_i64()?;
            if let ValueRef::Text(t) = values[1] {
                self.texts.push(String::from_utf8_lossy(t).into_owned());
            }
            Ok(())
        }
    }

    fn table() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER, b TEXT); CREATE INDEX t_b ON t(b); INSERT INTO t VALUES (3, 'x'), (4, 'y'), (5, 'z');")
            .unwrap();
        c
    }

    fn registered(c: &Connection) -> bool {
        c.query_row(&format!("SELECT {FOLD}(1) FROM t"), [], |_| Ok(())).is_ok()
    }

    #[test]
    fn every_row_reaches_the_state_and_the_function_is_gone_after() {
        let c = table();
        let args = ["a".to_string(), "b".to_string()];
        let s = fold(&c, &args, "t", None, Sum::default()).unwrap();
        assert_eq!((s.rows, s.total), (3, 12));
        assert_eq!(s.texts, ["x", "y", "z"]);
        assert!(!registered(&c), "the function outlived its scan");
        // No rows: the state comes back untouched.
        let s = fold(&c, &args, "t WHERE a > 9", None, Sum::default()).unwrap();
        assert_eq!(s.rows, 0);
    }

    #[test]
    fn a_failing_row_stops_the_scan_and_the_function_is_gone_after() {
        let c = table();
        c.execute_batch("INSERT INTO t VALUES ('not a number', 'w')").unwrap();
        let args = ["a".to_string(), "b".to_string()];
        assert!(fold(&c, &args, "t", None, Sum::default()).is_err());
        assert!(!registered(&c), "the function outlived its failed scan");
    }

    #[test]
    fn an_index_scan_reads_the_index_in_its_order_and_a_scan_sqlite_would_not_make_is_refused() {
        let c = table();
        c.execute_batch("INSERT INTO t VALUES (1, 'a')").unwrap();
        let args = ["rowid".to_string(), "b".to_string()];
        let s = fold(&c, &args, "t INDEXED BY t_b", Some("USING COVERING INDEX t_b"), Sum::default()).unwrap();
        assert_eq!((s.rows, s.total), (4, 10));
        assert_eq!(s.texts, ["a", "x", "y", "z"]);
        // `a` is not in the index: SQLite would read the table too.
        let args = ["a".to_string(), "b".to_string()];
        let e = fold(&c, &args, "t INDEXED BY t_b", Some("USING COVERING INDEX t_b"), Sum::default()).err().unwrap();
        assert!(e.to_string().contains("would not scan"), "{e}");
        assert!(!registered(&c));
    }
}
