//! Raw file formats, as people write them: rule files, the pack manifest with its profiles,
//! and overrides. Every table denies unknown keys; [`crate::pack`] and [`crate::policy`] turn
//! these into validated, compiled types.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::pack::{Aggregate, IfMissing, Os, ParamType, Requirement, Role, Severity};

/// Parameter values keyed by rule id, then parameter name.
pub type RawParamSets = BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>;

/// `pack.toml`: what the pack is and its profiles.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPackFile {
    /// The pack's identity.
    pub pack: RawPackMeta,
    /// Opt-in profiles that change parameters and severities of the pack's rules.
    #[serde(default)]
    pub profile: Vec<RawProfile>,
    /// The real section ids citations are checked against; without it, citations are only
    /// checked for their canonical form.
    #[serde(default)]
    pub sections: Option<RawSections>,
    /// Operating-system releases and their end of support, read by conditions as `end_of_life`.
    #[serde(default)]
    pub end_of_life: Option<RawEndOfLife>,
}

/// `[sections]`: the real section ids of the Security Rule and of the 2025 proposed rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSections {
    /// Where the current list comes from (the regulation text and its date).
    pub source: String,
    /// `"164.312(b)" = "required"`: every current section a rule may cite, with its designation.
    pub current: BTreeMap<Spanned<String>, Requirement>,
    /// Where the proposed list comes from (the notice, its pages).
    pub proposed_2025_source: String,
    /// Every section of the proposed regulatory text a `proposed_2025` entry may name.
    pub proposed_2025: Vec<Spanned<String>>,
}

/// `[end_of_life]`: operating-system releases and the end of their vendor's support.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndOfLife {
    /// Where the dates come from.
    pub source: String,
    /// The date the table was last checked against its source, e.g. `2026-12-01`.
    pub checked: toml::value::Datetime,
    /// The releases.
    #[serde(default)]
    pub release: Vec<RawRelease>,
}

/// `[[end_of_life.release]]`: one release.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelease {
    /// `os_id` as the `os_release` observation reports it: `debian`, `ubuntu`, `rhel`,
    /// `windows`, `windows_server`, `macos`, ...
    pub os: Spanned<String>,
    /// `version` as the observation reports it: `12`, `22.04`, `11 23H2`, `2019`, `14`.
    pub version: String,
    /// Last day of support (a TOML date); absent while the vendor has announced none.
    #[serde(default)]
    pub end_of_support: Option<Spanned<toml::value::Datetime>>,
}

/// `[pack]`: the pack's identity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPackMeta {
    /// Short stable name, e.g. `hipaa`.
    pub name: String,
    /// Human title, e.g. `HIPAA Security Rule`.
    pub title: String,
    /// Version of the pack's content, bumped when a rule changes meaning.
    pub version: String,
    /// What the pack covers and what it does not.
    pub description: String,
}

/// `[[profile]]`: a named set of parameter and severity changes, chosen per practice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Stable name, e.g. `hipaa-2025-proposed`.
    pub name: Spanned<String>,
    /// What the profile is for and where its numbers come from.
    pub description: String,
    /// `[profile.params."rule.id"] name = value`: parameter values replacing the defaults.
    #[serde(default)]
    pub params: RawParamSets,
    /// `[profile.severity] "rule.id" = "high"`: severities replacing the rule's.
    #[serde(default)]
    pub severity: BTreeMap<Spanned<String>, Severity>,
}

/// A rule file: any number of `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleFile {
    /// The rules in this file.
    #[serde(default)]
    pub rule: Vec<RawRule>,
}

