//! `filiera check-config` run as a real process: it prints what `serve` would run with and never
//! a secret, names the setting at fault, reports `FILIERA_*` variables nothing reads, and
//! connects to nothing and writes nothing.

mod common;

use std::process::{Command, Output};

use serde_json::Value;

/// `filiera [GLOBAL] check-config [OPTIONS]` with no `FILIERA_*` variable but those given (not
/// even those [`common::clean_command`] sets).
fn check_config(env: &[(&str, &str)], global: &[&str], options: &[&str]) -> Output {
    let mut command = common::clean_command();
    for key in ["FILIERA_LOG", "FILIERA_AUTH_SECRET", "FILIERA_DATA_DIR"] {
        command.env_remove(key);
    }
    run(command
        .envs(env.iter().copied())
        .args(global)
        .arg("check-config")
        .args(options))
}

fn run(command: &mut Command) -> Output {
    command.output().expect("filiera runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const DB_PASSWORD: &str = "db5ecretpassw0rd";
const NATS_PASSWORD: &str = "n4tssecretpassword";
const AUTH_SECRET: &str = "an auth secret of the test, longer than thirty-two bytes";
/// 32 bytes of standard base64.
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const OTLP_PASSWORD: &str = "otlpc0llect0rpassword";

#[test]
fn a_valid_configuration_is_printed_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("never-created");
    let config = dir.path().join("filiera.toml");
    std::fs::write(
        &config,
        r#"
        listen = "127.0.0.1:9000"
        [audit]
        reiteration_threshold = 3
        [http]
        max_connections = 64
        [[stages]]
        code = "training"
        label = "Formazione"
        level = 1
        [[territories]]
        code = "LOM"
        name = "Lombardia"
        [[territories]]
        code = "LOM-BG"
        name = "Bergamo"
        parent = "LOM"
        [[providers]]
        code = "coop.alfa"
        name = "Cooperativa Alfa"
        "#,
    )
    .unwrap();
    let database_url = format!("postgres://filiera:{DB_PASSWORD}@db.internal:5432/filiera");
    let otlp_endpoint = format!("https://filiera:{OTLP_PASSWORD}@otel.internal:4318/");
    let nats_url = format!(
        "nats://filiera-relay:{NATS_PASSWORD}@nats-1:4222,nats://filiera-relay:{NATS_PASSWORD}@nats-2:4222"
    );
    let env = [
        ("FILIERA_LISTEN", "0.0.0.0:8181"),
        ("FILIERA_DATABASE_URL", database_url.as_str()),
        ("FILIERA_NATS_URL", nats_url.as_str()),
        ("FILIERA_AUTH_SECRET", AUTH_SECRET),
        ("FILIERA_MASTER_KEY", MASTER_KEY),
        ("FILIERA_DATA_DIR", data_dir.to_str().unwrap()),
        ("FILIERA_OTLP_ENDPOINT", otlp_endpoint.as_str()),
    ];
    let config_arg = ["--config", config.to_str().unwrap()];

    let output = check_config(&env, &config_arg, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for secret in [
        DB_PASSWORD,
        NATS_PASSWORD,
        AUTH_SECRET,
        MASTER_KEY,
        OTLP_PASSWORD,
    ] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
        assert!(!text(&output.stderr).contains(secret));
    }
    for shown in [
        "0.0.0.0:8181",
        "postgres postgres://filiera:***@db.internal:5432/filiera",
        "on, nats://filiera-relay:***@nats-1:4222,nats://filiera-relay:***@nats-2:4222",
        "audit.reiteration_threshold    3",
        "http.max_connections           64",
        "stages                         1: training (1)",
        "territories                    2 (configured)",
        "providers                      1 (configured)",
        "OTLP/HTTP to https://filiera:***@otel.internal:4318/v1/traces",
        "FILIERA_DATABASE_URL",
    ] {
        assert!(stdout.contains(shown), "`{shown}` missing:\n{stdout}");
    }

    let output = check_config(&env, &config_arg, &["--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["store"]["kind"], "postgres");
    assert_eq!(report["store"]["embedded"], false);
    assert_eq!(report["nats_relay"]["enabled"], true);
    assert_eq!(report["auth_secret"], "configured (***)");
    assert_eq!(report["master_key"], "configured (***)");
    assert_eq!(report["http"]["body_timeout"], "30s");
    assert_eq!(report["territories"]["count"], 2);
    let json = text(&output.stdout);
    for secret in [
        DB_PASSWORD,
        NATS_PASSWORD,
        AUTH_SECRET,
        MASTER_KEY,
        OTLP_PASSWORD,
    ] {
        assert!(!json.contains(secret), "{secret} shown:\n{json}");
    }
    assert!(!data_dir.exists(), "check-config created the data folder");
}

#[test]
fn the_defaults_are_the_embedded_store_without_relay() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let output = check_config(
        &[("FILIERA_DATA_DIR", data_dir.to_str().unwrap())],
        &[],
        &[],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("sqlite (embedded) sqlite://"), "{stdout}");
    assert!(stdout.contains("off (no nats_url)"), "{stdout}");
    assert!(
        stdout.contains("not exported (no otlp_endpoint)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("configuration file             none"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(generated on first start if missing)"),
        "{stdout}"
    );
    assert!(!data_dir.exists(), "check-config created the data folder");
}

#[test]
fn an_invalid_value_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = |body: &str| {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, body).unwrap();
        path
    };
    for (env, file, complaint) in [
        (vec![], Some("[http]\nbody_timeout = 30\n"), "body_timeout"),
        (
            vec![],
            Some("[audit]\nreiteration_treshold = 3\n"),
            "reiteration_treshold",
        ),
        (
            vec![("FILIERA_LISTEN", "8080")],
            None,
            "listen address `8080`",
        ),
        (
            vec![("FILIERA_AUTH_SECRET", "short")],
            None,
            "auth_secret (FILIERA_AUTH_SECRET)",
        ),
        (
            vec![("FILIERA_MASTER_KEY", "bm90IDMyIGJ5dGVz")],
            None,
            "master_key (FILIERA_MASTER_KEY)",
        ),
        (
            vec![("FILIERA_DATABASE_URL", "mysql://root:hunter2@db/filiera")],
            None,
            "database_url (FILIERA_DATABASE_URL)",
        ),
        (
            vec![("FILIERA_NATS_URL", "http://relay:hunter2@nats:4222")],
            None,
            "nats_url (FILIERA_NATS_URL)",
        ),
        (vec![("FILIERA_LOG", "info,[")], None, "FILIERA_LOG"),
        (
            vec![("FILIERA_OTLP_ENDPOINT", "otel.internal:4318")],
            None,
            "otlp_endpoint (FILIERA_OTLP_ENDPOINT",
        ),
        (
            vec![],
            Some("[[territories]]\ncode = \"LOM-BG\"\nname = \"Bergamo\"\nparent = \"LOM\"\n"),
            "names unknown parent `LOM`",
        ),
    ] {
        let config = file.map(bad_file);
        let mut args = vec![];
        if let Some(path) = &config {
            args = vec!["--config", path.to_str().unwrap()];
        }
        let output = check_config(&env, &args, &[]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{env:?} {file:?} passed");
        assert!(
            stderr.contains(complaint),
            "{env:?} {file:?}: `{complaint}` not in {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    }
}

#[test]
fn unknown_filiera_variables_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FILIERA_DATA_DIR", dir.path().to_str().unwrap()),
        ("FILIERA_DATABSE_URL", "postgres://filiera@db/filiera"),
        ("FILIERA_HTTP_MAX_CONNECTIONS", "64"),
        // The test suite's own variables are not the binary's business.
        ("FILIERA_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432"),
    ];
    let output = check_config(&env, &[], &[]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "FILIERA_DATABSE_URL is not a filiera setting (did you mean FILIERA_DATABASE_URL?)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("FILIERA_HTTP_MAX_CONNECTIONS is not a filiera setting"),
        "{stderr}"
    );
    assert!(!stderr.contains("FILIERA_TEST_PG_URL"), "{stderr}");
    // The report is still printed: the rest of the configuration is what serve would use.
    assert!(text(&output.stdout).contains("sqlite (embedded)"));

    let output = check_config(&env[..2], &[], &["--json"]);
    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["unknown_variables"],
        serde_json::json!([{"name": "FILIERA_DATABSE_URL", "did_you_mean": "FILIERA_DATABASE_URL"}])
    );
}

#[test]
fn other_commands_warn_about_unknown_variables() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(common::clean_command()
        .env("FILIERA_DATA_DIR", dir.path())
        .env("FILIERA_LOG", "warn")
        .env("FILIERA_MASTR_KEY", "x")
        .args(["generate", "--events", "10"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "FILIERA_MASTR_KEY is not a filiera setting (did you mean FILIERA_MASTER_KEY?)"
        ),
        "{stderr}"
    );
}
