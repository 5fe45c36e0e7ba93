//! Strict loading: every kind of broken pack, profile and overrides fails with a message that
//! names the file, the line and the rule id; several problems are reported at once.

use rounds_policies::{LoadError, LoadErrors, Overrides, Pack, Policy};

use crate::support::pack;

const MANIFEST: &str = r#"[pack]
name = "test"
title = "Test pack"
version = "1"
description = "for tests"
"#;

/// A valid rule; tests break one line of it.
const GOOD: &str = r#"[[rule]]
id = "test.backup.recent"
title = "Backups are recent"
description = "The last successful backup is recent."
severity = "high"
kinds = ["backup"]
condition = 'data.last_success_at == null ? false : now - timestamp(data.last_success_at) <= params.max_age'
evidence = ["last_success_at"]
applies_to = { os = ["linux"], role = ["server"] }

[rule.params.max_age]
type = "duration"
default = "26h"
description = "Oldest backup that passes."

[[rule.citations]]
ref = "164.308(a)(7)(ii)(A)"
requirement = "required"
rationale = "A recent copy is a maintained copy."

[rule.remediation]
linux = "Run the backup."
"#;

fn load(files: &[(&str, &str)]) -> Result<Pack, LoadErrors> {
    Pack::from_sources(("test/pack.toml", MANIFEST), files)
}

/// Loads `GOOD` with `from` replaced by `to` and returns the single error's message.
#[track_caller]
fn broken(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "test bug: {from:?} not in GOOD");
    let text = GOOD.replacen(from, to, 1);
    match load(&[("test/rules/backup.toml", &text)]) {
        Ok(_) => panic!("pack with {to:?} loaded"),
        Err(LoadErrors(errors)) => {
            assert_eq!(errors.len(), 1, "expected one error, got: {errors:#?}");
            errors[0].to_string()
        }
    }
}

/// Asserts `message` starts with `file:line: rule `id`:` and contains `needle`.
#[track_caller]
fn assert_located(message: &str, file: &str, line: usize, rule: &str, needle: &str) {
    let prefix = format!("{file}:{line}: rule `{rule}`: ");
    assert!(
        message.starts_with(&prefix),
        "expected prefix {prefix:?} in {message:?}"
    );
    assert!(message.contains(needle), "expected {needle:?} in {message:?}");
}

const F: &str = "test/rules/backup.toml";
const R: &str = "test.backup.recent";

#[test]
fn good_pack_loads() {
    let p = load(&[(F, GOOD)]).unwrap();
    assert_eq!(p.rules.len(), 1);
    assert_eq!(p.rules[0].defined_at.to_string(), format!("{F}:2: rule `{R}`"));
}

#[test]
fn unknown_key_in_a_rule() {
    let m = broken("severity = \"high\"\n", "severity = \"high\"\nseverty = \"low\"\n");
    assert_located(&m, F, 6, R, "unknown field `severty`");
}

#[test]
fn unknown_key_in_a_nested_table() {
    let m = broken("type = \"duration\"", "type = \"duration\"\nunit = \"h\"");
    assert_located(&m, F, 13, R, "unknown field `unit`");
}

#[test]
fn unknown_severity() {
    let m = broken("severity = \"high\"", "severity = \"urgent\"");
    assert_located(&m, F, 5, R, "urgent");
}

#[test]
fn expression_that_does_not_parse() {
    let m = broken("<= params.max_age'", "<= params.max_age &&'");
    assert_located(&m, F, 7, R, "bad expression in `condition`");
}

#[test]
fn expression_reading_an_unknown_field() {
    let m = broken("timestamp(data.last_success_at)", "timestamp(data.last_sucess_at)");
    assert_located(&m, F, 7, R, "`data.last_sucess_at` is not a field of backup");
}

#[test]
fn expression_reading_an_undeclared_parameter() {
    let m = broken("<= params.max_age'", "<= params.max_age && params.min_age == null'");
    assert_located(&m, F, 7, R, "`params.min_age` is not a declared parameter");
}

#[test]
fn expression_reading_an_unknown_variable() {
    // `param` (not `params`) sits in a branch the load-time dry run never reaches.
    let m = broken("<= params.max_age'", "<= params.max_age || param.max_age == 1'");
    assert_located(&m, F, 7, R, "unknown variable `param` (variables: data, subject");
}

