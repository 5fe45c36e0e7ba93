//! The configuration file: defaults, and errors that name the key, the file and the line.

use std::path::Path;
use std::time::Duration;

use rounds_agent::config::{self, AgentSettings, ConfigError};

fn parse(text: &str) -> Result<AgentSettings, ConfigError> {
    config::parse(text, Path::new("/etc/rounds/agent.toml"))
}

fn schedules(s: &AgentSettings) -> Vec<(&'static str, String)> {
    s.checks
        .iter()
        .map(|c| (c.name(), c.schedule.source().to_string()))
        .collect()
}

/// Asserts that `text` is refused with an error naming `key`, the file and `line`.
#[track_caller]
fn refused(text: &str, key: &str, line: usize) -> String {
    let err = parse(text).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(key), "error should name {key}: {msg}");
    let at = format!("/etc/rounds/agent.toml:{line}: ");
    assert!(
        msg.contains(&at),
        "error should name the file and line as {at:?}: {msg}"
    );
    msg
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let s = parse("").unwrap();
    assert_eq!(s.heartbeat_interval, Duration::from_secs(30));
    // Every check runs, hourly, in the order of `checks::all()`.
    let all: Vec<(&str, String)> = rounds_agent::checks::all()
        .iter()
        .map(|c| (c.name(), "0 0 * * * *".to_string()))
        .collect();
    assert!(all.len() > 1);
    assert_eq!(schedules(&s), all);
    let d = AgentSettings::default();
    assert_eq!(d.heartbeat_interval, s.heartbeat_interval);
    assert_eq!(schedules(&d), schedules(&s));
}

#[test]
fn a_full_file_is_read() {
    let s = parse(
        "# agent settings\nheartbeat_interval_secs = 10\n\n[checks.inventory]\nschedule = \"0 */15 * * * *\"\nenabled = true\n",
    )
    .unwrap();
    assert_eq!(s.heartbeat_interval, Duration::from_secs(10));
    let got = schedules(&s);
    assert_eq!(
        got[0],
        ("inventory", "0 */15 * * * *".to_string()),
        "changed in place, order kept"
    );
    assert!(
        got[1..].iter().all(|(_, sched)| sched == "0 0 * * * *"),
        "the others keep the default"
    );
    assert_eq!(got.len(), rounds_agent::checks::all().len());
}

#[test]
fn a_disabled_check_does_not_run() {
    let s = parse("[checks.inventory]\nenabled = false\n").unwrap();
    let names: Vec<&str> = s.checks.iter().map(|c| c.name()).collect();
    assert!(!names.contains(&"inventory"), "{names:?}");
    assert_eq!(names.len(), rounds_agent::checks::all().len() - 1);
}

#[test]
fn an_unknown_top_level_key_is_named_with_file_and_line() {
    let msg = refused(
        "heartbeat_interval_secs = 5\n\nheartbeat_secs = 5\n",
        "heartbeat_secs",
        3,
    );
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn an_unknown_key_in_a_check_is_named_with_file_and_line() {
    refused(
        "[checks.inventory]\nschedule = \"0 0 * * * *\"\nshcedule = \"x\"\n",
        "shcedule",
        3,
    );
}

#[test]
fn a_bad_cron_expression_names_the_check() {
    let msg = refused(
        "heartbeat_interval_secs = 5\n[checks.inventory]\nschedule = \"every hour\"\n",
        "checks.inventory.schedule",
        3,
    );
    assert!(msg.contains("every hour"), "{msg}");
}

#[test]
fn a_five_field_cron_expression_is_explained() {
    let msg = refused(
        "[checks.inventory]\nschedule = \"0 * * * *\"\n",
        "checks.inventory.schedule",
        2,
    );
    assert!(msg.contains("6 or 7 fields"), "{msg}");
}

#[test]
fn an_unknown_check_is_named() {
    let msg = refused("\n[checks.invetory]\n", "checks.invetory", 2);
    assert!(msg.contains("known checks: ") && msg.contains("inventory"), "{msg}");
}

#[test]
fn a_wrong_type_names_the_key() {
    refused("[checks.inventory]\nenabled = \"yes\"\n", "checks.inventory.enabled", 2);
    refused("heartbeat_interval_secs = \"30\"\n", "heartbeat_interval_secs", 1);
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = parse("heartbeat_interval_secs = 0\n[checks.inventory]\nschedule = \"nope\"\n").unwrap_err();
    let problems = err.problems();
    assert_eq!(problems.len(), 2, "{err}");
    assert_eq!(problems[0].key.as_deref(), Some("heartbeat_interval_secs"));
    assert_eq!(problems[0].line, Some(1));
    assert_eq!(problems[1].key.as_deref(), Some("checks.inventory.schedule"));
    assert_eq!(problems[1].line, Some(3));
    let msg = err.to_string();
    assert!(msg.contains("between 1 and 86400"), "{msg}");
}

#[test]
fn a_negative_interval_is_refused() {
    refused("heartbeat_interval_secs = -5\n", "heartbeat_interval_secs", 1);
}

#[test]
fn load_names_a_missing_file() {
    let err = config::load(Path::new("/nonexistent/agent.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/agent.toml"), "{err}");
}
