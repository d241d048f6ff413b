//! Data sets: the tests' seed, and large ones for benchmarks, written straight into a store
//! in one transaction (a million bindings would be a 100 MB seed document).

use std::path::Path;

use exbind_api::BindingStatus;

use crate::domain::ids::IdSecret;
use crate::domain::model::{User, UserStatus};
use crate::seed;
use crate::store::postgres::{PgOptions, PgStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, UserRow};

/// Two tenants and a set of apps, one per situation the tests need.
///
/// acme: `boss` (super admin), `alice` `bob` `carol` `dave` `erin` (plain users), `gone`
/// (dismissed super admin), `left` (dismissed); admin accounts `exadmin@acme.example`,
/// `exadmin2@acme.example`, `broken@acme.example` (failed) and the docs' example admin.
/// globex: `gboss` (super admin), `gina`; admin account `exadmin@globex.example`.
///
/// Apps: `cli_acme` / `cli_acme2` (every scope, developer `acme-dev`), `cli_other` (every
/// scope, developer `other-dev`), `cli_noemail` (the calendar scopes only), `cli_readonly`
/// (only `calendar:exchange.bindings:read`), `cli_nobot` (every scope, no bot), `cli_globex`
/// (every scope, in globex), `cli_store` (store app, calendar scopes, in both tenants).
pub const FULL_SEED: &str = include_str!("full_seed.toml");

/// What a fixture holds: one tenant, one app with every scope, one super admin, `bound`
/// users each with a binding (status `done`) and `spare` users without one.
pub struct Fixture {
    pub bound: usize,
    pub spare: usize,
}

impl Fixture {
    pub const TENANT: &'static str = "bench";
    pub const APP_ID: &'static str = "cli_bench";
    pub const APP_SECRET: &'static str = "bench-secret";
    pub const ADMIN_USER: &'static str = "admin";
    pub const EXCHANGE_ADMIN: &'static str = "exadmin@bench.example";

    pub fn bound_user(i: usize) -> String {
        format!("user{i}")
    }
    pub fn bound_exchange(i: usize) -> String {
        format!("user{i}@bench.example")
    }
    pub fn bound_id(i: usize) -> String {
        exbind_api::id::encode(Self::EXCHANGE_ADMIN, &Self::bound_exchange(i))
    }
    pub fn spare_user(i: usize) -> String {
        format!("spare{i}")
    }
    pub fn spare_exchange(i: usize) -> String {
        format!("spare{i}@bench.example")
    }

    fn seed() -> String {
        format!(
            r#"
[[tenants]]
tenant_key = "{t}"
[[tenants.users]]
user_id = "{u}"
super_admin = true
[[tenants.exchange_admins]]
account = "{a}"
[[apps]]
app_id = "{id}"
app_secret = "{secret}"
tenants = ["{t}"]
scopes = ["calendar:calendar", "calendar:calendar:readonly", "calendar:exchange.bindings:create",
          "calendar:exchange.bindings:read", "calendar:exchange.bindings:delete",
          "contact:user.email:readonly", "contact:user.employee_id:readonly"]
"#,
            t = Self::TENANT,
            u = Self::ADMIN_USER,
            a = Self::EXCHANGE_ADMIN,
            id = Self::APP_ID,
            secret = Self::APP_SECRET,
        )
    }

    /// Writes the fixture into the store in `data_dir` (which no server may hold); its
    /// bindings are `done`.
    pub async fn build(data_dir: &Path, bound: usize, spare: usize) -> Result<Fixture, String> {
        Self::build_at(data_dir, bound, spare, BindingStatus::Done, None).await
    }

    /// The same with bindings that are `doing`, their next sync step due at `next_at` (ms).
    pub async fn build_syncing(
        data_dir: &Path,
        bound: usize,
        next_at: i64,
    ) -> Result<Fixture, String> {
        Self::build_at(data_dir, bound, 0, BindingStatus::Doing, Some(next_at)).await
    }

    async fn build_at(
        data_dir: &Path,
        bound: usize,
        spare: usize,
        status: BindingStatus,
        next_at: Option<i64>,
    ) -> Result<Fixture, String> {
        let store = SqliteStore::open(data_dir).map_err(|e| e.to_string())?;
        let (users, bindings) = Self::rows(&store, bound, spare).await?;
        store
            .load_fixture(Self::TENANT, users, bindings, status, next_at)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Fixture { bound, spare })
    }

    /// The same fixture (bindings `done`) in a PostgreSQL schema, as `--database-url` and
    /// `--database-schema` name it.
    pub async fn build_pg(
        url: &str,
        schema: &str,
        bound: usize,
        spare: usize,
    ) -> Result<Fixture, String> {
        let store = PgStore::open(&PgOptions {
            url: url.into(),
            schema: schema.into(),
            pool_size: 2,
            op_timeout: std::time::Duration::from_secs(600),
        })
        .await
        .map_err(|e| e.to_string())?;
        let (users, bindings) = Self::rows(&store, bound, spare).await?;
        store
            .load_fixture(Self::TENANT, users, bindings, BindingStatus::Done, None)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Fixture { bound, spare })
    }

    /// Loads the seed into `store` and makes the fixture's users and bindings for it.
    #[allow(clippy::type_complexity)]
    async fn rows(
        store: &dyn Store,
        bound: usize,
        spare: usize,
    ) -> Result<(Vec<UserRow>, Vec<(String, String, String)>), String> {
        let secret: [u8; 32] = rand::random();
        let secret = store
            .meta_init("id_secret", secret.to_vec())
            .await
            .map_err(|e| e.to_string())?;
        let ids = IdSecret::new(&secret);
        seed::load(&Self::seed(), seed::Format::Toml, store, &ids)
            .await
            .map_err(|e| e.to_string())?;
        let user = |user_id: String| UserRow {
            key: ids.user_key(Self::TENANT, &user_id),
            user: User {
                tenant_key: Self::TENANT.into(),
                name: user_id.clone(),
                user_id,
                email: None,
                status: UserStatus::Active,
                super_admin: false,
                profile: Default::default(),
            },
        };
        let users: Vec<UserRow> = (0..bound)
            .map(|i| user(Self::bound_user(i)))
            .chain((0..spare).map(|i| user(Self::spare_user(i))))
            .collect();
        let bindings: Vec<(String, String, String)> = (0..bound)
            .map(|i| {
                (
                    Self::EXCHANGE_ADMIN.to_string(),
                    Self::bound_exchange(i),
                    Self::bound_user(i),
                )
            })
            .collect();
        Ok((users, bindings))
    }
}
