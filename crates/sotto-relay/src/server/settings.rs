//! What the `sotto-relay` binary is told: its TOML configuration file,
//! environment overrides and (in the binary) command-line flags
//! (docs/relay.md §8 and §10).
//!
//! Every setting has one name. In the file it is a key (`max_frame_size`),
//! or a key in a table (`max_bytes` in `[mailbox_limits]`, which is
//! `mailbox_limits.max_bytes`). In the environment it is `SOTTO_RELAY_`
//! and the name in capitals, dots as underscores
//! (`SOTTO_RELAY_MAILBOX_LIMITS_MAX_BYTES`). Each source overrides the
//! ones before it: the defaults, then the file, then the environment, then
//! the binary's flags.
//!
//! Typos are errors, not silently ignored settings: an unknown key in the
//! file, or an unknown `SOTTO_RELAY_` variable, is refused and named, with
//! the closest known name. So is a value of the wrong kind or unit, naming
//! the key and, in a file, its line.
//!
//! Values:
//!
//! - sizes in bytes are whole numbers (`1048576`) or strings with a binary
//!   unit (`"1MiB"`; `B`, `KiB`, `MiB`, `GiB`, `TiB`);
//! - durations are strings with a unit (`"500ms"`, `"10s"`, `"5m"`,
//!   `"2h"`, `"30d"`); a bare number is refused, as its unit would be a
//!   guess;
//! - counts are whole numbers, rates are numbers;
//! - optional settings (`max_db_bytes`, `tls_cert`, `tls_key`,
//!   `metrics_listen`) are off when absent or empty, so an empty
//!   environment variable turns off what the file turned on.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::ServerConfig;

/// The prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "SOTTO_RELAY_";

/// The environment variable naming the configuration file, when no
/// `--config` flag does.
pub const CONFIG_ENV: &str = "SOTTO_RELAY_CONFIG";

/// Variables with the prefix that belong to the `sotto` client tools, not
/// the relay; the relay leaves them alone.
const CLIENT_ENV: &[&str] = &["SOTTO_RELAY_CA"];

/// The tables of the file: a key inside one is `table.key`.
const TABLES: &[&str] = &["mailbox_limits", "rate_limit", "first_contact"];

/// Every setting, by its name in the file, in the order the effective
/// settings are printed ([`RelaySettings::to_toml`]).
pub const KEYS: &[&str] = &[
    "listen",
    "store",
    "max_db_bytes",
    "redis_key_prefix",
    "blob_dir",
    "tls_cert",
    "tls_key",
    "log",
    "metrics_listen",
    "server_id",
    "max_frame_size",
    "max_total_bytes",
    "envelope_ttl",
    "sweep_interval",
    "connection_send_budget",
    "max_one_time_prekeys",
    "max_kem_prekeys",
    "prekey_low_threshold",
    "fetch_page_size",
    "max_connections",
    "max_connections_per_address",
    "handshake_timeout",
    "unauthenticated_timeout",
    "idle_timeout",
    "frame_timeout",
    "unauthenticated_frame_budget",
    "authenticated_frame_budget",
    "write_timeout",
    "shutdown_grace",
    "max_blob_size",
    "max_blob_ttl",
    "max_blob_bytes_per_mailbox",
    "max_total_blob_bytes",
    "mailbox_limits.max_envelopes",
    "mailbox_limits.max_bytes",
    "rate_limit.requests_per_second",
    "rate_limit.request_burst",
    "rate_limit.bytes_per_second",
    "rate_limit.byte_burst",
    "first_contact.burst",
    "first_contact.interval",
    "first_contact.tracked_mailboxes",
];

/// The default of `redis_key_prefix`.
const DEFAULT_REDIS_KEY_PREFIX: &str = "sotto";

/// The environment variable of the setting `key`:
/// `mailbox_limits.max_bytes` is `SOTTO_RELAY_MAILBOX_LIMITS_MAX_BYTES`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Where the relay keeps its mailboxes, written `sqlite:PATH`, `memory:`
/// or `redis://HOST[:PORT][/DB]` (`rediss://` for TLS).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreSpec {
    /// A SQLite database file ([`SqliteStore`](crate::SqliteStore)): one
    /// process, or several on one machine sharing the file.
    Sqlite(PathBuf),
    /// Process memory ([`MemoryStore`](crate::MemoryStore)), lost on exit.
    Memory,
    /// A Redis server, shared by relay processes on several machines, or a
    /// Redis Cluster (`redis+cluster://HOST:PORT,HOST:PORT`, or the URL of
    /// any one node). The URL may hold a password: it is never printed
    /// ([`Display`](fmt::Display) and [`Debug`] show it as `***`).
    Redis(String),
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        if spec == "memory:" {
            return Ok(Self::Memory);
        }
        if let Some(path) = spec.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err("sqlite: needs the database file's path, e.g. sqlite:/var/lib/sotto-relay/relay.db".to_owned());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if let Some(rest) = spec
            .strip_prefix("redis://")
            .or_else(|| spec.strip_prefix("rediss://"))
        {
            if rest.is_empty() || rest.starts_with('/') {
                return Err("redis:// needs a host, e.g. redis://127.0.0.1:6379".to_owned());
            }
            return Ok(Self::Redis(spec.to_owned()));
        }
        if let Some(rest) = spec
            .strip_prefix("redis+cluster://")
            .or_else(|| spec.strip_prefix("rediss+cluster://"))
        {
            if rest.is_empty() || rest.starts_with('/') || rest.starts_with(',') {
                return Err("redis+cluster:// needs its nodes, e.g. redis+cluster://10.0.0.1:6379,10.0.0.2:6379".to_owned());
            }
            return Ok(Self::Redis(spec.to_owned()));
        }
        Err(format!(
            "unknown store {:?}: expected sqlite:PATH, memory:, redis://HOST[:PORT] or redis+cluster://HOST:PORT,HOST:PORT",
            redact(spec)
        ))
    }
}

/// A store spec with the password of a URL's user part replaced by `***`.
fn redact(spec: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return Cow::Borrowed(spec);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}://***{}", &rest[at..])),
        None => Cow::Borrowed(spec),
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Memory => f.write_str("memory:"),
            Self::Redis(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreSpec({self})")
    }
}

