//! The Python tools some tests run against filiera as their users would (PM4Py reading an
//! export, Schemathesis against `/openapi.json`), in one virtual environment of the
//! workspace's own: `target/test-venv`, made from `tests/requirements.txt` (pinned versions)
//! the first time a test asks for it. `.ci/run` makes it before the suite starts, so the
//! download is not charged to a test's time; a test run without it makes it itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

/// The `python` of the workspace's test environment, with every package of
/// `tests/requirements.txt` installed. Concurrent callers (test threads, test binaries)
/// wait for the one that installs.
pub fn python() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let venv = root.join("target").join("test-venv");
    let requirements = root.join("tests").join("requirements.txt");
    std::fs::create_dir_all(root.join("target"))?;
    let lock = std::fs::File::create(root.join("target").join("test-venv.lock"))?;
    lock.lock().context("locking target/test-venv.lock")?;
    let python = venv.join("bin").join("python");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        if !python.exists() {
            run(Command::new(system_python()).args(["-m", "venv"]).arg(&venv))?;
        }
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements))?;
        std::fs::write(&stamp, wanted)?;
    }
    Ok(python)
}

/// A console script installed in the test environment (`schemathesis`'s `st`, say).
pub fn script(name: &str) -> anyhow::Result<PathBuf> {
    let python = python()?;
    let script = python.with_file_name(name);
    ensure!(script.exists(), "{} is not in the test environment", script.display());
    Ok(script)
}

fn system_python() -> String {
    std::env::var("FILIERA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?} (is Python 3 with venv and pip installed?)"))?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

/// The workspace root: two levels above this crate's manifest.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/filiera-testkit sits two levels below the workspace root")
        .to_path_buf()
}
