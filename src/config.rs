//! The configuration file (`DIR/candlelog.toml` or `--config PATH`): every
//! command-line option of the long-running commands can be set here;
//! `conf/candlelog.example.toml` documents every key. Precedence: command
//! line, then environment, then this file, then the built-in default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole file. Unknown keys are errors: a misspelt key must not be ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// SQLite projection path (default DIR/candles.sqlite).
    pub projection: Option<PathBuf>,
    /// Roll segments past this many bytes.
    pub segment_bytes: Option<u64>,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub sla: SlaConfig,
    #[serde(default)]
    pub backup: BackupConfig,
    #[serde(default)]
    pub run: RunConfig,
}

/// `[run]`: the long-running service (`candlelog run`); its REST side is `[sync]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The exchange's websocket stream host, e.g. "wss://fstream.binance.com".
    pub stream_url: Option<String>,
    /// Replace a stream connection silent for this long, e.g. "10s".
    pub silence_timeout: Option<String>,
    /// Where `/metrics` and `/health` are served over HTTP, e.g. "127.0.0.1:9469";
    /// "off" serves nothing.
    pub listen: Option<String>,
    #[serde(default)]
    pub schedule: ScheduleConfig,
}

/// `[run.schedule]`: the jobs the service runs itself, as cron expressions in UTC
/// (5 fields, or 6 with seconds first; "off" disables one). Defaults: `ops::schedule`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The reconcile sync of every configured series through REST.
    pub sync: Option<String>,
    /// A backup to every `[[backup.repositories]]` (with their retention).
    pub backup: Option<String>,
    /// The restore drill of the first repository.
    pub drill: Option<String>,
    /// Retention and pruning alone, between backups.
    pub retention: Option<String>,
}

/// `[backup]`: where `backup` writes when no `--to` is given (3-2-1: several).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    #[serde(default)]
    pub repositories: Vec<RepositoryConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local directory.
    pub path: PathBuf,
    /// Snapshots older than this many days are deleted after a backup, never
    /// the newest of them (a restore to the start of the window needs it).
    pub keep_days: Option<u32>,
    /// After a backup, segments committed more than this many days ago that no
    /// retained snapshot needs are deleted (`--prune-segments-before` with a date
    /// this many days back). Unset: segments are kept.
    pub prune_segments_days: Option<u32>,
    /// Take a snapshot when the repository's newest one is at least this
    /// old (e.g. "7d"). Segments go up every time.
    pub snapshot_every: Option<String>,
    /// Take a snapshot when the log since the newest one holds this
    /// percentage of that snapshot's LSN (0-100): a restore then replays at
    /// most about that share of the store. 0: a snapshot at every backup.
    /// Unset: 2, or with `snapshot_every` alone no bound on the tail.
    pub snapshot_tail_percent: Option<u32>,
    /// At most this many delta snapshots (the pages changed since the
    /// previous snapshot) after a full one; 0: every snapshot is full.
    /// Default 14.
    pub delta_chain_max: Option<u32>,
    /// A delta that would hold more than this percentage of the database's
    /// pages is taken as a full snapshot instead (1-100). Default 50.
    pub delta_max_percent: Option<u32>,
}

/// `[sla]`: targets of `candlelog sla`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// Longest a series may go without a successful sync (default "26h").
    pub freshness_target: Option<String>,
    /// Longest gap between two backups of a repository (default "26h").
    pub rpo_target: Option<String>,
    /// Longest a drill's restore may take (default "30m").
    pub rto_target: Option<String>,
}

