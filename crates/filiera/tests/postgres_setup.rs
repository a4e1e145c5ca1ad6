//! The first run on PostgreSQL: a database that does not exist yet is created at start-up when
//! the role may create databases, and refused with the `createdb` step when it may not.

mod common;

use sqlx::{Connection, Executor as _};

use filiera_testkit::pg_admin_url;

/// `admin` with its database replaced by `name`.
fn url_of(admin: &str, user: Option<&str>, name: &str) -> String {
    let (scheme, rest) = admin.split_once("://").expect("a URL");
    let rest = rest.split('?').next().expect("a URL");
    let (authority, _) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = match user {
        Some(user) => {
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}/{name}")
}

/// Runs `statements` through the admin URL.
async fn admin(statements: &[String]) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await?;
    for statement in statements {
        conn.execute(statement.as_str()).await?;
    }
    conn.close().await?;
    Ok(())
}

/// Drops the database (and the role) a test made, even when it fails.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let statements = std::mem::take(&mut self.0);
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(admin(&statements))
        })
        .join();
        if let Ok(Err(error)) = done {
            eprintln!("cleanup failed: {error:#}");
        }
    }
}

async fn exists(name: &str) -> anyhow::Result<bool> {
    let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await?;
    let exists = sqlx::query_scalar("SELECT exists(SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(exists)
}

#[tokio::test]
async fn a_missing_database_is_created_at_start_up() -> anyhow::Result<()> {
    let name = format!("filiera_fresh_{}", uuid::Uuid::new_v4().simple());
    let _cleanup = Cleanup(vec![format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )]);
    assert!(!exists(&name).await?);
    let url = url_of(&pg_admin_url(), None, &name);

    let output = common::filiera(&url).arg("migrate").output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(exists(&name).await?, "{name} was created");
    // And it is the store's, migrated: the report of an empty store answers.
    let report = common::filiera(&url).args(["report"]).output()?;
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let document: serde_json::Value = serde_json::from_slice(&report.stdout)?;
    assert_eq!(document["enrolments"], 0);
    Ok(())
}

#[tokio::test]
async fn a_role_that_may_not_create_it_is_told_the_createdb_step() -> anyhow::Result<()> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (role, name) = (
        format!("filiera_role_{suffix}"),
        format!("filiera_fresh_{suffix}"),
    );
    admin(&[format!("CREATE ROLE \"{role}\" LOGIN NOCREATEDB")]).await?;
    let _cleanup = Cleanup(vec![
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS \"{role}\""),
    ]);
    let url = url_of(&pg_admin_url(), Some(&role), &name);

    let output = common::filiera(&url).arg("migrate").output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("createdb {name}")), "{stderr}");
    assert!(stderr.contains("CREATEDB"), "{stderr}");
    assert!(!exists(&name).await?);
    Ok(())
}