#[test]
fn expression_that_fails_on_unknown_values() {
    // No null guard: timestamp(null) fails when the field is unknown.
    let m = broken(
        "'data.last_success_at == null ? false : now - timestamp(data.last_success_at) <= params.max_age'",
        "'now - timestamp(data.last_success_at) <= params.max_age'",
    );
    assert_located(&m, F, 7, R, "whose fields are all unknown");
}

#[test]
fn expression_that_is_not_a_verdict() {
    let m = broken(
        "'data.last_success_at == null ? false : now - timestamp(data.last_success_at) <= params.max_age'",
        "'params.max_age == params.max_age ? data.tool : false'",
    );
    assert_located(&m, F, 7, R, "expected a bool or null");
}

#[test]
fn unknown_observation_kind() {
    let m = broken("kinds = [\"backup\"]", "kinds = [\"backups\"]");
    assert_located(&m, F, 6, R, "unknown observation kind `backups`");
}

#[test]
fn parameter_default_of_the_wrong_type() {
    let m = broken("default = \"26h\"", "default = 26");
    assert_located(&m, F, 13, R, "parameter `max_age`: expected a duration, got integer");
}

#[test]
fn parameter_default_that_is_not_a_duration() {
    let m = broken("default = \"26h\"", "default = \"26 hours\"");
    assert_located(&m, F, 13, R, "invalid duration");
}

#[test]
fn parameter_declared_but_unused() {
    let m = broken(
        "[rule.params.max_age]",
        "[rule.params.min_age]\ntype = \"integer\"\ndefault = 1\ndescription = \"unused\"\n\n[rule.params.max_age]",
    );
    assert_located(&m, F, 2, R, "parameter `min_age`: declared but never used");
}

#[test]
fn citation_not_in_canonical_form() {
    let m = broken(
        "ref = \"164.308(a)(7)(ii)(A)\"",
        "ref = \"45 CFR 164.308(a)(7)(ii)(A)\"",
    );
    assert_located(&m, F, 17, R, "not in canonical form");
}

#[test]
fn evidence_field_not_in_the_payload() {
    let m = broken("evidence = [\"last_success_at\"]", "evidence = [\"last_success\"]");
    assert_located(
        &m,
        F,
        8,
        R,
        "evidence field `last_success` is not in the payload of backup",
    );
}

#[test]
fn missing_remediation_for_an_os_it_applies_to() {
    let m = broken("os = [\"linux\"]", "os = [\"linux\", \"windows\"]");
    assert_located(&m, F, 2, R, "remediation for `windows` is missing");
}

#[test]
fn duplicate_rule_id_across_files() {
    let err = load(&[(F, GOOD), ("test/rules/more.toml", &format!("# another\n{GOOD}"))]).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    let m = err.0[0].to_string();
    assert_located(
        &m,
        "test/rules/more.toml",
        3,
        R,
        "duplicate rule id, first defined at test/rules/backup.toml:2",
    );
}

