//! `exbind serve` configuration: every field a flag and an `EXBIND_*` environment variable.

use std::path::PathBuf;

use crate::domain::sync::Schedule;

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    Schedule::parse(s)
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

    /// PostgreSQL store shared by several servers (not supported yet).
    #[arg(long, env = "EXBIND_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Redis for shared quota counters (not supported yet).
    #[arg(long, env = "EXBIND_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}