/// `[[rule]]`: one rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Stable id, `pack.domain.name`, e.g. `hipaa.backup.recent`. Never reused for another meaning.
    pub id: Spanned<String>,
    /// One-line title.
    pub title: String,
    /// What the rule checks and why, in a few sentences.
    pub description: String,
    /// `critical`, `high`, `medium` or `low`.
    pub severity: Severity,
    /// Observation kinds the rule reads (see `rounds_protocol::obs::ALL_KINDS`).
    pub kinds: Spanned<Vec<String>>,
    /// Optional CEL expression choosing which observations the rule judges, e.g. only fixed
    /// volumes; must yield a bool.
    #[serde(default)]
    pub select: Option<Spanned<String>>,
    /// CEL expression judging one observation: `true` passes, `false` fails, `null` means the
    /// observation does not say (the finding is then `error`).
    pub condition: Spanned<String>,
    /// Payload fields shown as evidence, e.g. `["last_success_at", "last_result"]`.
    pub evidence: Spanned<Vec<String>>,
    /// Named parameters the condition reads as `params.NAME`.
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<RawParam>>,
    /// What to do when no observation of a kind is there: `error` (default) or `not_applicable`.
    #[serde(default)]
    pub if_missing: IfMissing,
    /// How subjects combine: `all` (default: every judged subject must pass) or `any` (one
    /// passing subject is enough, e.g. one of several anti-malware products).
    #[serde(default)]
    pub aggregate: Aggregate,
    /// Security Rule sections the rule gives evidence for.
    pub citations: Vec<RawCitation>,
    /// Sections of the January 2025 proposed update of the Security Rule that the rule relates to.
    #[serde(default)]
    pub proposed_2025: Vec<RawProposed>,
    /// Which machines the rule applies to.
    pub applies_to: RawAppliesTo,
    /// How to fix a failure, per operating system.
    pub remediation: RawRemediation,
}

/// `[rule.params.NAME]`: one named parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    /// `duration`, `integer`, `number`, `boolean`, `string` or `list` (of strings).
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// The default value, of that type; durations as strings like `"26h"`.
    pub default: Spanned<toml::Value>,
    /// What the parameter means, with its unit.
    pub description: String,
}

/// `[[rule.citations]]`: one Security Rule section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCitation {
    /// Canonical form, e.g. `164.312(a)(2)(iv)`.
    #[serde(rename = "ref")]
    pub reference: Spanned<String>,
    /// `required` or `addressable` as Appendix A marks the implementation specification
    /// (standards without implementation specifications are `required`); `standard` for a
    /// standard that has implementation specifications (no Appendix A mark; mandatory under
    /// 164.306(c)).
    pub requirement: Requirement,
    /// The rule gives evidence for part of the section only.
    #[serde(default)]
    pub partial: bool,
    /// One line: why this observation is evidence for this section.
    pub rationale: String,
}

/// `[[rule.proposed_2025]]`: one section of the 2025 proposed rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProposed {
    /// Section of the proposed rule's regulatory text, e.g. `164.312(i)(2)(i)`.
    #[serde(default, rename = "ref")]
    pub reference: Option<Spanned<String>>,
    /// What the proposal would change for this rule.
    pub note: String,
    /// Why no proposed section applies; required when `ref` is absent, refused with one.
    #[serde(default)]
    pub no_ref_reason: Option<String>,
}

/// `[rule.applies_to]`: which machines a rule judges.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppliesTo {
    /// Operating systems: `linux`, `windows`, `macos`.
    pub os: Vec<Os>,
    /// Machine roles: `server`, `workstation`.
    pub role: Vec<Role>,
}

/// `[rule.remediation]`: how to fix a failure on each operating system.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemediation {
    /// On Linux.
    #[serde(default)]
    pub linux: Option<String>,
    /// On Windows.
    #[serde(default)]
    pub windows: Option<String>,
    /// On macOS.
    #[serde(default)]
    pub macos: Option<String>,
}

/// An overrides file, for a practice or a site.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverrides {
    /// `[params."rule.id"] name = value`: parameter values replacing the profile's and defaults.
    #[serde(default)]
    pub params: RawParamSets,
    /// `[[accept]]`: accepted risks.
    #[serde(default)]
    pub accept: Vec<RawAccept>,
}

/// `[[accept]]`: a risk accepted for one rule, until an expiry date.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccept {
    /// The rule id.
    pub rule: Spanned<String>,
    /// Why the risk is accepted, and what compensates for it.
    pub reason: String,
    /// Who accepted it (name and role).
    pub accepted_by: String,
    /// A TOML date, e.g. `2027-03-31`; the acceptance lapses at the start of that day (UTC).
    pub expires: Spanned<toml::value::Datetime>,
}