/// Why the settings were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The configuration file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        error: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{origin}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// A key (or environment variable) that names no setting.
    #[error("{origin}: unknown setting `{key}`{}", did_you_mean(suggestion.as_deref()))]
    UnknownKey {
        /// Where it was given: `FILE:LINE`, or `environment`.
        origin: String,
        /// The key, or the variable, as given.
        key: String,
        /// The closest known one, if one is close.
        suggestion: Option<String>,
    },
    /// A value the setting cannot take.
    #[error("{origin}: {key}: {message}")]
    InvalidValue {
        /// Where it was given: `FILE:LINE`, `environment variable
        /// SOTTO_RELAY_...`, or a flag.
        origin: String,
        /// The setting, as the file names it.
        key: String,
        /// Why.
        message: String,
    },
    /// Settings that are fine one by one and not together, or not usable.
    #[error("invalid relay configuration: {0}")]
    Invalid(String),
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"))
}

/// Everything the `sotto-relay` binary is told: where it listens, where it
/// keeps its mailboxes, TLS, logging, the metrics endpoint, and the
/// [`ServerConfig`]. [`Default`] is the binary's behaviour without any
/// setting.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RelaySettings {
    /// Address the relay listens on, `HOST:PORT` (default
    /// `127.0.0.1:7447`).
    pub listen: String,
    /// Where mailboxes are kept (default `sqlite:sotto-relay.db`).
    pub store: StoreSpec,
    /// Largest size of the SQLite file
    /// ([`SqliteOptions::max_database_bytes`](crate::SqliteOptions::max_database_bytes));
    /// SQLite only (default none).
    pub max_db_bytes: Option<u64>,
    /// What every key of a Redis store starts with
    /// ([`RedisOptions::key_prefix`](crate::RedisOptions::key_prefix)):
    /// relays that share a store use the same one. Ignored by the other
    /// stores (default `sotto`).
    pub redis_key_prefix: String,
    /// The directory blobs are kept in (docs/relay.md §9). Default: for
    /// `sqlite:PATH`, `PATH.blobs`; for `memory:`, none (in memory, lost
    /// on exit); a Redis store needs one, the same for every relay of the
    /// store (shared storage, e.g. NFS).
    pub blob_dir: Option<PathBuf>,
    /// PEM certificate chain, leaf first; with `tls_key`, TLS is served
    /// (default none: plain TCP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Most detailed log level written to stderr (default `info`).
    pub log: tracing::Level,
    /// Address of the HTTP endpoint for `/health` and `/metrics`, `HOST:PORT`
    /// (default none: no endpoint).
    pub metrics_listen: Option<String>,
    /// The server's limits and timeouts.
    pub server: ServerConfig,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7447".to_owned(),
            store: StoreSpec::Sqlite(PathBuf::from("sotto-relay.db")),
            max_db_bytes: None,
            redis_key_prefix: DEFAULT_REDIS_KEY_PREFIX.to_owned(),
            blob_dir: None,
            tls_cert: None,
            tls_key: None,
            log: tracing::Level::INFO,
            metrics_listen: None,
            server: ServerConfig::default(),
        }
    }
}

/// A value as given: from the file (typed), or as text (the environment,
/// a flag, or a TOML string).
enum Input<'a> {
    Text(&'a str),
    Integer(Option<i128>),
    Float(Option<f64>),
    Other(&'static str),
}

impl<'a> Input<'a> {
    fn of(value: &'a DeValue<'_>) -> Self {
        match value {
            DeValue::String(s) => Self::Text(s.as_ref()),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                Self::Integer(i128::from_str_radix(&digits, i.radix()).ok())
            }
            DeValue::Float(f) => Self::Float(f.as_str().replace('_', "").parse().ok()),
            DeValue::Boolean(_) => Self::Other("true or false"),
            DeValue::Datetime(_) => Self::Other("a date"),
            DeValue::Array(_) => Self::Other("an array"),
            DeValue::Table(_) => Self::Other("a table"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "a string",
            Self::Integer(_) => "a number",
            Self::Float(_) => "a fractional number",
            Self::Other(kind) => kind,
        }
    }
}

/// Why a key was not set.
enum SetError {
    Unknown,
    Invalid(String),
}

impl From<String> for SetError {
    fn from(message: String) -> Self {
        Self::Invalid(message)
    }
}

fn text<'a>(input: &Input<'a>) -> Result<&'a str, String> {
    match input {
        Input::Text(s) => Ok(*s),
        other => Err(format!("expected a string, got {}", other.kind())),
    }
}

fn nonempty_text(input: &Input<'_>) -> Result<String, String> {
    let s = text(input)?;
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(s.to_owned())
}

/// A Redis key prefix: letters, digits, `-`, `_`, `.` and `:`.
fn key_prefix(input: &Input<'_>) -> Result<String, String> {
    let s = text(input)?;
    if !crate::store::is_valid_key_prefix(s) {
        return Err("letters, digits, '-', '_', '.' and ':' only, at least one".to_owned());
    }
    Ok(s.to_owned())
}

/// `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 address).
fn address(input: &Input<'_>) -> Result<String, String> {
    let s = text(input)?;
    let port = s.rsplit_once(':').and_then(|(host, port)| {
        (!host.is_empty())
            .then(|| port.parse::<u16>().ok())
            .flatten()
    });
    match port {
        Some(_) => Ok(s.to_owned()),
        None => Err(format!(
            "expected HOST:PORT, e.g. 127.0.0.1:7447 or [::]:7447, got {s:?}"
        )),
    }
}

/// An optional setting: absent or empty means off.
fn optional<T>(
    input: &Input<'_>,
    parse: impl FnOnce(&Input<'_>) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match input {
        Input::Text("") => Ok(None),
        _ => parse(input).map(Some),
    }
}

fn path(input: &Input<'_>) -> Result<PathBuf, String> {
    Ok(PathBuf::from(nonempty_text(input)?))
}

fn level(input: &Input<'_>) -> Result<tracing::Level, String> {
    let s = text(input)?;
    s.parse()
        .map_err(|_| format!("unknown log level {s:?}: expected error, warn, info, debug or trace"))
}