/// `[health]`: thresholds of `candlelog health`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Nightly mode (no service running): freshness WARNING once a closed candle has been
    /// missing this long after its close, whatever the interval (default "24h").
    pub stale_warning: Option<String>,
    /// Nightly mode: freshness CRITICAL past this (default "26h").
    pub stale_critical: Option<String>,
    /// Service mode (`candlelog run` is the writer): how long after its close a candle may be
    /// missing, per interval ("1m", "4h", …) or for every other interval ("default").
    #[serde(default)]
    pub freshness: std::collections::BTreeMap<String, FreshnessConfig>,
    /// The last sync run must be younger than this (default "26h").
    pub run_max_age: Option<String>,
    /// Free space on the data directory's filesystem must stay above this fraction (default 0.15).
    pub disk_min_free: Option<f64>,
}

/// One interval's delay in `[health.freshness]`, e.g. `{ warning = "2m", critical = "10m" }`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessConfig {
    pub warning: Option<String>,
    pub critical: Option<String>,
}

/// `[metrics]`: the Prometheus textfile.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Rewritten after every command, e.g. /var/lib/node_exporter/textfile/candlelog.prom.
    pub textfile: Option<PathBuf>,
}

/// `[sync]`: the nightly sync.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Symbols to keep complete, or the single entry "all".
    pub symbols: Option<Vec<String>>,
    pub intervals: Option<Vec<String>>,
    /// First run of a series: a date (YYYY-MM-DD or RFC 3339) or "listing".
    pub since: Option<String>,
    /// First run of a series without `since`: the last N candles.
    pub lookback: Option<u32>,
    pub exchange_url: Option<String>,
    pub concurrency: Option<usize>,
    /// Whole-run limit, e.g. "30m", "90s".
    pub timeout: Option<String>,
    /// Per-request limit, e.g. "10s".
    pub request_timeout: Option<String>,
    /// Share of symbols that must succeed for exit 0.
    pub min_success: Option<f64>,
    /// Fraction of the exchange's per-minute weight budget kept free.
    pub weight_margin: Option<f64>,
}

impl Config {
    /// Reads `path`; a missing file is an empty config unless `required`.
    pub fn load(path: &Path, required: bool) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) && !required => {
                return Ok(Config::default());
            }
            Err(e) => return Err(Error::Usage(format!("config file {}: {e}", path.display()))),
        };
        toml::from_str(&text).map_err(|e| Error::Usage(format!("config file {}: {e}", path.display())))
    }
}

/// The default set of symbols: 60 USD-M perpetuals (conf/candlelog.example.toml lists the same).
pub const DEFAULT_SYMBOLS: [&str; 60] = [
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "DOGEUSDT",
    "ADAUSDT",
    "TRXUSDT",
    "AVAXUSDT",
    "LINKUSDT",
    "DOTUSDT",
    "BCHUSDT",
    "LTCUSDT",
    "NEARUSDT",
    "UNIUSDT",
    "APTUSDT",
    "ARBUSDT",
    "OPUSDT",
    "ATOMUSDT",
    "ETCUSDT",
    "FILUSDT",
    "ICPUSDT",
    "INJUSDT",
    "SUIUSDT",
    "SEIUSDT",
    "TIAUSDT",
    "AAVEUSDT",
    "LDOUSDT",
    "RUNEUSDT",
    "STXUSDT",
    "IMXUSDT",
    "HBARUSDT",
    "VETUSDT",
    "ALGOUSDT",
    "XLMUSDT",
    "EGLDUSDT",
    "SANDUSDT",
    "MANAUSDT",
    "AXSUSDT",
    "GALAUSDT",
    "APEUSDT",
    "CRVUSDT",
    "DYDXUSDT",
    "GMXUSDT",
    "SNXUSDT",
    "COMPUSDT",
    "ZECUSDT",
    "1000PEPEUSDT",
    "WIFUSDT",
    "ORDIUSDT",
    "JUPUSDT",
    "PYTHUSDT",
    "ENAUSDT",
    "WLDUSDT",
    "FETUSDT",
    "RENDERUSDT",
    "TAOUSDT",
    "ONDOUSDT",
    "1000SHIBUSDT",
    "SKRUSDT",
];

