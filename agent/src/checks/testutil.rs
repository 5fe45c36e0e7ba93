//! Test helpers shared by the check modules: fixture trees, recorded command outputs and a
//! fake command runner.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rounds_protocol::obs::Payload;
use rounds_protocol::{Observation, ObservationStatus};

use super::{CommandRunner, Host};

/// A fixture tree under `agent/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

/// A recorded command output under `agent/tests/fixtures/recorded/` (see SOURCE.md there).
pub fn recorded(name: &str) -> String {
    let path = fixture("recorded").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A fixed time, RFC 3339.
pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

/// A host reading the fixture tree `name`, with no live system state and `runner` for commands.
pub fn host(name: &str, runner: FakeRunner, now: &str) -> Host {
    Host {
        root: fixture(name),
        runner: Arc::new(runner),
        now: at(now),
        live: false,
        state_dir: None,
    }
}

/// Returns recorded outputs for known command lines and "not found" for every other one.
#[derive(Debug, Default)]
pub struct FakeRunner {
    outputs: HashMap<String, Result<String, String>>,
}

impl FakeRunner {
    /// Answers `command_line` (program and arguments joined by spaces) with `output`.
    pub fn with(mut self, command_line: &str, output: Result<&str, &str>) -> Self {
        self.outputs.insert(
            command_line.to_string(),
            output.map(str::to_string).map_err(str::to_string),
        );
        self
    }
}

impl CommandRunner for FakeRunner {
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut line = program.to_string();
        for a in args {
            line.push(' ');
            line.push_str(a);
        }
        self.outputs
            .get(&line)
            .cloned()
            .unwrap_or_else(|| Err(format!("cannot run {program}: No such file or directory (os error 2)")))
    }
}

/// The one ok observation of kind `T` with `subject`, decoded.
pub fn payload<T: Payload>(obs: &[Observation], subject: &str) -> T {
    let o = obs
        .iter()
        .find(|o| o.kind == T::KIND && o.subject == subject)
        .unwrap_or_else(|| panic!("no {} observation for {subject} in {obs:#?}", T::KIND));
    assert_eq!(o.status, ObservationStatus::Ok, "{o:#?}");
    o.payload::<T>().unwrap().unwrap()
}

/// The error message of the observation of `kind` with `subject`.
pub fn error_of<'a>(obs: &'a [Observation], kind: &str, subject: &str) -> &'a str {
    let o = obs
        .iter()
        .find(|o| o.kind == kind && o.subject == subject)
        .unwrap_or_else(|| panic!("no {kind} observation for {subject} in {obs:#?}"));
    assert_eq!(o.status, ObservationStatus::Error, "{o:#?}");
    o.error.as_deref().unwrap()
}