#[test]
fn toml_syntax_error() {
    let m = broken("title = \"Backups are recent\"", "title = \"Backups are recent");
    assert!(m.starts_with(&format!("{F}:3")), "{m}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let two = GOOD.replacen("kinds = [\"backup\"]", "kinds = [\"backups\"]", 1);
    let other =
        GOOD.replacen("test.backup.recent", "test.backup.other", 1)
            .replacen("default = \"26h\"", "default = true", 1);
    let err = load(&[(F, &two), ("test/rules/other.toml", &other)]).unwrap_err();
    let all = err.to_string();
    assert!(all.starts_with("2 problems found"), "{all}");
    assert!(
        all.contains(&format!("{F}:6: rule `{R}`: unknown observation kind")),
        "{all}"
    );
    assert!(
        all.contains("test/rules/other.toml:13: rule `test.backup.other`: parameter `max_age`"),
        "{all}"
    );
}

#[test]
fn broken_manifest_and_profiles() {
    let manifest = format!("{MANIFEST}owner = \"x\"\n");
    let err = Pack::from_sources(("test/pack.toml", &manifest), &[(F, GOOD)]).unwrap_err();
    assert!(
        err.0[0]
            .to_string()
            .starts_with("test/pack.toml:6: unknown field `owner`"),
        "{err}"
    );

    let manifest = format!(
        "{MANIFEST}\n[[profile]]\nname = \"strict\"\ndescription = \"d\"\n\n[profile.params.\"{R}\"]\nmax_age = 48\n\n[profile.params.\"test.no.such\"]\nmax_age = \"1h\"\n"
    );
    let err = Pack::from_sources(("test/pack.toml", &manifest), &[(F, GOOD)]).unwrap_err();
    let all = err.to_string();
    assert!(
        all.contains(&format!(
            "test/pack.toml:12: rule `{R}`: parameter `max_age`: expected a duration"
        )),
        "{all}"
    );
    assert!(
        all.contains("test/pack.toml:14: rule `test.no.such`: no such rule in pack `test`"),
        "{all}"
    );
}

#[test]
fn overrides_are_strict() {
    let p = pack();
    let cases: &[(&str, usize, Option<&str>, &str)] = &[
        (
            "[params.\"hipaa.backup.recent\"]\nmax_age = 48\n",
            2,
            Some("hipaa.backup.recent"),
            "expected a duration",
        ),
        (
            "[params.\"hipaa.backup.recent\"]\nmax_agee = \"48h\"\n",
            2,
            Some("hipaa.backup.recent"),
            "no such parameter (declared: max_age)",
        ),
        (
            "\n[params.\"hipaa.backup.recnt\"]\nmax_age = \"48h\"\n",
            2,
            Some("hipaa.backup.recnt"),
            "no such rule in pack `hipaa`",
        ),
        (
            "[[accept]]\nrule = \"hipaa.backup.recent\"\nreason = \"r\"\naccepted_by = \"a\"\nexpires = \"soon\"\n",
            5,
            None,
            "expected a TOML datetime",
        ),
        (
            "[[accept]]\nrule = \"hipaa.backup.recent\"\nreason = \"r\"\naccepted_by = \"a\"\nexpires = 2027-01-01T10:00:00Z\n",
            5,
            Some("hipaa.backup.recent"),
            "must be a date",
        ),
        (
            "[[accept]]\nrule = \"hipaa.backup.recent\"\nreasn = \"r\"\n",
            3,
            None,
            "unknown field `reasn`",
        ),
        ("[sites]\n", 1, None, "unknown field `sites`"),
    ];
    for (text, line, rule, needle) in cases {
        let err = Overrides::from_toml("practice.toml", text, p).unwrap_err();
        let m = err.0[0].to_string();
        let prefix = match rule {
            Some(r) => format!("practice.toml:{line}: rule `{r}`: "),
            None => format!("practice.toml:{line}: "),
        };
        assert!(
            m.starts_with(&prefix) && m.contains(needle),
            "{text:?}: expected {prefix:?} and {needle:?} in {m:?}"
        );
    }
}

#[test]
fn unknown_profile() {
    let err = Policy::new(pack(), Some("hipaa-2026"), &[]).unwrap_err();
    assert!(matches!(err.0[0], LoadError::UnknownProfile { .. }));
    assert!(
        err.to_string()
            .contains("pack `hipaa` has no profile `hipaa-2026` (profiles: hipaa-2025-proposed)"),
        "{err}"
    );
}

#[test]
fn load_dir_reads_the_same_pack_as_builtin() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/hipaa");
    let from_dir = Pack::load_dir(&dir).unwrap();
    let ids = |p: &Pack| p.rules.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&from_dir), ids(pack()));
    // Every rule file on disk is embedded in the binary, and nothing else.
    let mut on_disk: Vec<String> = std::fs::read_dir(dir.join("rules"))
        .unwrap()
        .map(|e| format!("packs/hipaa/rules/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = rounds_policies::BUILTIN_FILES
        .iter()
        .skip(1)
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(embedded, on_disk);
}

#[test]
fn load_dir_names_the_real_path() {
    let dir = std::env::temp_dir().join(format!("rounds-policies-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("pack.toml"), MANIFEST).unwrap();
    std::fs::write(
        dir.join("rules/backup.toml"),
        GOOD.replacen("kinds = [\"backup\"]", "kinds = [\"nope\"]", 1),
    )
    .unwrap();
    let err = Pack::load_dir(&dir).unwrap_err();
    let expected = format!(
        "{}:6: rule `{R}`: unknown observation kind `nope`",
        dir.join("rules/backup.toml").display()
    );
    assert!(err.to_string().contains(&expected), "{err}");
    let missing = Pack::load_dir(dir.join("nope")).unwrap_err();
    assert!(matches!(missing.0[0], LoadError::Io { .. }), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