/// Parses durations like "30m", "90s", "1h30m", "500ms".
pub fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let span: jiff::Span = text.parse().map_err(|e| format!("invalid duration {text:?}: {e} (use e.g. 30m, 90s, 1h30m)"))?;
    let signed = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|e| format!("invalid duration {text:?}: {e}"))?;
    std::time::Duration::try_from(signed).map_err(|_| format!("duration {text:?} must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_the_way_operators_write_them() {
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_example_config_is_valid_and_lists_the_default_symbols() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/candlelog.example.toml");
        let c = Config::load(&p, true).unwrap();
        assert_eq!(c.sync.symbols.unwrap(), DEFAULT_SYMBOLS.map(String::from).to_vec());
        assert_eq!(c.sync.intervals.unwrap(), vec!["4h"]);
        assert_eq!(parse_duration(&c.sync.timeout.unwrap()).unwrap().as_secs(), 1800);
        assert_eq!(c.health.stale_critical.as_deref(), Some("26h"));
        assert_eq!(c.sla.freshness_target.as_deref(), Some("26h"));
        assert_eq!(c.sla.rto_target.as_deref(), Some("30m"));
        assert_eq!(c.run.stream_url.as_deref(), Some("wss://fstream.binance.com"));
        assert_eq!(parse_duration(&c.run.silence_timeout.unwrap()).unwrap().as_secs(), 10);
        assert_eq!(c.run.listen.as_deref(), Some("127.0.0.1:9469"));
        let default = &c.health.freshness["default"];
        assert_eq!((default.warning.as_deref(), default.critical.as_deref()), (Some("2m"), Some("10m")));
        // The schedules it lists are the built-in defaults, and they parse.
        let s = &c.run.schedule;
        assert_eq!((s.sync.as_deref(), s.backup.as_deref()), (Some("0 1 * * *"), Some("0 2 * * *")));
        assert_eq!((s.drill.as_deref(), s.retention.as_deref()), (Some("0 4 1 * *"), Some("off")));
        // The commented-out repositories are valid too, once uncommented.
        let text = std::fs::read_to_string(&p).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| {
                let keys = ["#[[backup.repositories]]", "#path", "#keep_days", "#prune_segments_days", "#snapshot_", "#delta_", "#\"1d\""];
                if keys.iter().any(|k| l.starts_with(k)) { &l[1..] } else { l }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("candlelog.toml");
        std::fs::write(&q, uncommented).unwrap();
        let repos = Config::load(&q, true).unwrap().backup.repositories;
        assert_eq!(repos.len(), 3);
        assert_eq!((repos[0].keep_days, repos[0].prune_segments_days), (Some(14), Some(30)));
        assert_eq!(repos[2].path, Path::new("s3://company-backups/candlelog"));
        assert_eq!(parse_duration(repos[2].snapshot_every.as_deref().unwrap()).unwrap().as_secs(), 7 * 86_400);
        assert_eq!(repos[2].snapshot_tail_percent, Some(2));
        assert_eq!((repos[2].delta_chain_max, repos[2].delta_max_percent), (Some(14), Some(50)));
        assert!(Config::load(&q, true).unwrap().health.freshness.contains_key("1d"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("candlelog.toml");
        std::fs::write(&p, "[sync]\nsymbol = [\"BTCUSDT\"]\n").unwrap();
        let e = Config::load(&p, true).unwrap_err().to_string();
        assert!(e.contains("candlelog.toml") && e.contains("symbol"), "{e}");
        std::fs::write(&p, "[sync]\nsymbols = [\"BTCUSDT\"]\ntimeout = \"5m\"\n").unwrap();
        let c = Config::load(&p, true).unwrap();
        assert_eq!(c.sync.symbols.unwrap(), vec!["BTCUSDT"]);
        assert!(Config::load(&dir.path().join("missing.toml"), false).is_ok());
        assert!(Config::load(&dir.path().join("missing.toml"), true).is_err());
    }
}