/// A whole number, from the file or as text (`10000`, `10_000`).
fn whole(input: &Input<'_>) -> Result<u64, String> {
    let n = match input {
        Input::Integer(Some(n)) => *n,
        Input::Integer(None) => return Err("number out of range".to_owned()),
        Input::Text(s) => {
            let digits = s.trim().replace('_', "");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("expected a whole number, got {s:?}"));
            }
            digits
                .parse::<i128>()
                .map_err(|_| format!("number out of range: {s}"))?
        }
        other => return Err(format!("expected a whole number, got {}", other.kind())),
    };
    if n < 0 {
        return Err(format!("must not be negative, got {n}"));
    }
    u64::try_from(n).map_err(|_| format!("number out of range: {n}"))
}

/// A whole number of at most `max`.
fn count<T: TryFrom<u64>>(input: &Input<'_>, max: u64) -> Result<T, String> {
    let n = whole(input)?;
    if n > max {
        return Err(format!("must be at most {max}, got {n}"));
    }
    T::try_from(n).map_err(|_| format!("must be at most {max}, got {n}"))
}

/// Binary units of sizes, largest first.
const SIZE_UNITS: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];

/// Parses a size: `1048576`, `"1048576"`, `"1MiB"`, `"1 MiB"`, `"512B"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    let number = number.replace('_', "");
    if number.is_empty() {
        return Err(format!(
            "expected a size in bytes, e.g. 1048576 or \"1MiB\", got {s:?}"
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("size out of range: {s:?}"))?;
    let unit = unit.trim();
    let multiplier = match unit {
        "" | "B" => 1,
        _ => SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                format!(
                    "unknown unit {unit:?} in {s:?}: use B, KiB, MiB, GiB or TiB (powers of 1024)"
                )
            })?,
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("size out of range: {s:?}"))
}

fn size(input: &Input<'_>) -> Result<u64, String> {
    match input {
        Input::Text(s) => parse_size(s),
        _ => whole(input).map_err(|e| format!("{e} (a size: bytes, or a string such as \"1MiB\")")),
    }
}

fn size_within<T: TryFrom<u64>>(input: &Input<'_>, max: u64) -> Result<T, String> {
    let n = size(input)?;
    if n > max {
        return Err(format!("must be at most {max} bytes, got {n}"));
    }
    T::try_from(n).map_err(|_| format!("must be at most {max} bytes, got {n}"))
}

/// A size as a rate or burst of the byte bucket.
fn byte_rate(input: &Input<'_>) -> Result<f64, String> {
    match input {
        Input::Float(Some(f)) => Ok(*f),
        _ => size(input).map(|n| n as f64),
    }
}

/// A number: `100`, `12.5`, `"100"`.
fn number(input: &Input<'_>) -> Result<f64, String> {
    match input {
        Input::Integer(Some(n)) => Ok(*n as f64),
        Input::Float(Some(f)) => Ok(*f),
        Input::Integer(None) | Input::Float(None) => Err("number out of range".to_owned()),
        Input::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("expected a number, got {s:?}")),
        other => Err(format!("expected a number, got {}", other.kind())),
    }
}

/// Units of durations, largest first, in milliseconds.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a duration: `"500ms"`, `"10s"`, `"5m"`, `"2h"`, `"30d"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(end);
    let number = number.replace('_', "");
    let unit = unit.trim();
    if number.is_empty() || unit.is_empty() {
        return Err(format!(
            "expected a duration with a unit (ms, s, m, h or d), e.g. \"30s\", got {s:?}"
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("duration out of range: {s:?}"))?;
    let millis = DURATION_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, m)| *m)
        .ok_or_else(|| format!("unknown unit {unit:?} in {s:?}: use ms, s, m, h or d"))?;
    n.checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration out of range: {s:?}"))
}

fn duration(input: &Input<'_>) -> Result<Duration, String> {
    match input {
        Input::Text(s) => parse_duration(s),
        Input::Integer(_) | Input::Float(_) => Err(
            "a duration needs a unit: write it as a string such as \"30s\", \"5m\" or \"30d\""
                .to_owned(),
        ),
        other => Err(format!(
            "expected a duration such as \"30s\", got {}",
            other.kind()
        )),
    }
}

/// How a size is written back: with the largest unit that divides it.
fn size_value(n: u64) -> toml::Value {
    if n > 0
        && let Some((unit, m)) = SIZE_UNITS.iter().find(|(_, m)| n.is_multiple_of(*m))
    {
        return toml::Value::String(format!("{}{unit}", n / m));
    }
    match i64::try_from(n) {
        Ok(i) => toml::Value::Integer(i),
        // Beyond TOML's integers: as text, which sizes also take.
        Err(_) => toml::Value::String(n.to_string()),
    }
}

fn count_value(n: u64) -> toml::Value {
    match i64::try_from(n) {
        Ok(i) => toml::Value::Integer(i),
        Err(_) => toml::Value::String(n.to_string()),
    }
}

fn rate_value(f: f64) -> toml::Value {
    if f.fract() == 0.0 && (1.0..9.0e15).contains(&f) {
        return size_value(f as u64);
    }
    toml::Value::Float(f)
}

/// How a duration is written back: with the largest unit that divides it
/// (whole milliseconds; a finer one is rounded down).
fn duration_value(d: Duration) -> toml::Value {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let (unit, m) = DURATION_UNITS
        .iter()
        .find(|(_, m)| millis > 0 && millis.is_multiple_of(*m))
        .copied()
        .unwrap_or(("ms", 1));
    toml::Value::String(format!("{}{unit}", millis / m))
}

fn text_value(s: &str) -> toml::Value {
    toml::Value::String(s.to_owned())
}

