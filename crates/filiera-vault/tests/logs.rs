//! Nothing the vault logs, at any level, nor any error it returns, holds personal data: the
//! whole life of identities on both backends, with every log line of the process captured.

#[allow(dead_code)]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::ensure;
use common::{Harness, person};
use filiera_store::error_chain;
use filiera_testkit::Backend;
use filiera_vault::{AccessLogQuery, MasterKey, Reader, Vault};
use uuid::Uuid;

/// Every byte written by the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const PEOPLE: [(&str, &str, &str); 2] = [
    ("RSSMRA80A01H501U", "Graziella", "Quattrocchi"),
    ("BNCLCU85M41F205Z", "Ludovica", "Pellegatti"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_or_error_holds_personal_data() -> anyhow::Result<()> {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .init();

    for harness in [
        Harness::on(Backend::Sqlite).await?,
        Harness::on(Backend::Postgres).await?,
    ] {
        exercise(&harness).await?;
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone())?;
    ensure!(
        text.contains("personal data stored"),
        "debug lines were captured"
    );
    ensure!(text.contains("master key rotated"));
    for (code, given, family) in PEOPLE {
        for clear in [code, given, family, &code[..6]] {
            for form in [clear.to_owned(), clear.to_lowercase(), clear.to_uppercase()] {
                ensure!(!text.contains(&form), "`{form}` in the logs");
            }
        }
    }
    ensure!(!text.contains("1979-11-23"), "a birth date in the logs");
    Ok(())
}

/// Stores, reads, looks up, refuses, erases and rotates, logging every error as the service
/// would (its cause chain).
async fn exercise(h: &Harness) -> anyhow::Result<()> {
    let key = MasterKey::generate();
    let vault = Vault::open(h.database.clone(), common::copy(&key)).await?;
    let reader = Reader {
        subject: "op-logs".into(),
        role: "operator".into(),
    };
    let mut ids = Vec::new();
    for (code, given, family) in PEOPLE {
        let id = Uuid::new_v4();
        let mut p = person(&code.to_lowercase(), given, family);
        p.birth_date = "1979-11-23".parse().ok();
        vault.store_person(id, &p).await?;
        let read = vault.read_person(id, &reader).await?;
        tracing::debug!(?read, "what a careless caller might log");
        ids.push(id);
    }
    let mut errors = Vec::new();
    let (code, given, family) = PEOPLE[0];
    errors.extend(
        vault
            .store_person(Uuid::new_v4(), &person(code, given, family))
            .await
            .err(),
    );
    errors.extend(
        vault
            .store_person(Uuid::new_v4(), &person(&format!("{code}X"), given, family))
            .await
            .err(),
    );
    errors.extend(
        vault
            .store_person(
                Uuid::new_v4(),
                &person(code, &format!("{given}\u{7}"), family),
            )
            .await
            .err(),
    );
    errors.extend(vault.find_by_fiscal_code(&code[..10]).await.err());
    vault.find_by_fiscal_code(PEOPLE[1].0).await?;
    vault.erase(ids[0], "admin-logs").await?;
    errors.extend(vault.read_person(ids[0], &reader).await.err());
    errors.extend(
        Vault::open(h.database.clone(), MasterKey::generate())
            .await
            .err(),
    );
    Vault::rotate(&h.database, &key, &MasterKey::generate()).await?;
    errors.extend(vault.read_person(ids[1], &reader).await.err());
    vault.access_log(&AccessLogQuery::default()).await?;
    ensure!(errors.len() == 7, "{errors:?}");
    for error in &errors {
        tracing::error!(error = %error_chain(error), debug = ?error, "refused");
    }
    tracing::debug!(?key, "a key in a log line");
    Ok(())
}
