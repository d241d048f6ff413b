//! `exbind serve` configuration: every field a flag and an `EXBIND_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use crate::domain::sync::{parse_duration_ms, Schedule};

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    Schedule::parse(s)
}

/// A timeout: `10s`, `500ms`, `1m`, or a bare number of seconds; more than zero.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration_ms(s.trim()) {
        Some(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        _ => Err(format!(
            "expected a duration above zero like 10s or 500ms, got {s:?}"
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "EXBIND_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: String,

    /// Directory of the embedded store, created if missing; `:memory:` keeps everything in
    /// memory (nothing on disk, lost at exit).
    #[arg(long, env = "EXBIND_DATA_DIR", default_value = "./exbind-data")]
    pub data_dir: PathBuf,

    /// Seed file (TOML, or JSON when it ends in .json) upserted at start.
    #[arg(long, env = "EXBIND_SEED")]
    pub seed: Option<PathBuf>,

    /// Token for the control plane; generated and kept in the store when not given.
    #[arg(long, env = "EXBIND_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, env = "EXBIND_TOKEN_TTL", default_value_t = 7200, value_parser = clap::value_parser!(i64).range(1..))]
    pub token_ttl: i64,

    /// Lifetime of OAuth authorization codes, in seconds.
    #[arg(long, env = "EXBIND_OAUTH_CODE_TTL", default_value_t = 300, value_parser = clap::value_parser!(i64).range(1..=315_360_000))]
    pub oauth_code_ttl: i64,

    /// Lifetime of refresh tokens, in seconds, from each one's issue.
    #[arg(long, env = "EXBIND_REFRESH_TOKEN_TTL", default_value_t = 604_800, value_parser = clap::value_parser!(i64).range(1..=315_360_000))]
    pub refresh_token_ttl: i64,

    /// Gateway quota and calendar budgets on or off (190010 contention always applies).
    #[arg(long, env = "EXBIND_RATE_LIMITS", value_enum, default_value = "on")]
    pub rate_limits: OnOff,

    /// Gateway quota per (method, app, tenant) per clock-aligned second.
    #[arg(long, env = "EXBIND_QUOTA_PER_SECOND", default_value_t = 50)]
    pub quota_per_second: u32,

    /// Gateway quota per (method, app, tenant) per clock-aligned minute.
    #[arg(long, env = "EXBIND_QUOTA_PER_MINUTE", default_value_t = 1000)]
    pub quota_per_minute: u32,

    /// Calendar budget per (app, tenant) per second over all binding methods (190005).
    #[arg(long, env = "EXBIND_APP_BUDGET_PER_SECOND", default_value_t = 200)]
    pub app_budget_per_second: u32,

    /// Budget per method per second over all apps and tenants (190004).
    #[arg(long, env = "EXBIND_METHOD_BUDGET_PER_SECOND", default_value_t = 10000)]
    pub method_budget_per_second: u32,

    /// Durations of the sync stages: to `cal_done`, to `timespan_done`, to `done`
    /// (units ms, s, m).
    #[arg(long, env = "EXBIND_SYNC_STAGE_DURATIONS", default_value = "5s,10s,30s", value_parser = parse_schedule)]
    pub sync_stage_durations: Schedule,

    /// Requests the journal keeps (0 = off).
    #[arg(long, env = "EXBIND_JOURNAL_SIZE", default_value_t = 10_000)]
    pub journal_size: usize,

    /// The web console at `/_exbind/console/`.
    #[arg(long, env = "EXBIND_CONSOLE", value_enum, default_value = "on")]
    pub console: OnOff,
    /// Time a request has, from its head read to its answer (a body that has not arrived
    /// by then is answered 400 190002; anything else 500 190003).
    #[arg(long, env = "EXBIND_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub request_timeout: Duration,

    /// Time a client has to send a whole request head, from the connection's start or the
    /// head's first byte; then the connection is closed.
    #[arg(long, env = "EXBIND_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_read_timeout: Duration,

    /// Time a kept-alive connection may wait for its next request; then it is closed.
    #[arg(long, env = "EXBIND_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// Open connections served at once; more wait in the listen backlog until one closes.
    #[arg(long, env = "EXBIND_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// How often store apps get a new `app_ticket` pushed to their `event_url`.
    #[arg(long, env = "EXBIND_APP_TICKET_INTERVAL", default_value = "3600", value_parser = parse_timeout)]
    pub app_ticket_interval: Duration,

    /// PostgreSQL store shared by several servers (`postgres://USER@HOST:5432/DB`), in
    /// place of `--data-dir`.
    #[arg(
        long,
        env = "EXBIND_DATABASE_URL",
        hide_env_values = true,
        conflicts_with = "data_dir"
    )]
    pub database_url: Option<String>,

    /// The PostgreSQL schema that holds exbind's tables (created if missing).
    #[arg(long, env = "EXBIND_DATABASE_SCHEMA", default_value = "exbind")]
    pub database_schema: String,

    /// PostgreSQL connections this server keeps at most.
    #[arg(long, env = "EXBIND_DATABASE_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub database_pool_size: u32,

    /// Redis for the counters shared by several servers (quota windows, budgets, fault
    /// `times`); without it they live in PostgreSQL.
    #[arg(long, env = "EXBIND_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key, so several clusters can share one Redis.
    #[arg(long, env = "EXBIND_REDIS_PREFIX", default_value = "exbind:")]
    pub redis_prefix: String,
}