fn path_value(p: &Path) -> toml::Value {
    toml::Value::String(p.to_string_lossy().into_owned())
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// Plain Levenshtein distance, for suggesting a known key.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The setting closest to `given`, if it is close enough to be a typo,
/// spelt by `spell` (as a key, or as an environment variable).
fn closest(given: &str, spell: impl Fn(&str) -> String) -> Option<String> {
    let candidates = KEYS.iter().map(|k| spell(k));
    let near = candidates
        .clone()
        .map(|k| (edit_distance(given, &k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    // A key cut short, or with something added: `max_frame` for
    // `max_frame_size`.
    near.or_else(|| {
        candidates
            .filter(|k| given.len() >= 5 && (k.starts_with(given) || given.starts_with(k.as_str())))
            .min_by_key(|k| k.len().abs_diff(given.len()))
    })
}

fn closest_key(given: &str) -> Option<String> {
    closest(given, str::to_owned)
}

impl RelaySettings {
    /// The defaults, then `file` if given, then the environment `vars`
    /// (only those starting with [`ENV_PREFIX`] are looked at). The
    /// binary's flags go on top ([`set`](Self::set)); then
    /// [`validate`](Self::validate).
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut settings = Self::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|error| SettingsError::Read {
                path: path.to_owned(),
                error,
            })?;
            settings.apply_toml(&text, &path.display().to_string())?;
        }
        settings.apply_env(vars)?;
        Ok(settings)
    }

    /// Applies the settings of a TOML document; `origin` names it in
    /// errors (the file's path).
    pub fn apply_toml(&mut self, text: &str, origin: &str) -> Result<(), SettingsError> {
        let document = DeTable::parse(text).map_err(|e| SettingsError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let at = |offset: usize| format!("{origin}:{}", line_of(text, offset));
        for (key, value) in document.get_ref().iter() {
            let name = key.get_ref().as_ref();
            if TABLES.contains(&name) {
                let DeValue::Table(table) = value.get_ref() else {
                    return Err(SettingsError::InvalidValue {
                        origin: at(value.span().start),
                        key: name.to_owned(),
                        message: format!(
                            "expected a table ([{name}]), got {}",
                            Input::of(value.get_ref()).kind()
                        ),
                    });
                };
                for (inner, value) in table.iter() {
                    let full = format!("{name}.{}", inner.get_ref());
                    self.apply_value(
                        &full,
                        value.get_ref(),
                        || at(inner.span().start),
                        || at(value.span().start),
                    )?;
                }
            } else {
                self.apply_value(
                    name,
                    value.get_ref(),
                    || at(key.span().start),
                    || at(value.span().start),
                )?;
            }
        }
        Ok(())
    }

    fn apply_value(
        &mut self,
        key: &str,
        value: &DeValue<'_>,
        key_origin: impl FnOnce() -> String,
        value_origin: impl FnOnce() -> String,
    ) -> Result<(), SettingsError> {
        match self.set_input(key, &Input::of(value)) {
            Ok(()) => Ok(()),
            Err(SetError::Unknown) => Err(SettingsError::UnknownKey {
                origin: key_origin(),
                key: key.to_owned(),
                suggestion: closest_key(key),
            }),
            Err(SetError::Invalid(message)) => Err(SettingsError::InvalidValue {
                origin: value_origin(),
                key: key.to_owned(),
                message,
            }),
        }
    }

    /// Applies every `SOTTO_RELAY_...` variable of `vars` (others are
    /// ignored, and so are [`CONFIG_ENV`] and the client tools'
    /// `SOTTO_RELAY_CA`). An unknown one is an error.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), SettingsError> {
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX)
                    && name != CONFIG_ENV
                    && !CLIENT_ENV.contains(&name.as_str())
            })
            .collect();
        // The same error for the same environment, whatever its order.
        vars.sort();
        for (name, value) in vars {
            let Some(key) = KEYS.iter().find(|k| env_var(k) == name) else {
                let suggestion = closest(&name, env_var);
                return Err(SettingsError::UnknownKey {
                    origin: "environment".to_owned(),
                    key: name,
                    suggestion,
                });
            };
            self.set(key, &value, &format!("environment variable {name}"))?;
        }
        Ok(())
    }

    /// Sets `key` (as the file names it) from text, as the environment and
    /// the binary's flags do; `origin` names the source in errors.
    pub fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), SettingsError> {
        match self.set_input(key, &Input::Text(value)) {
            Ok(()) => Ok(()),
            Err(SetError::Unknown) => Err(SettingsError::UnknownKey {
                origin: origin.to_owned(),
                key: key.to_owned(),
                suggestion: closest_key(key),
            }),
            Err(SetError::Invalid(message)) => Err(SettingsError::InvalidValue {
                origin: origin.to_owned(),
                key: key.to_owned(),
                message,
            }),
        }
    }

    fn set_input(&mut self, key: &str, v: &Input<'_>) -> Result<(), SetError> {
        let s = &mut self.server;
        match key {
            "listen" => self.listen = address(v)?,
            "store" => self.store = text(v)?.parse()?,
            "max_db_bytes" => self.max_db_bytes = optional(v, size)?,
            "redis_key_prefix" => self.redis_key_prefix = key_prefix(v)?,
            "blob_dir" => self.blob_dir = optional(v, path)?,
            "tls_cert" => self.tls_cert = optional(v, path)?,
            "tls_key" => self.tls_key = optional(v, path)?,
            "log" => self.log = level(v)?,
            "metrics_listen" => self.metrics_listen = optional(v, address)?,
            "server_id" => s.server_id = nonempty_text(v)?,
            "max_frame_size" => s.max_frame_size = size_within(v, u32::MAX.into())?,
            "max_total_bytes" => s.max_total_bytes = size(v)?,
            "envelope_ttl" => s.envelope_ttl = duration(v)?,
            "sweep_interval" => s.sweep_interval = duration(v)?,
            "connection_send_budget" => s.connection_send_budget = size(v)?,
            "max_one_time_prekeys" => s.max_one_time_prekeys = count(v, u32::MAX.into())?,
            "max_kem_prekeys" => s.max_kem_prekeys = count(v, u32::MAX.into())?,
            "prekey_low_threshold" => s.prekey_low_threshold = count(v, u32::MAX.into())?,
            "fetch_page_size" => s.fetch_page_size = count(v, u16::MAX.into())?,
            "max_connections" => s.max_connections = count(v, u32::MAX.into())?,
            "max_connections_per_address" => {
                s.max_connections_per_address = count(v, u32::MAX.into())?;
            }
            "handshake_timeout" => s.handshake_timeout = duration(v)?,
            "unauthenticated_timeout" => s.unauthenticated_timeout = duration(v)?,
            "idle_timeout" => s.idle_timeout = duration(v)?,
            "frame_timeout" => s.frame_timeout = duration(v)?,
            "unauthenticated_frame_budget" => s.unauthenticated_frame_budget = size(v)?,
            "authenticated_frame_budget" => s.authenticated_frame_budget = size(v)?,
            "write_timeout" => s.write_timeout = duration(v)?,
            "shutdown_grace" => s.shutdown_grace = duration(v)?,
            "max_blob_size" => s.max_blob_size = size(v)?,
            "max_blob_ttl" => s.max_blob_ttl = duration(v)?,
            "max_blob_bytes_per_mailbox" => s.max_blob_bytes_per_mailbox = size(v)?,
            "max_total_blob_bytes" => s.max_total_blob_bytes = size(v)?,
            "mailbox_limits.max_envelopes" => s.mailbox_limits.max_envelopes = whole(v)?,
            "mailbox_limits.max_bytes" => s.mailbox_limits.max_bytes = size(v)?,
            "rate_limit.requests_per_second" => s.rate_limit.requests_per_second = number(v)?,
            "rate_limit.request_burst" => s.rate_limit.request_burst = number(v)?,
            "rate_limit.bytes_per_second" => s.rate_limit.bytes_per_second = byte_rate(v)?,
            "rate_limit.byte_burst" => s.rate_limit.byte_burst = byte_rate(v)?,
            "first_contact.burst" => s.first_contact.burst = count(v, u32::MAX.into())?,
            "first_contact.interval" => s.first_contact.interval = duration(v)?,
            "first_contact.tracked_mailboxes" => {
                s.first_contact.tracked_mailboxes = count(v, u32::MAX.into())?;
            }
            _ => return Err(SetError::Unknown),
        }
        Ok(())
    }

    /// The value of `key` as the file would give it: `None` for an
    /// unknown key, `Some(None)` for an optional setting that is off.
    pub fn get(&self, key: &str) -> Option<Option<toml::Value>> {
        let s = &self.server;
        let value = match key {
            "listen" => text_value(&self.listen),
            "store" => toml::Value::String(self.store.to_string()),
            "max_db_bytes" => return Some(self.max_db_bytes.map(size_value)),
            "redis_key_prefix" => text_value(&self.redis_key_prefix),
            "blob_dir" => return Some(self.blob_dir.as_deref().map(path_value)),
            "tls_cert" => return Some(self.tls_cert.as_deref().map(path_value)),
            "tls_key" => return Some(self.tls_key.as_deref().map(path_value)),
            "log" => toml::Value::String(self.log.as_str().to_ascii_lowercase()),
            "metrics_listen" => return Some(self.metrics_listen.as_deref().map(text_value)),
            "server_id" => text_value(&s.server_id),
            "max_frame_size" => size_value(s.max_frame_size.into()),
            "max_total_bytes" => size_value(s.max_total_bytes),
            "envelope_ttl" => duration_value(s.envelope_ttl),
            "sweep_interval" => duration_value(s.sweep_interval),
            "connection_send_budget" => size_value(s.connection_send_budget),
            "max_one_time_prekeys" => count_value(s.max_one_time_prekeys.into()),
            "max_kem_prekeys" => count_value(s.max_kem_prekeys.into()),
            "prekey_low_threshold" => count_value(s.prekey_low_threshold.into()),
            "fetch_page_size" => count_value(s.fetch_page_size.into()),
            "max_connections" => count_value(s.max_connections as u64),
            "max_connections_per_address" => count_value(s.max_connections_per_address as u64),
            "handshake_timeout" => duration_value(s.handshake_timeout),
            "unauthenticated_timeout" => duration_value(s.unauthenticated_timeout),
            "idle_timeout" => duration_value(s.idle_timeout),
            "frame_timeout" => duration_value(s.frame_timeout),
            "unauthenticated_frame_budget" => size_value(s.unauthenticated_frame_budget),
            "authenticated_frame_budget" => size_value(s.authenticated_frame_budget),
            "write_timeout" => duration_value(s.write_timeout),
            "shutdown_grace" => duration_value(s.shutdown_grace),
            "max_blob_size" => size_value(s.max_blob_size),
            "max_blob_ttl" => duration_value(s.max_blob_ttl),
            "max_blob_bytes_per_mailbox" => size_value(s.max_blob_bytes_per_mailbox),
            "max_total_blob_bytes" => size_value(s.max_total_blob_bytes),
            "mailbox_limits.max_envelopes" => count_value(s.mailbox_limits.max_envelopes),
            "mailbox_limits.max_bytes" => size_value(s.mailbox_limits.max_bytes),
            "rate_limit.requests_per_second" => {
                toml::Value::Float(s.rate_limit.requests_per_second)
            }
            "rate_limit.request_burst" => toml::Value::Float(s.rate_limit.request_burst),
            "rate_limit.bytes_per_second" => rate_value(s.rate_limit.bytes_per_second),
            "rate_limit.byte_burst" => rate_value(s.rate_limit.byte_burst),
            "first_contact.burst" => count_value(s.first_contact.burst.into()),
            "first_contact.interval" => duration_value(s.first_contact.interval),
            "first_contact.tracked_mailboxes" => {
                count_value(s.first_contact.tracked_mailboxes as u64)
            }
            _ => return None,
        };
        Some(Some(value))
    }

    /// These settings as a configuration file that sets every one of
    /// them (`sotto-relay --check-config` prints it); settings that are
    /// off are comments. Reading it back gives the same settings.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let mut table = "";
        for key in KEYS {
            let (section, name) = key.split_once('.').unwrap_or(("", key));
            if section != table {
                out.push_str(&format!("\n[{section}]\n"));
                table = section;
            }
            match self.get(key).flatten() {
                Some(value) => out.push_str(&format!("{name} = {value}\n")),
                None => out.push_str(&format!("# {name}: off\n")),
            }
        }
        out
    }

    /// The directory blobs are kept in: `blob_dir` if set, else next to a
    /// SQLite file (`PATH.blobs`); `None` means in memory (a `memory:`
    /// store without `blob_dir`). A Redis store has none unless set, which
    /// [`validate`](Self::validate) refuses.
    pub fn blob_dir_in_effect(&self) -> Option<PathBuf> {
        if let Some(dir) = &self.blob_dir {
            return Some(dir.clone());
        }
        match &self.store {
            StoreSpec::Sqlite(path) => {
                let mut dir = path.clone().into_os_string();
                dir.push(".blobs");
                Some(PathBuf::from(dir))
            }
            _ => None,
        }
    }

    /// Checks the settings together: the [`ServerConfig`], that
    /// `tls_cert` and `tls_key` come together, `max_db_bytes` only
    /// with a SQLite store, and a Redis store with a `blob_dir`.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.server
            .validate()
            .map_err(|e| SettingsError::Invalid(e.to_owned()))?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(SettingsError::Invalid(
                "tls_cert and tls_key go together (--tls-cert and --tls-key)".to_owned(),
            ));
        }
        if self.max_db_bytes.is_some() && !matches!(self.store, StoreSpec::Sqlite(_)) {
            return Err(SettingsError::Invalid(format!(
                "max_db_bytes limits the SQLite file: not with store = \"{}\"",
                self.store
            )));
        }
        if self.blob_dir.is_none()
            && !matches!(self.store, StoreSpec::Sqlite(_) | StoreSpec::Memory)
        {
            return Err(SettingsError::Invalid(format!(
                "store = \"{}\" needs a blob_dir (--blob-dir), the same directory for every \
                 relay of the store: shared storage such as NFS",
                self.store
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<RelaySettings, SettingsError> {
        let mut settings = RelaySettings::default();
        settings.apply_toml(text, "relay.toml")?;
        Ok(settings)
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_key_is_read_and_written_back() {
        let defaults = RelaySettings::default();
        for key in KEYS {
            assert!(defaults.get(key).is_some(), "{key} has no getter");
        }
        assert!(defaults.get("nope").is_none());
        // Env names are distinct.
        let mut names: Vec<_> = KEYS.iter().map(|k| env_var(k)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
        // The defaults, printed, read back to the defaults.
        assert_eq!(from_toml(&defaults.to_toml()).unwrap(), defaults);
    }

    #[test]
    fn every_field_is_set_from_a_file() {
        let text = r#"
            listen = "0.0.0.0:7000"
            store = "sqlite:/var/lib/sotto/relay.db"
            max_db_bytes = "8GiB"
            redis_key_prefix = "relay-eu"
            blob_dir = "/var/lib/sotto/blobs"
            tls_cert = "/etc/sotto/cert.pem"
            tls_key = "/etc/sotto/key.pem"
            log = "debug"
            metrics_listen = "127.0.0.1:9447"
            server_id = "relay.example.org"
            max_frame_size = "2MiB"
            max_total_bytes = "100GiB"
            envelope_ttl = "14d"
            sweep_interval = "5m"
            connection_send_budget = "128MiB"
            max_one_time_prekeys = 500
            max_kem_prekeys = 50
            prekey_low_threshold = 20
            fetch_page_size = 128
            max_connections = 20_000
            max_connections_per_address = 16
            handshake_timeout = "5s"
            unauthenticated_timeout = "20s"
            idle_timeout = "10m"
            frame_timeout = "8s"
            unauthenticated_frame_budget = "64MiB"
            authenticated_frame_budget = 536870912
            write_timeout = "15s"
            shutdown_grace = "10s"
            max_blob_size = "2GiB"
            max_blob_ttl = "7d"
            max_blob_bytes_per_mailbox = "4GiB"
            max_total_blob_bytes = "1TiB"

            [mailbox_limits]
            max_envelopes = 5000
            max_bytes = "128MiB"

            [rate_limit]
            requests_per_second = 50
            request_burst = 100.5
            bytes_per_second = "2MiB"
            byte_burst = 4194304

            [first_contact]
            burst = 5
            interval = "10m"
            tracked_mailboxes = 1000
        "#;
        let s = from_toml(text).unwrap();
        assert_eq!(s.listen, "0.0.0.0:7000");
        assert_eq!(s.store, StoreSpec::Sqlite("/var/lib/sotto/relay.db".into()));
        assert_eq!(s.max_db_bytes, Some(8 << 30));
        assert_eq!(s.redis_key_prefix, "relay-eu");
        assert_eq!(
            s.tls_cert.as_deref(),
            Some(Path::new("/etc/sotto/cert.pem"))
        );
        assert_eq!(s.tls_key.as_deref(), Some(Path::new("/etc/sotto/key.pem")));
        assert_eq!(s.log, tracing::Level::DEBUG);
        assert_eq!(s.metrics_listen.as_deref(), Some("127.0.0.1:9447"));
        let c = &s.server;
        assert_eq!(c.server_id, "relay.example.org");
        assert_eq!(c.max_frame_size, 2 << 20);
        assert_eq!(c.max_total_bytes, 100 << 30);
        assert_eq!(c.envelope_ttl, Duration::from_secs(14 * 86_400));
        assert_eq!(c.sweep_interval, Duration::from_secs(300));
        assert_eq!(c.connection_send_budget, 128 << 20);
        assert_eq!(c.max_one_time_prekeys, 500);
        assert_eq!(c.max_kem_prekeys, 50);
        assert_eq!(c.prekey_low_threshold, 20);
        assert_eq!(c.fetch_page_size, 128);
        assert_eq!(c.max_connections, 20_000);
        assert_eq!(c.max_connections_per_address, 16);
        assert_eq!(c.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.unauthenticated_timeout, Duration::from_secs(20));
        assert_eq!(c.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.frame_timeout, Duration::from_secs(8));
        assert_eq!(c.unauthenticated_frame_budget, 64 << 20);
        assert_eq!(c.authenticated_frame_budget, 512 << 20);
        assert_eq!(c.write_timeout, Duration::from_secs(15));
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        assert_eq!(c.mailbox_limits.max_envelopes, 5000);
        assert_eq!(c.mailbox_limits.max_bytes, 128 << 20);
        assert_eq!(c.rate_limit.requests_per_second, 50.0);
        assert_eq!(c.rate_limit.request_burst, 100.5);
        assert_eq!(c.rate_limit.bytes_per_second, 2.0 * 1024.0 * 1024.0);
        assert_eq!(c.rate_limit.byte_burst, 4.0 * 1024.0 * 1024.0);
        assert_eq!(c.first_contact.burst, 5);
        assert_eq!(c.first_contact.interval, Duration::from_secs(600));
        assert_eq!(c.first_contact.tracked_mailboxes, 1000);
        assert_eq!(
            s.blob_dir.as_deref(),
            Some(Path::new("/var/lib/sotto/blobs"))
        );
        assert_eq!(c.max_blob_size, 2 << 30);
        assert_eq!(c.max_blob_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(c.max_blob_bytes_per_mailbox, 4 << 30);
        assert_eq!(c.max_total_blob_bytes, 1 << 40);
        s.validate().unwrap();
        // Every key was in the file: each differs from its default.
        let defaults = RelaySettings::default();
        for key in KEYS {
            assert_ne!(s.get(key), defaults.get(key), "{key} kept its default");
        }
        // And the settings round-trip through the printed form.
        assert_eq!(from_toml(&s.to_toml()).unwrap(), s);
        // Dotted keys are the same as tables.
        let dotted =
            from_toml("mailbox_limits.max_envelopes = 7\nfirst_contact.burst = 0").unwrap();
        assert_eq!(dotted.server.mailbox_limits.max_envelopes, 7);
        assert_eq!(dotted.server.first_contact.burst, 0);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line_and_a_suggestion() {
        let e = from_toml("listen = \"127.0.0.1:1\"\nmax_fram_size = 4096\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "relay.toml:2: unknown setting `max_fram_size` (did you mean `max_frame_size`?)"
        );
        let e = from_toml("[rate_limit]\nrequests_per_sec = 5\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown setting `rate_limit.requests_per_sec`"),
            "{e}"
        );
        let e = from_toml("[limits]\nmax_frame_size = 4096\n").unwrap_err();
        assert!(matches!(e, SettingsError::UnknownKey { .. }), "{e}");
        let e = from_toml("completely_unrelated = 1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "relay.toml:1: unknown setting `completely_unrelated`"
        );
    }

    #[test]
    fn bad_values_are_refused_with_a_message_naming_the_key() {
        let cases = [
            (
                "max_frame_size = \"lots\"",
                "max_frame_size",
                "expected a size",
            ),
            ("max_frame_size = \"1MB\"", "max_frame_size", "KiB, MiB"),
            ("max_frame_size = -1", "max_frame_size", "negative"),
            (
                "max_frame_size = \"8GiB\"",
                "max_frame_size",
                "at most 4294967295",
            ),
            ("envelope_ttl = 30", "envelope_ttl", "needs a unit"),
            (
                "envelope_ttl = \"30 fortnights\"",
                "envelope_ttl",
                "unknown unit",
            ),
            (
                "envelope_ttl = \"99999999999999999d\"",
                "envelope_ttl",
                "out of range",
            ),
            (
                "fetch_page_size = 70000",
                "fetch_page_size",
                "at most 65535",
            ),
            ("fetch_page_size = 1.5", "fetch_page_size", "whole number"),
            ("log = \"loud\"", "log", "unknown log level"),
            ("listen = \"7447\"", "listen", "HOST:PORT"),
            ("listen = 7447", "listen", "expected a string"),
            ("store = \"postgres://db\"", "store", "unknown store"),
            ("store = \"sqlite:\"", "store", "needs the database file"),
            ("server_id = \"\"", "server_id", "empty"),
            ("server_id = true", "server_id", "true or false"),
            ("mailbox_limits = 5", "mailbox_limits", "expected a table"),
            (
                "[rate_limit]\nrequests_per_second = \"fast\"",
                "rate_limit.requests_per_second",
                "expected a number",
            ),
        ];
        for (text, key, needle) in cases {
            let e = from_toml(text).unwrap_err();
            let message = e.to_string();
            assert!(
                matches!(&e, SettingsError::InvalidValue { key: k, .. } if k == key),
                "{text}: {message}"
            );
            assert!(message.contains(&format!(": {key}: ")), "{text}: {message}");
            assert!(message.contains(needle), "{text}: {message}");
            assert!(message.starts_with("relay.toml:"), "{text}: {message}");
        }
        // The line of the value.
        let e = from_toml("\n\n[first_contact]\nburst = \"many\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("relay.toml:4: first_contact.burst: "),
            "{e}"
        );
        // Not TOML at all.
        let e = from_toml("listen = ").unwrap_err();
        assert!(matches!(e, SettingsError::Syntax { .. }), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn values_fine_alone_are_checked_together() {
        let invalid = |text: &str| {
            let settings = from_toml(text).unwrap();
            settings.validate().unwrap_err().to_string()
        };
        assert!(invalid("max_frame_size = 100").contains("max_frame_size must be at least 2055"));
        assert!(invalid("idle_timeout = \"0s\"").contains("idle_timeout must be positive"));
        assert!(
            invalid("[rate_limit]\nbyte_burst = 0")
                .contains("rate_limit.byte_burst must be positive")
        );
        assert!(invalid("[rate_limit]\nrequests_per_second = nan").contains("requests_per_second"));
        assert!(invalid("tls_cert = \"c.pem\"").contains("tls_cert and tls_key go together"));
        assert!(
            invalid("store = \"memory:\"\nmax_db_bytes = \"1GiB\"").contains("max_db_bytes limits")
        );
        assert!(
            invalid("max_frame_size = \"64MiB\"")
                .contains("unauthenticated_frame_budget must be at least max_frame_size")
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(
            &file,
            "server_id = \"from-file\"\nmax_frame_size = 4096\nmetrics_listen = \"127.0.0.1:9447\"\n\
             [first_contact]\nburst = 3\n",
        )
        .unwrap();
        let vars = env(&[
            ("SOTTO_RELAY_SERVER_ID", "from-env"),
            ("SOTTO_RELAY_FIRST_CONTACT_BURST", "9"),
            // Empty turns an optional setting off.
            ("SOTTO_RELAY_METRICS_LISTEN", ""),
            ("SOTTO_RELAY_ENVELOPE_TTL", "7d"),
            // Not the relay's: ignored.
            ("SOTTO_RELAY_CA", "/some/ca.pem"),
            ("SOTTO_RELAY_CONFIG", "/elsewhere.toml"),
            ("HOME", "/root"),
        ]);
        let s = RelaySettings::load(Some(&file), vars).unwrap();
        assert_eq!(s.server.server_id, "from-env");
        assert_eq!(s.server.first_contact.burst, 9);
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.server.envelope_ttl, Duration::from_secs(7 * 86_400));
        // What the environment does not name keeps the file's value.
        assert_eq!(s.server.max_frame_size, 4096);

        // An unknown variable is an error, with a suggestion.
        let e = RelaySettings::load(Some(&file), env(&[("SOTTO_RELAY_MAX_FRAME", "4096")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment: unknown setting `SOTTO_RELAY_MAX_FRAME` \
             (did you mean `SOTTO_RELAY_MAX_FRAME_SIZE`?)"
        );
        let e = RelaySettings::load(None, env(&[("SOTTO_RELAY_IDLE_TIMEOUT", "300")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable SOTTO_RELAY_IDLE_TIMEOUT: idle_timeout: "),
            "{e}"
        );
        let e =
            RelaySettings::load(Some(&dir.path().join("missing.toml")), Vec::new()).unwrap_err();
        assert!(matches!(e, SettingsError::Read { .. }), "{e}");
    }

    /// `text` with every commented-out setting (`# key = value`) put back.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The keys `text` sets, as `table.key`.
    fn keys_set(text: &str) -> Vec<String> {
        let mut table = String::new();
        let mut keys = Vec::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = format!("{name}.");
            } else if let Some((key, _)) = line.split_once(" = ")
                && !key.starts_with('#')
            {
                keys.push(format!("{table}{key}"));
            }
        }
        keys
    }

    #[test]
    fn the_example_file_is_valid_and_names_every_setting() {
        let example = include_str!("../../relay.example.toml");
        let settings = from_toml(example).unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.metrics_listen.as_deref(), Some("127.0.0.1:9447"));
        // With its commented-out defaults put back it is still valid, sets
        // every key, and changes nothing but what it set before.
        let full = uncommented(example);
        let mut set = keys_set(&full);
        set.sort();
        let mut all: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
        all.sort();
        assert_eq!(set, all);
        let mut expected = settings.clone();
        expected.max_db_bytes = Some(32 << 30);
        expected.blob_dir = Some("/var/lib/sotto-relay/blobs".into());
        expected.tls_cert = Some("/etc/sotto-relay/fullchain.pem".into());
        expected.tls_key = Some("/etc/sotto-relay/privkey.pem".into());
        assert_eq!(from_toml(&full).unwrap(), expected);
    }

    #[test]
    fn the_limits_table_of_the_docs_names_every_setting_and_variable() {
        let docs = include_str!("../../../../docs/relay.md");
        let section = docs
            .split("## 8. Limits and defaults")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap();
        for key in KEYS {
            assert!(section.contains(&format!("`{key}`")), "{key} is not in §8");
            assert!(
                section.contains(&format!("`{}`", env_var(key))),
                "{} is not in §8",
                env_var(key)
            );
        }
    }

    #[test]
    fn blobs_go_next_to_sqlite_in_memory_with_memory_and_redis_needs_a_directory() {
        let sqlite = from_toml("store = \"sqlite:/var/lib/r/relay.db\"").unwrap();
        assert_eq!(
            sqlite.blob_dir_in_effect(),
            Some(PathBuf::from("/var/lib/r/relay.db.blobs"))
        );
        let memory = from_toml("store = \"memory:\"").unwrap();
        assert_eq!(memory.blob_dir_in_effect(), None);
        memory.validate().unwrap();
        let redis = from_toml("store = \"redis://cache:6379\"").unwrap();
        let e = redis.validate().unwrap_err().to_string();
        assert!(e.contains("blob_dir") && e.contains("shared"), "{e}");
        let redis =
            from_toml("store = \"redis://cache:6379\"\nblob_dir = \"/mnt/nfs/blobs\"").unwrap();
        redis.validate().unwrap();
        assert_eq!(
            redis.blob_dir_in_effect(),
            Some(PathBuf::from("/mnt/nfs/blobs"))
        );
        let limits = from_toml(
            "max_blob_size = \"2GiB\"\nmax_blob_ttl = \"7d\"\n\
             max_blob_bytes_per_mailbox = \"3GiB\"\nmax_total_blob_bytes = \"1TiB\"",
        )
        .unwrap();
        assert_eq!(limits.server.max_blob_size, 2 << 30);
        assert_eq!(limits.server.max_blob_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(limits.server.max_blob_bytes_per_mailbox, 3 << 30);
        assert_eq!(limits.server.max_total_blob_bytes, 1 << 40);
    }

    #[test]
    fn store_specs() {
        assert_eq!("memory:".parse::<StoreSpec>(), Ok(StoreSpec::Memory));
        assert_eq!(
            "sqlite:relay.db".parse::<StoreSpec>(),
            Ok(StoreSpec::Sqlite("relay.db".into()))
        );
        let redis: StoreSpec = "redis://:hunter2@cache.internal:6379/0".parse().unwrap();
        assert_eq!(redis.to_string(), "redis://***@cache.internal:6379/0");
        assert!(!format!("{redis:?}").contains("hunter2"));
        assert_eq!(
            "rediss://cache:6380"
                .parse::<StoreSpec>()
                .unwrap()
                .to_string(),
            "rediss://cache:6380"
        );
        let cluster: StoreSpec = "redis+cluster://:hunter2@10.0.0.1:6379,10.0.0.2:6379"
            .parse()
            .unwrap();
        assert_eq!(
            cluster.to_string(),
            "redis+cluster://***@10.0.0.1:6379,10.0.0.2:6379"
        );
        for bad in [
            "memory",
            "redis://",
            "relay.db",
            "",
            "sqlite:",
            "redis+cluster://",
            "redis+cluster://,a:1",
        ] {
            assert!(bad.parse::<StoreSpec>().is_err(), "{bad}");
        }
        let e = "mysql://user:pw@db/x".parse::<StoreSpec>().unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size(" 16 GiB "), Ok(16 << 30));
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size("512B"), Ok(512));
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("1mb").is_err());
        assert!(parse_size("99999999TiB").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(
            duration_value(Duration::from_millis(1500)),
            toml::Value::String("1500ms".into())
        );
        assert_eq!(
            duration_value(Duration::ZERO),
            toml::Value::String("0ms".into())
        );
        assert_eq!(size_value(0), toml::Value::Integer(0));
        assert_eq!(size_value(1000), toml::Value::Integer(1000));
        assert_eq!(
            size_value(u64::MAX),
            toml::Value::String(u64::MAX.to_string())
        );
    }
}
