//! One suite, every store: the same test code runs against SQLite (in memory) and
//! PostgreSQL (a fresh schema per test, dropped after). PostgreSQL is reached at
//! `EXBIND_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use exbind_api::accounts::fold;
use exbind_api::BindingStatus;

use super::postgres::{PgOptions, PgStore};
use super::sqlite::SqliteStore;
use super::*;
use crate::domain::sync::Scenario;

pub fn test_database_url() -> String {
    std::env::var("EXBIND_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of its own for one test, under `EXBIND_TEST_PREFIX` (default `exbindtest`);
/// dropped by `drop_schema`.
pub fn fresh_schema(what: &str) -> String {
    use rand::Rng;
    let prefix = std::env::var("EXBIND_TEST_PREFIX").unwrap_or_else(|_| "exbindtest".into());
    format!("{prefix}_{what}_{:08x}", rand::rng().random::<u32>())
}

pub async fn drop_schema(schema: &str) {
    let (client, conn) = tokio_postgres::connect(&test_database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to drop the test schema");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .expect("drop the test schema");
}

pub fn pg_options(schema: &str) -> PgOptions {
    PgOptions {
        url: test_database_url(),
        schema: schema.into(),
        pool_size: 8,
        op_timeout: Duration::from_secs(10),
    }
}

/// Runs `test` on each store.
async fn each_store<F, Fut>(name: &str, test: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let sqlite = SqliteStore::open(std::path::Path::new(super::sqlite::MEMORY)).unwrap();
    test(Arc::new(sqlite)).await;
    let schema = fresh_schema(name);
    let pg = PgStore::open(&pg_options(&schema)).await.unwrap();
    test(Arc::new(pg)).await;
    drop_schema(&schema).await;
}

fn plan() -> SeedPlan {
    let user = |id: &str, n: u8| UserRow {
        user: User {
            tenant_key: "t1".into(),
            user_id: id.into(),
            name: id.to_uppercase(),
            email: None,
            status: UserStatus::Active,
            super_admin: false,
            profile: Default::default(),
        },
        key: [n; 12],
    };
    SeedPlan {
        tenants: vec![
            Tenant {
                tenant_key: "t1".into(),
                name: "One".into(),
                unit: "cn".into(),
            },
            Tenant {
                tenant_key: "t2".into(),
                name: "Two".into(),
                unit: "cn".into(),
            },
        ],
        users: vec![user("bob", 2), user("alice", 1), user("Zed", 3)],
        admins: vec![AdminAccount {
            account: "Admin@X.example".into(),
            tenant_key: "t1".into(),
            state: AdminState::Ok,
        }],
        scenarios: vec![],
        apps: vec![App {
            app_id: "cli_a".into(),
            app_secret: "s".into(),
            kind: AppKind::Custom,
            developer: "d".into(),
            bot: true,
            unit: "cn".into(),
            scopes: vec!["calendar:calendar".into()],
            tenants: vec!["t1".into()],
            login: Default::default(),
            event_url: None,
            verification_token: None,
            encrypt_key: None,
        }],
    }
}

fn new_binding(exchange: &str, user_id: &str, now: i64) -> NewBinding {
    NewBinding {
        admin_account: "admin@x.example".into(),
        exchange_account: exchange.into(),
        tenant_key: "t1".into(),
        user_id: user_id.into(),
        scenario: Scenario::Normal,
        next_at: Some(now + 5000),
        now,
    }
}

#[tokio::test]
async fn seed_upserts_and_reads() {
    each_store("seed", |s| async move {
        assert_eq!(s.meta_init("k", b"one".to_vec()).await.unwrap(), b"one");
        assert_eq!(s.meta_init("k", b"two".to_vec()).await.unwrap(), b"one");
        let n = s.apply_seed(plan()).await.unwrap();
        assert_eq!((n.added, n.updated), (7, 0));
        let n = s.apply_seed(plan()).await.unwrap();
        assert_eq!(
            (n.added, n.updated),
            (0, 0),
            "the same seed again changes nothing"
        );
        let mut p = plan();
        p.tenants[0].name = "Uno".into();
        p.apps[0].scopes.push("x".into());
        let n = s.apply_seed(p).await.unwrap();
        assert_eq!((n.added, n.updated), (0, 2));
        assert_eq!(s.tenant("t1").await.unwrap().unwrap().name, "Uno");
        let ids: Vec<String> = s
            .users("t1", "", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.user_id)
            .collect();
        assert_eq!(ids, ["Zed", "alice", "bob"], "byte order, as SQLite sorts");
        assert_eq!(s.users("t1", "alice", 10).await.unwrap().len(), 1);
        assert_eq!(s.user_count("t1").await.unwrap(), 3);
        assert_eq!(
            s.user_by_key(&[1; 12]).await.unwrap().unwrap().user_id,
            "alice"
        );
        let admin = s.admin_account("admin@x.example").await.unwrap().unwrap();
        assert_eq!(admin.account, "Admin@X.example");
        assert_eq!(s.app("cli_a").await.unwrap().unwrap().scopes.len(), 2);
        let patched = s
            .patch_user(
                "t1",
                "bob",
                UserPatch {
                    status: Some(UserStatus::Dismissed),
                    super_admin: None,
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(patched.status, UserStatus::Dismissed);
        assert!(s
            .patch_user("t1", "nobody", UserPatch::default())
            .await
            .unwrap()
            .is_none());
        let app = s
            .patch_app(
                "cli_a",
                AppPatch {
                    bot: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(!app.bot && app.scopes.len() == 2);
    })
    .await;
}

#[tokio::test]
async fn bindings_are_one_to_one() {
    each_store("bind", |s| async move {
        s.apply_seed(plan()).await.unwrap();
        let now = 1_000_000;
        let CreateOutcome::Created(b) = s
            .create_binding(new_binding("Ex@X.example", "alice", now))
            .await
            .unwrap()
        else {
            panic!("created")
        };
        assert_eq!(b.status, BindingStatus::Doing);
        let again = s
            .create_binding(new_binding("ex@x.EXAMPLE", "alice", now + 1))
            .await
            .unwrap();
        assert!(matches!(again, CreateOutcome::Existing(e) if e.seq == b.seq && e.exchange_account == "Ex@X.example"));
        assert!(matches!(
            s.create_binding(new_binding("ex@x.example", "bob", now))
                .await
                .unwrap(),
            CreateOutcome::ExchangeTaken
        ));
        assert!(matches!(
            s.create_binding(new_binding("other@x.example", "alice", now))
                .await
                .unwrap(),
            CreateOutcome::UserTaken
        ));
        let view = s.binding_view("ex@x.example").await.unwrap().unwrap();
        assert_eq!(view.user_id, "alice");
        assert_eq!(s.list_bindings("t1", 0, 10).await.unwrap().len(), 1);
        assert_eq!(s.scan_bindings(b.seq, 10).await.unwrap().len(), 0);
        assert_eq!(
            s.binding_counts().await.unwrap(),
            vec![(BindingStatus::Doing, 1)]
        );
        // Deletes: only the owning tenant and admin account, once.
        assert!(s
            .delete_binding("t2", "admin@x.example", "ex@x.example")
            .await
            .unwrap()
            .is_none());
        assert!(s
            .delete_binding("t1", "other@x.example", "ex@x.example")
            .await
            .unwrap()
            .is_none());
        assert!(s
            .delete_binding("t1", "admin@x.example", "ex@x.example")
            .await
            .unwrap()
            .is_some());
        assert!(s
            .delete_binding("t1", "admin@x.example", "ex@x.example")
            .await
            .unwrap()
            .is_none());
        assert!(s.binding("ex@x.example").await.unwrap().is_none());
        // Free again, for anyone.
        assert!(matches!(
            s.create_binding(new_binding("ex@x.example", "bob", now))
                .await
                .unwrap(),
            CreateOutcome::Created(_)
        ));
    })
    .await;
}

#[tokio::test]
async fn concurrent_creates_make_one_binding() {
    each_store("race", |s| async move {
        s.apply_seed(plan()).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                let user = ["alice", "bob", "Zed"][i % 3];
                tokio::spawn(async move {
                    s.create_binding(new_binding("race@x.example", user, 5))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            if let CreateOutcome::Created(_) = t.await.unwrap() {
                created += 1;
            }
        }
        assert_eq!(created, 1);
        assert_eq!(s.scan_bindings(0, 10).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn sync_steps_apply_once() {
    each_store("steps", |s| async move {
        s.apply_seed(plan()).await.unwrap();
        let now = 10_000;
        let CreateOutcome::Created(b) = s
            .create_binding(new_binding("s@x.example", "alice", now))
            .await
            .unwrap()
        else {
            panic!("created")
        };
        assert_eq!(s.next_deadline().await.unwrap(), Some(now + 5000));
        assert!(s.due_bindings(now + 4999, 10).await.unwrap().is_empty());
        assert_eq!(s.due_bindings(now + 5000, 10).await.unwrap().len(), 1);
        let change = StatusChange {
            seq: b.seq,
            exchange_folded: fold(&b.exchange_account),
            from: BindingStatus::Doing,
            status: BindingStatus::CalDone,
            reason: None,
            next_at: None,
            steps: vec![Step {
                status: BindingStatus::CalDone,
                at: now + 5000,
            }],
        };
        let applied = s
            .change_status(vec![change.clone(), change], now + 5001)
            .await
            .unwrap();
        assert_eq!(applied, [true, false], "the second finds it moved on");
        let h = s.with_histories(&[999, b.seq]).await.unwrap();
        assert_eq!(h.len(), 1, "a binding that is not there drops out");
        assert_eq!(h[0].0.status, BindingStatus::CalDone);
        assert_eq!(
            h[0].1.iter().map(|st| st.status).collect::<Vec<_>>(),
            [BindingStatus::Doing, BindingStatus::CalDone]
        );
        assert_eq!(s.next_deadline().await.unwrap(), None);
        // A failed admin account moves what still syncs to err.
        let a = s
            .set_admin_state("admin@x.example", AdminState::Failed, now + 6000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.state, AdminState::Failed);
        let b2 = s.binding("s@x.example").await.unwrap().unwrap();
        assert_eq!(b2.status, BindingStatus::Err);
        assert_eq!(b2.reason.as_deref(), Some("admin account binding failed"));
        assert!(s
            .set_admin_state("none@x.example", AdminState::Ok, 0)
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

#[tokio::test]
async fn tokens_scenarios_and_reset() {
    each_store("tokens", |s| async move {
        s.apply_seed(plan()).await.unwrap();
        let tok = |t: &str, exp| AppToken {
            token: t.into(),
            app_id: "cli_a".into(),
            tenant_key: None,
            expires_at: exp,
        };
        let min_left = 1_800_000;
        let now = 100_000_000;
        let first = s
            .issue_app_token(tok("t-1", now + 7_200_000), now, min_left)
            .await
            .unwrap();
        assert_eq!(first.token, "t-1");
        let reused = s
            .issue_app_token(tok("t-2", now + 7_200_000), now + 1000, min_left)
            .await
            .unwrap();
        assert_eq!(reused.token, "t-1");
        let later = now + 7_200_000 - min_left + 1;
        let fresh = s
            .issue_app_token(tok("t-3", later + 7_200_000), later, min_left)
            .await
            .unwrap();
        assert_eq!(fresh.token, "t-3");

        let ut = UserToken {
            app_id: "cli_a".into(),
            tenant_key: "t1".into(),
            user_id: "alice".into(),
            scopes: vec!["calendar:calendar".into()],
            expires_at: now,
            revoked: false,
            grant_id: None,
        };
        s.insert_user_token("u-abc", ut.clone()).await.unwrap();
        assert_eq!(*s.user_token("u-abc").await.unwrap().unwrap(), ut);
        assert!(s.revoke_user_token("u-abc").await.unwrap());
        assert!(s.user_token("u-abc").await.unwrap().unwrap().revoked);
        assert!(!s.revoke_user_token("u-none").await.unwrap());

        let sc = ExchangeScenario {
            account: "Slow@X.example".into(),
            tenant_key: "t1".into(),
            scenario: "stall".into(),
            stage: Some("doing".into()),
            reason: None,
        };
        s.put_scenario(sc.clone()).await.unwrap();
        s.put_scenario(sc.clone()).await.unwrap();
        assert_eq!(s.scenario("slow@x.example").await.unwrap(), Some(sc));
        assert_eq!(s.scenarios("t1").await.unwrap().len(), 1);
        assert!(!s.delete_scenario("t2", "slow@x.example").await.unwrap());
        assert!(s.delete_scenario("t1", "slow@x.example").await.unwrap());

        for (i, u) in ["alice", "bob"].iter().enumerate() {
            s.create_binding(new_binding(&format!("{u}@x.example"), u, i as i64))
                .await
                .unwrap();
        }
        assert_eq!(s.delete_tenant_bindings("t1").await.unwrap(), 2);
        s.reset().await.unwrap();
        assert!(s.tenants().await.unwrap().is_empty());
        assert!(s.apps().await.unwrap().is_empty());
        assert!(s.user_token("u-abc").await.unwrap().is_none());
        assert_eq!(
            s.meta_init("k", b"x".to_vec()).await.unwrap(),
            b"x",
            "reset keeps meta, and this key was never set"
        );
        s.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn newer_schema_is_refused_and_migration_is_idempotent() {
    let schema = fresh_schema("version");
    PgStore::open(&pg_options(&schema)).await.unwrap();
    // Servers starting together take turns; a second open finds the schema current.
    let o = pg_options(&schema);
    let (a, b) = tokio::join!(PgStore::open(&o), PgStore::open(&o));
    a.unwrap();
    b.unwrap();
    let (client, conn) = tokio_postgres::connect(&test_database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.schema_version (version) VALUES (999)"
        ))
        .await
        .unwrap();
    let err = PgStore::open(&pg_options(&schema)).await.err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "database schema {schema} has version 999, newer than this exbind knows ({})",
            super::postgres::VERSION
        )
    );
    drop_schema(&schema).await;
}

#[tokio::test]
async fn unreachable_database_fails_fast() {
    let mut o = pg_options("unreachable");
    o.url = "postgres://postgres@127.0.0.1:1/test".into();
    o.op_timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let err = PgStore::open(&o).await.err().unwrap().to_string();
    assert!(
        err.starts_with("cannot reach PostgreSQL at 127.0.0.1:1: "),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn console_sign_outs_outlive_reset() {
    each_store("console", |s| async move {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        s.revoke_console_session(a, 1000, 0).await.unwrap();
        s.revoke_console_session(a, 2000, 0).await.unwrap();
        assert!(s.console_session_revoked(a).await.unwrap());
        assert!(!s.console_session_revoked(b).await.unwrap());
        s.reset().await.unwrap();
        assert!(
            s.console_session_revoked(a).await.unwrap(),
            "kept through reset"
        );
        // Lapsed records are forgotten at the next sign-out.
        s.revoke_console_session(b, 5000, 3000).await.unwrap();
        assert!(!s.console_session_revoked(a).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn oauth_codes_and_refresh_tokens_are_spent_once() {
    each_store("oauth", |s| async move {
        s.apply_seed(plan()).await.unwrap();
        let grant = Grant {
            id: "g1".into(),
            app_id: "cli_a".into(),
            tenant_key: "t1".into(),
            user_id: "alice".into(),
            scopes: vec!["calendar:calendar".into()],
        };
        let code = OAuthCode {
            grant: grant.clone(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            challenge: Some(Challenge {
                method: "S256".into(),
                value: "abc".into(),
            }),
            expires_at: 1000,
            used: false,
        };
        s.insert_oauth_code("code-1", code.clone(), 0)
            .await
            .unwrap();
        assert_eq!(s.oauth_code("code-1").await.unwrap(), Some(code));
        let issued = |n: u8| Issued {
            access_token: format!("u-{n}"),
            access: UserToken {
                app_id: "cli_a".into(),
                tenant_key: "t1".into(),
                user_id: "alice".into(),
                scopes: grant.scopes.clone(),
                expires_at: 5000,
                revoked: false,
                grant_id: Some("g1".into()),
            },
            refresh: Some((
                format!("r-{n}"),
                RefreshToken {
                    grant: grant.clone(),
                    expires_at: 9000,
                    used: false,
                    revoked: false,
                },
            )),
        };
        assert!(s
            .redeem(Spent::Code("code-1".into()), issued(1))
            .await
            .unwrap());
        assert!(
            !s.redeem(Spent::Code("code-1".into()), issued(2))
                .await
                .unwrap(),
            "a code is spent once"
        );
        assert!(s.user_token("u-2").await.unwrap().is_none(), "nothing kept");
        assert!(s.oauth_code("code-1").await.unwrap().unwrap().used);
        assert!(s
            .redeem(Spent::RefreshToken("r-1".into()), issued(3))
            .await
            .unwrap());
        assert!(s.refresh_token("r-1").await.unwrap().unwrap().used);
        s.revoke_grant("g1").await.unwrap();
        assert!(s.user_token("u-3").await.unwrap().unwrap().revoked);
        assert!(s.refresh_token("r-3").await.unwrap().unwrap().revoked);
        assert!(!s
            .redeem(Spent::RefreshToken("r-3".into()), issued(4))
            .await
            .unwrap());
        // Deleting a user revokes its tokens.
        s.insert_user_token(
            "u-bob",
            UserToken {
                user_id: "bob".into(),
                grant_id: None,
                ..issued(5).access
            },
        )
        .await
        .unwrap();
        assert!(s.delete_user("t1", "bob").await.unwrap());
        assert!(!s.delete_user("t1", "bob").await.unwrap());
        assert!(s.user("t1", "bob").await.unwrap().is_none());
        assert!(s.user_token("u-bob").await.unwrap().unwrap().revoked);
        let t = AppToken {
            token: "t-x".into(),
            app_id: "cli_a".into(),
            tenant_key: Some("t1".into()),
            expires_at: 10,
        };
        s.issue_app_token(t.clone(), 0, 1).await.unwrap();
        assert_eq!(s.app_token("t-x").await.unwrap(), Some(t));
        // A store app's tickets: only the latest two are valid.
        for (i, ticket) in ["k1", "k2", "k3"].into_iter().enumerate() {
            s.add_app_ticket("cli_a", ticket, i as i64).await.unwrap();
        }
        for (ticket, valid) in [("k1", false), ("k2", true), ("k3", true)] {
            assert_eq!(
                s.app_ticket_valid("cli_a", ticket).await.unwrap(),
                valid,
                "{ticket}"
            );
        }
    })
    .await;
}

/// Shared counters: the same test on Redis and on PostgreSQL.
#[tokio::test]
async fn shared_counters_check_and_count_atomically() {
    use crate::limits::{SharedCounters, Window};
    let schema = fresh_schema("counters");
    let pg = PgStore::open(&pg_options(&schema)).await.unwrap();
    let redis_url =
        std::env::var("EXBIND_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let redis = super::redis::RedisCounters::open(
        &redis_url,
        &format!("{schema}:"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let backends: [Arc<dyn SharedCounters>; 2] = [
        Arc::new(super::shared::PgCounters(pg.db())),
        Arc::new(redis),
    ];
    const NOW: i64 = 1_000_000;
    let now = NOW;
    let w = |key: &str, limit| Window {
        key: key.into(),
        limit,
        ends_at: NOW + 1000,
    };
    for c in backends {
        let both = [w("b", 3), w("a", 2)];
        assert_eq!(c.take(&both, now).await.unwrap(), None);
        assert_eq!(c.take(&both, now).await.unwrap(), None);
        assert_eq!(c.take(&both, now).await.unwrap(), Some(1), "a is full");
        // The rejection counted nothing: b has one place left.
        assert_eq!(c.take(&[w("b", 3)], now).await.unwrap(), None);
        assert_eq!(
            c.take(&both, now).await.unwrap(),
            Some(0),
            "b is full first"
        );
        // Concurrent takes never admit more than the limit.
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.take(&[w("c", 7)], now).await.unwrap() })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap().is_none());
        }
        assert_eq!(admitted, 7);
        c.clear().await.unwrap();
        assert_eq!(c.take(&both, now).await.unwrap(), None);
        c.clear().await.unwrap();
    }
    drop_schema(&schema).await;
}
