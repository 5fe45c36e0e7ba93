//! PostgreSQL backend (issue 17): schema versions, `migrate`, backend selection, and that a
//! password in the URL is never printed. The conformance suite itself runs on PostgreSQL in
//! `store.rs` (`postgres_backend`). Cases that need a server return after saying loudly that
//! they were skipped when `ROUNDS_TEST_POSTGRES_URL` is unset.

use std::path::Path;
use std::process::{Command, Output};

use rounds_collector::config::{Overrides, parse, validate};
use rounds_collector::store::postgres::{self, PgStore};
use rounds_collector::store::{DbErrorKind, Migrated, Scope, Store};

use crate::support::enroll;
use crate::support::pg_schema;

fn cli(data_dir: &Path, database_url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rounds-collector"));
    cmd.arg("--data-dir").arg(data_dir).args(args);
    match database_url {
        Some(url) => cmd.env("ROUNDS_DATABASE_URL", url),
        None => cmd.env_remove("ROUNDS_DATABASE_URL"),
    };
    cmd.output().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

async fn sql(url: &str, statements: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(statements).await.unwrap();
    drop(client);
    let _ = task.await;
}

#[tokio::test]
async fn postgres_migrates_once_keeps_its_data_and_refuses_a_newer_schema() {
    let Some(url) = pg_schema().await else {
        return;
    };
    let known = postgres::schema_version();
    assert_eq!(
        known,
        rounds_collector::store::sqlite::schema_version(),
        "the two backends' migrations mirror each other"
    );
    let (store, migrated) = PgStore::open_migrated(&url, 2).await.unwrap();
    assert_eq!(migrated, Migrated { from: 0, to: known });
    assert_eq!(store.schema_version().await.unwrap() as usize, known);
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(store);
    enroll(store.as_ref(), "P", "S", "a1").await;
    drop(store);

    let (again, migrated) = PgStore::open_migrated(&url, 2).await.unwrap();
    assert_eq!(
        migrated,
        Migrated { from: known, to: known },
        "nothing to apply the second time"
    );
    let admin = Scope {
        role: rounds_collector::store::Role::Admin,
        practice_id: None,
    };
    assert_eq!(again.agents(&admin).await.unwrap().len(), 1, "data kept across opens");
    drop(again);

    // A collector of a newer build migrated this database further.
    sql(
        &url,
        &format!(
            "INSERT INTO schema_version (version, name) VALUES ({}, '9999_future')",
            known + 1
        ),
    )
    .await;
    let err = PgStore::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), Some(DbErrorKind::Schema), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "schema version {}, newer than this collector ({known})",
            known + 1
        )),
        "{msg}"
    );
}

#[test]
fn migrate_on_sqlite_prints_the_versions_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let known = rounds_collector::store::sqlite::schema_version();
    let out = cli(dir.path(), None, &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("SQLite "), "{stdout}");
    assert!(
        stdout.contains(&format!("schema migrated from version 0 to {known}")),
        "{stdout}"
    );
    let out = cli(dir.path(), None, &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("schema version {known} is up to date")),
        "{stdout}"
    );
}

#[tokio::test]
async fn migrate_on_postgres_prints_the_versions_and_never_the_password() {
    let Some(url) = pg_schema().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let known = postgres::schema_version();
    let out = cli(dir.path(), Some(&url), &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("PostgreSQL postgres"), "{stdout}");
    assert!(
        stdout.contains(&format!("schema migrated from version 0 to {known}")),
        "{stdout}"
    );
    let out = cli(dir.path(), Some(&url), &["migrate"]);
    assert!(text(&out.stdout).contains(&format!("schema version {known} is up to date")));
    assert!(
        !dir.path().join("rounds.db").exists(),
        "no SQLite file when PostgreSQL is selected"
    );
}

#[test]
fn a_password_in_the_database_url_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: connecting fails, and the error names the URL.
    let url = "postgres://rounds:s3cret-pw@127.0.0.1:1/rounds";
    let out = cli(dir.path(), Some(url), &["migrate"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("postgres://rounds:***@127.0.0.1:1/rounds"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw") && !text(&out.stdout).contains("s3cret-pw"),
        "{stderr}"
    );
    // Backup and restore are SQLite's: PostgreSQL is backed up with its own tools.
    let out = cli(
        dir.path(),
        Some(url),
        &["backup", dir.path().join("b.db").to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    assert!(!dir.path().join("b.db").exists());
}

#[test]
fn database_url_selects_postgres_and_a_wrong_one_is_refused_with_its_file() {
    let file = Path::new("/etc/rounds/collector.toml");
    let raw = parse("database_url = \"postgres://rounds:pw@db.example:5432/rounds\"\n", file).unwrap();
    let s = validate(raw, &Overrides::default(), Some(file)).unwrap();
    let url = s.database_url.clone().expect("selected");
    assert_eq!(url.expose(), "postgres://rounds:pw@db.example:5432/rounds");
    assert_eq!(url.to_string(), "postgres://rounds:***@db.example:5432/rounds");
    assert!(!format!("{s:?}").contains(":pw@"), "settings never show the password");

    let raw = parse("database_url = \"mysql://rounds:pw@db/rounds\"\n", file).unwrap();
    let e = validate(raw, &Overrides::default(), Some(file))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/etc/rounds/collector.toml: database_url: `mysql://rounds:***@db/rounds` is not a PostgreSQL URL"),
        "{e}"
    );
    assert!(!e.contains(":pw@"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_database_never_interleave_their_units_of_work() {
    let Some(url) = pg_schema().await else {
        return;
    };
    // Two stores on one database, as two collectors have: their writer locks are their own,
    // only the database's advisory lock orders them.
    let a: std::sync::Arc<dyn Store> = std::sync::Arc::new(PgStore::open(&url).await.unwrap());
    let b: std::sync::Arc<dyn Store> = std::sync::Arc::new(PgStore::open(&url).await.unwrap());
    crate::store::concurrent_units_of_work_do_not_interleave_across(&[a, b]).await;
}

/// Agents' units of work run at once on PostgreSQL (issue 17: per-agent locks); the practice
/// tallies they all recount stay exact with the agents split over two collectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_changing_findings_of_one_practice_keep_its_tally_exact() {
    let Some(url) = pg_schema().await else {
        return;
    };
    let a: std::sync::Arc<dyn Store> = std::sync::Arc::new(PgStore::open(&url).await.unwrap());
    let b: std::sync::Arc<dyn Store> = std::sync::Arc::new(PgStore::open(&url).await.unwrap());
    crate::store::concurrent_findings_keep_the_practice_tally_exact_across(&[a, b]).await;
}

/// A pool of one connection to `url`, as the store makes it.
fn one_connection_pool(url: &str) -> std::sync::Arc<postgres::pool::Pool> {
    let target = postgres::tls::Target::parse(url).unwrap();
    let tls = target.connector().unwrap();
    postgres::pool::Pool::new(target, tls, postgres::codec::redact_url(url), 1)
}

/// What the next user of a pooled connection finds: its backend, and whether it is in a
/// transaction (a statement outside one runs in the default isolation level, writable).
async fn state_of(conn: &postgres::pool::Conn) -> (i32, String, String) {
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let iso: String = conn.query_one("SHOW transaction_isolation", &[]).await.unwrap().get(0);
    let ro: String = conn.query_one("SHOW transaction_read_only", &[]).await.unwrap().get(0);
    (pid, iso, ro)
}

#[tokio::test]
async fn a_failed_or_abandoned_read_snapshot_leaves_the_pool_usable() {
    let Some(url) = pg_schema().await else {
        return;
    };
    let pool = one_connection_pool(&url);
    let mut c = pool.get().await.unwrap();
    let (pid, ..) = state_of(&c).await;
    // The snapshot is what the reads see.
    let inside = c
        .read_snapshot(|c| async move {
            let iso: String = c
                .query_one("SHOW transaction_isolation", &[])
                .await
                .map_err(postgres::codec::db)?
                .get(0);
            let ro: String = c
                .query_one("SHOW transaction_read_only", &[])
                .await
                .map_err(postgres::codec::db)?
                .get(0);
            Ok((iso, ro))
        })
        .await
        .unwrap();
    assert_eq!(inside, ("repeatable read".to_string(), "on".to_string()));
    assert!(!c.in_tx());

    // A read that fails inside: the error comes back, the snapshot is rolled back at once.
    let e = c
        .read_snapshot(|c| async move {
            c.query_one("SELECT 1 / 0", &[]).await.map_err(postgres::codec::db)?;
            Ok(())
        })
        .await
        .unwrap_err();
    let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<tokio_postgres::Error>());
    assert_eq!(
        source.and_then(|s| s.code()),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO),
        "{e:?}"
    );
    assert!(!c.in_tx(), "the guard no longer counts a transaction");
    // Not an aborted transaction (every statement would fail with 25P02) nor the snapshot.
    assert_eq!(state_of(&c).await, (pid, "read committed".into(), "off".into()));
    drop(c);
    let c = pool.get().await.unwrap();
    assert_eq!(
        state_of(&c).await,
        (pid, "read committed".into(), "off".into()),
        "the same connection, clean"
    );

    // A caller that stops waiting midway: the guard, dropped in the snapshot, rolls it back
    // before the pool hands the connection out again.
    let mut c = c;
    let (inside_tx, now_inside) = tokio::sync::oneshot::channel::<()>();
    let snapshot = c.read_snapshot(|c| async move {
        c.query_one("SELECT 1", &[]).await.map_err(postgres::codec::db)?;
        let _ = inside_tx.send(());
        std::future::pending::<rounds_collector::store::StoreResult<()>>().await
    });
    tokio::select! {
        _ = snapshot => unreachable!("the snapshot never ends by itself"),
        _ = now_inside => {}
    }
    assert!(c.in_tx(), "abandoned inside the snapshot");
    drop(c);
    let c = pool.get().await.unwrap();
    assert_eq!(state_of(&c).await, (pid, "read committed".into(), "off".into()));
}
