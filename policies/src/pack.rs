//! Packs of rules: the validated, compiled form of rule files and the pack manifest, strict
//! loading (every problem at once, each naming file, line and rule id), and the built-in HIPAA
//! pack embedded in the binary.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chrono::Duration;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::{LoadError, LoadErrors, Location, Source};
use crate::raw::{RawEndOfLife, RawPackFile, RawParamSets, RawRule, RawRuleFile, RawSections};
use crate::{duration, eval, kinds};

/// How much a failure matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    /// The lowercase name used in files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The designation of a cited Security Rule section, as Appendix A to Subpart C gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    /// A required implementation specification, or a standard without implementation
    /// specifications (Appendix A marks those "R"), or a general requirement of 164.306(a).
    Required,
    /// An addressable implementation specification (Appendix A: "A").
    Addressable,
    /// A standard that has implementation specifications: Appendix A gives it no R/A mark, and
    /// every standard is mandatory under 164.306(c).
    Standard,
}

impl Requirement {
    /// The lowercase name used in files, the catalogue and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Required => "required",
            Requirement::Addressable => "addressable",
            Requirement::Standard => "standard",
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Operating-system family, as in the inventory's `os_family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
    Macos,
}

impl Os {
    /// Every OS, in catalogue order.
    pub const ALL: [Os; 3] = [Os::Linux, Os::Windows, Os::Macos];

    /// The lowercase name used in files, observations and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
            Os::Macos => "macos",
        }
    }

    /// Reads an OS family name as the inventory reports it.
    pub fn parse(name: &str) -> Option<Os> {
        Os::ALL.into_iter().find(|os| os.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Machine role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Workstation,
}

impl Role {
    /// The lowercase name used in files, observations and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Workstation => "workstation",
        }
    }

    /// Reads a role name as the inventory reports it.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Server, Role::Workstation]
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule's finding is when no observation of one of its kinds is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfMissing {
    /// `error`: "no observation of kind X" (the check did not run or did not report).
    #[default]
    Error,
    /// `not_applicable`: nothing to judge, e.g. no EHR endpoint is configured for probing.
    NotApplicable,
}

/// How a rule combines the verdicts on several subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Fails if any judged subject fails.
    #[default]
    All,
    /// Passes if any judged subject passes (e.g. one working anti-malware product is enough).
    Any,
}

/// Type of a rule parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A string like `"26h"`; a CEL `duration` in conditions.
    Duration,
    /// A whole number; a CEL `int`.
    Integer,
    /// A number (whole numbers accepted); a CEL `double`.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A string.
    String,
    /// A list of strings.
    List,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::Duration => "duration",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::String => "string",
            ParamType::List => "list",
        })
    }
}

/// A validated parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Duration(Duration),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    String(String),
    List(Vec<String>),
}

impl ParamValue {
    /// Reads a TOML value as a parameter of type `ty`.
    pub fn from_toml(ty: ParamType, value: &toml::Value) -> Result<ParamValue, String> {
        use toml::Value as T;
        let wrong = || format!("expected a {ty}, got {} `{value}`", value.type_str());
        match (ty, value) {
            (ParamType::Duration, T::String(s)) => duration::parse(s).map(ParamValue::Duration),
            (ParamType::Integer, T::Integer(i)) => Ok(ParamValue::Integer(*i)),
            (ParamType::Number, T::Integer(i)) => Ok(ParamValue::Number(*i as f64)),
            (ParamType::Number, T::Float(x)) => Ok(ParamValue::Number(*x)),
            (ParamType::Boolean, T::Boolean(b)) => Ok(ParamValue::Boolean(*b)),
            (ParamType::String, T::String(s)) => Ok(ParamValue::String(s.clone())),
            (ParamType::List, T::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_string).ok_or_else(wrong))
                .collect::<Result<Vec<_>, _>>()
                .map(ParamValue::List),
            _ => Err(wrong()),
        }
    }

    /// The value as CEL sees it.
    pub(crate) fn to_cel(&self) -> cel::Value {
        match self {
            ParamValue::Duration(d) => cel::Value::Duration(*d),
            ParamValue::Integer(i) => cel::Value::Int(*i),
            ParamValue::Number(x) => cel::Value::Float(*x),
            ParamValue::Boolean(b) => cel::Value::Bool(*b),
            ParamValue::String(s) => cel::Value::String(Arc::new(s.clone())),
            ParamValue::List(items) => cel::Value::List(Arc::new(
                items.iter().map(|s| cel::Value::String(Arc::new(s.clone()))).collect(),
            )),
        }
    }

    /// The value as evidence shows it (durations as written, e.g. `"26h"`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::Duration(d) => duration::format(*d).into(),
            ParamValue::Integer(i) => (*i).into(),
            ParamValue::Number(x) => (*x).into(),
            ParamValue::Boolean(b) => (*b).into(),
            ParamValue::String(s) => s.clone().into(),
            ParamValue::List(items) => items.clone().into(),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Duration(d) => write!(f, "{}", duration::format(*d)),
            ParamValue::String(s) => write!(f, "{s:?}"),
            ParamValue::List(items) => write!(f, "{items:?}"),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

/// A named rule parameter with its type and default.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
    pub default: ParamValue,
    pub description: String,
}

/// A Security Rule section a rule gives evidence for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citation {
    /// Canonical form, e.g. `164.312(a)(2)(iv)`.
    pub reference: String,
    pub requirement: Requirement,
    /// The rule gives evidence for part of the section only (the catalogue and findings say so).
    pub partial: bool,
    /// Why the rule's observation is evidence for this section.
    pub rationale: String,
}

/// A section of the January 2025 proposed update of the Security Rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedCitation {
    /// The proposed section, when one applies.
    pub reference: Option<String>,
    pub note: String,
    /// Why no proposed section applies, when `reference` is `None`.
    pub no_ref_reason: Option<String>,
}

/// The list of real section ids the pack's citations are checked against, with its source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sections {
    /// Where the current list comes from.
    pub source: String,
    /// Current Security Rule sections and their designation.
    pub current: BTreeMap<String, Requirement>,
    /// Where the proposed list comes from.
    pub proposed_2025_source: String,
    /// Sections of the January 2025 proposed rule's regulatory text.
    pub proposed_2025: BTreeSet<String>,
}

/// One release in the end-of-life table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `os_id` as the `os_release` observation reports it, e.g. `debian`, `windows`.
    pub os: String,
    /// `version` as the observation reports it, e.g. `12`, `11 23H2`.
    pub version: String,
    /// Last day of the vendor's support; `None` while none is announced.
    pub end_of_support: Option<chrono::NaiveDate>,
}

/// Operating-system releases and the end of their vendor's support, with the table's source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndOfLife {
    /// Where the dates come from.
    pub source: String,
    /// When the table was last checked against its source.
    pub checked: String,
    pub releases: Vec<Release>,
}

impl EndOfLife {
    /// The table as CEL sees it: `"os version"` to the end-of-support date as an RFC 3339
    /// timestamp string (the start of the day after the last supported day, UTC), or `null`.
    pub(crate) fn to_cel(&self) -> cel::Value {
        let map: std::collections::HashMap<String, cel::Value> = self
            .releases
            .iter()
            .map(|r| {
                let value = r
                    .end_of_support
                    .and_then(|d| d.succ_opt())
                    .map_or(cel::Value::Null, |d| {
                        cel::Value::String(Arc::new(format!("{}T00:00:00Z", d.format("%Y-%m-%d"))))
                    });
                (format!("{} {}", r.os, r.version), value)
            })
            .collect();
        cel::Value::from(map)
    }
}

/// Which machines a rule judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliesTo {
    pub os: Vec<Os>,
    pub role: Vec<Role>,
}

/// How to fix a failure, per OS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Remediation {
    pub linux: Option<String>,
    pub windows: Option<String>,
    pub macos: Option<String>,
}

impl Remediation {
    /// The remediation text for `os`.
    pub fn for_os(&self, os: Os) -> Option<&str> {
        match os {
            Os::Linux => self.linux.as_deref(),
            Os::Windows => self.windows.as_deref(),
            Os::Macos => self.macos.as_deref(),
        }
    }
}

/// A validated rule with its compiled CEL programs.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub kinds: Vec<String>,
    /// Source of the `select` expression, if any.
    pub select_source: Option<String>,
    /// Source of the `condition` expression.
    pub condition_source: String,
    pub evidence: Vec<String>,
    pub params: Vec<Param>,
    pub if_missing: IfMissing,
    pub aggregate: Aggregate,
    pub citations: Vec<Citation>,
    pub proposed_2025: Vec<ProposedCitation>,
    pub applies_to: AppliesTo,
    pub remediation: Remediation,
    /// Where the rule is defined: file and line of its `id`.
    pub defined_at: Location,
    pub(crate) select: Option<cel::Program>,
    pub(crate) condition: cel::Program,
}

impl Rule {
    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The citations' canonical references, in order.
    pub fn citation_refs(&self) -> Vec<String> {
        self.citations.iter().map(|c| c.reference.clone()).collect()
    }
}

/// A named profile: parameter values and severities replacing the pack's defaults.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Parameter values per rule id.
    pub params: BTreeMap<String, BTreeMap<String, ParamValue>>,
    /// Severities per rule id.
    pub severity: BTreeMap<String, Severity>,
}

/// The CEL environment rules are compiled and run in (the standard library).
#[derive(Clone)]
pub(crate) struct CelEnv(pub Arc<cel::Env>);

impl fmt::Debug for CelEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CelEnv(stdlib)")
    }
}

/// A validated pack of rules, ready to build [`crate::Policy`] values from.
#[derive(Debug, Clone)]
pub struct Pack {
    pub name: String,
    pub title: String,
    pub version: String,
    pub description: String,
    pub rules: Vec<Arc<Rule>>,
    pub profiles: Vec<Profile>,
    /// The real section ids citations were checked against, when the manifest has them.
    pub sections: Option<Sections>,
    /// The end-of-life table conditions read as `end_of_life`, when the manifest has one.
    pub end_of_life: Option<EndOfLife>,
    pub(crate) env: CelEnv,
}

/// The built-in HIPAA pack's files, relative to `policies/`, embedded in the binary.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    ("packs/hipaa/pack.toml", include_str!("../packs/hipaa/pack.toml")),
    (
        "packs/hipaa/rules/access.toml",
        include_str!("../packs/hipaa/rules/access.toml"),
    ),
    (
        "packs/hipaa/rules/audit.toml",
        include_str!("../packs/hipaa/rules/audit.toml"),
    ),
    (
        "packs/hipaa/rules/availability.toml",
        include_str!("../packs/hipaa/rules/availability.toml"),
    ),
    (
        "packs/hipaa/rules/backup.toml",
        include_str!("../packs/hipaa/rules/backup.toml"),
    ),
    (
        "packs/hipaa/rules/encryption.toml",
        include_str!("../packs/hipaa/rules/encryption.toml"),
    ),
    (
        "packs/hipaa/rules/host.toml",
        include_str!("../packs/hipaa/rules/host.toml"),
    ),
    (
        "packs/hipaa/rules/inventory.toml",
        include_str!("../packs/hipaa/rules/inventory.toml"),
    ),
    (
        "packs/hipaa/rules/transmission.toml",
        include_str!("../packs/hipaa/rules/transmission.toml"),
    ),
];

/// Name of the pack manifest in a pack directory.
pub const MANIFEST: &str = "pack.toml";

impl Pack {
    /// The built-in HIPAA pack, from the files embedded at build time.
    pub fn builtin() -> Result<Pack, LoadErrors> {
        let (manifest, rules) = BUILTIN_FILES.split_first().ok_or_else(|| LoadErrors(Vec::new()))?;
        Pack::from_sources(*manifest, rules)
    }

    /// Loads a pack from a directory: `pack.toml` and every `rules/*.toml`, in name order.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Pack, LoadErrors> {
        let dir = dir.as_ref();
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| {
                LoadErrors(vec![LoadError::Io {
                    path: path.to_path_buf(),
                    source,
                }])
            })
        };
        let manifest_path = dir.join(MANIFEST);
        let manifest = read(&manifest_path)?;
        let rules_dir = dir.join("rules");
        let entries = std::fs::read_dir(&rules_dir).map_err(|source| {
            LoadErrors(vec![LoadError::Io {
                path: rules_dir.clone(),
                source,
            }])
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| {
                LoadErrors(vec![LoadError::Io {
                    path: rules_dir.clone(),
                    source,
                }])
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut files = Vec::new();
        for path in &paths {
            files.push((path.display().to_string(), read(path)?));
        }
        let manifest_name = manifest_path.display().to_string();
        let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        Pack::from_sources((&manifest_name, &manifest), &borrowed)
    }

    /// Builds a pack from file names and texts: the manifest, then the rule files.
    pub fn from_sources(manifest: (&str, &str), rule_files: &[(&str, &str)]) -> Result<Pack, LoadErrors> {
        let env = Arc::new(cel::Env::stdlib());
        let mut errors = Vec::new();
        let (manifest_name, manifest_text) = manifest;
        let msrc = Source {
            name: manifest_name,
            text: manifest_text,
        };
        let raw_manifest = match toml::from_str::<RawPackFile>(manifest_text) {
            Ok(raw) => Some(raw),
            Err(e) => {
                errors.push(msrc.toml_error(&e));
                None
            }
        };
        let (sections, end_of_life, rest) = match raw_manifest {
            Some(raw) => {
                let RawPackFile {
                    pack,
                    profile,
                    sections,
                    end_of_life,
                } = raw;
                let sections = sections.map(|s| compile_sections(msrc, s, &mut errors));
                let end_of_life = end_of_life.map(|e| compile_end_of_life(msrc, e, &mut errors));
                (sections, end_of_life, Some((pack, profile)))
            }
            None => (None, None, None),
        };
        let eol_cel = end_of_life
            .as_ref()
            .map_or_else(|| EndOfLife::default().to_cel(), EndOfLife::to_cel);

        let mut rules: Vec<Arc<Rule>> = Vec::new();
        let mut seen: HashMap<String, Location> = HashMap::new();
        for &(name, text) in rule_files {
            let src = Source { name, text };
            let file: RawRuleFile = match toml::from_str(text) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(src.toml_error(&e));
                    continue;
                }
            };
            for raw in file.rule {
                let id = raw.id.get_ref().clone();
                let at = src.at(raw.id.span().start, Some(&id));
                if let Some(first) = seen.get(&id) {
                    errors.push(LoadError::DuplicateId {
                        at,
                        first: format!("{}:{}", first.file, first.line),
                    });
                    continue;
                }
                seen.insert(id, at);
                let known = Known {
                    sections: sections.as_ref(),
                    end_of_life: &eol_cel,
                };
                if let Some(rule) = compile_rule(&env, src, raw, known, &mut errors) {
                    rules.push(Arc::new(rule));
                }
            }
        }

        let mut meta = None;
        let mut profiles = Vec::new();
        if let Some((pack, profile)) = rest {
            let mut names = BTreeSet::new();
            for p in profile {
                let name = p.name.get_ref().clone();
                if !names.insert(name.clone()) {
                    errors.push(LoadError::Invalid {
                        at: msrc.at(p.name.span().start, None),
                        message: format!("duplicate profile `{name}`"),
                    });
                    continue;
                }
                let params = resolve_param_sets(msrc, &pack.name, &rules, p.params, &mut errors);
                let mut severity = BTreeMap::new();
                for (rule, sev) in p.severity {
                    if find_rule(&rules, rule.get_ref()).is_none() {
                        errors.push(unknown_rule(msrc, &rule, &pack.name));
                    } else {
                        severity.insert(rule.into_inner(), sev);
                    }
                }
                profiles.push(Profile {
                    name,
                    description: p.description,
                    params,
                    severity,
                });
            }
            meta = Some(pack);
        }
        match meta {
            Some(meta) if errors.is_empty() => Ok(Pack {
                name: meta.name,
                title: meta.title,
                version: meta.version,
                description: meta.description,
                rules,
                profiles,
                sections,
                end_of_life,
                env: CelEnv(env),
            }),
            _ => Err(LoadErrors(errors)),
        }
    }

    /// The rule with id `id`.
    pub fn rule(&self, id: &str) -> Option<&Arc<Rule>> {
        find_rule(&self.rules, id)
    }

    /// The profile named `name`.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

fn find_rule<'a>(rules: &'a [Arc<Rule>], id: &str) -> Option<&'a Arc<Rule>> {
    rules.iter().find(|r| r.id == id)
}

pub(crate) fn unknown_rule(src: Source<'_>, rule: &Spanned<String>, pack: &str) -> LoadError {
    LoadError::UnknownRule {
        at: src.at(rule.span().start, Some(rule.get_ref())),
        pack: pack.to_string(),
    }
}

/// Validates `[..params."rule.id"] name = value` tables against the rules' declared parameters.
pub(crate) fn resolve_param_sets(
    src: Source<'_>,
    pack: &str,
    rules: &[Arc<Rule>],
    sets: RawParamSets,
    errors: &mut Vec<LoadError>,
) -> BTreeMap<String, BTreeMap<String, ParamValue>> {
    let mut out = BTreeMap::new();
    for (rule_id, values) in sets {
        let Some(rule) = find_rule(rules, rule_id.get_ref()) else {
            errors.push(unknown_rule(src, &rule_id, pack));
            continue;
        };
        let mut resolved = BTreeMap::new();
        for (name, value) in values {
            let at = src.at(name.span().start, Some(&rule.id));
            let Some(param) = rule.param(name.get_ref()) else {
                let declared: Vec<&str> = rule.params.iter().map(|p| p.name.as_str()).collect();
                errors.push(LoadError::BadParam {
                    at,
                    param: name.into_inner(),
                    message: format!("no such parameter (declared: {})", list_or_none(&declared)),
                });
                continue;
            };
            match ParamValue::from_toml(param.ty, value.get_ref()) {
                Ok(v) => {
                    resolved.insert(name.into_inner(), v);
                }
                Err(message) => errors.push(LoadError::BadParam {
                    at: src.at(value.span().start, Some(&rule.id)),
                    param: name.into_inner(),
                    message,
                }),
            }
        }
        out.insert(rule.id.clone(), resolved);
    }
    out
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Whether `text` is a citation in canonical form: `164.` then three digits, then one or more
/// parenthesised groups of lowercase letters, digits or roman numerals, e.g. `164.312(a)(2)(iv)`;
/// a bare section such as `164.312` is refused (cite the standard).
pub fn is_canonical_citation(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("164.") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits != 3 {
        return false;
    }
    let mut rest = &rest[digits..];
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('(') else {
            return false;
        };
        let Some(close) = inner.find(')') else { return false };
        let group = &inner[..close];
        if group.is_empty()
            || !group
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b.is_ascii_uppercase())
        {
            return false;
        }
        rest = &inner[close + 1..];
    }
    true
}

fn is_rule_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Names a CEL expression can use besides its parameters' fields.
pub const VARIABLES: &[&str] = &[
    "data",
    "subject",
    "kind",
    "observed_at",
    "params",
    "now",
    "os",
    "role",
    "end_of_life",
];

/// What the manifest tells rule validation: the real section ids and the end-of-life table.
#[derive(Clone, Copy)]
struct Known<'a> {
    sections: Option<&'a Sections>,
    end_of_life: &'a cel::Value,
}

/// A TOML date (no time, no offset) as a calendar date.
fn toml_date(value: &toml::value::Datetime) -> Option<chrono::NaiveDate> {
    match value {
        toml::value::Datetime {
            date: Some(d),
            time: None,
            offset: None,
        } => chrono::NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day)),
        _ => None,
    }
}

fn compile_sections(src: Source<'_>, raw: RawSections, errors: &mut Vec<LoadError>) -> Sections {
    let RawSections {
        source,
        current,
        proposed_2025_source,
        proposed_2025,
    } = raw;
    let mut out = Sections {
        source,
        proposed_2025_source,
        ..Sections::default()
    };
    for (id, requirement) in current {
        if !is_canonical_citation(id.get_ref()) {
            errors.push(LoadError::Invalid {
                at: src.at(id.span().start, None),
                message: format!("section `{}` in [sections] is not in canonical form", id.get_ref()),
            });
        }
        out.current.insert(id.into_inner(), requirement);
    }
    for id in proposed_2025 {
        if !is_canonical_citation(id.get_ref()) {
            errors.push(LoadError::Invalid {
                at: src.at(id.span().start, None),
                message: format!(
                    "section `{}` in [sections] proposed_2025 is not in canonical form",
                    id.get_ref()
                ),
            });
        }
        out.proposed_2025.insert(id.into_inner());
    }
    out
}

fn compile_end_of_life(src: Source<'_>, raw: RawEndOfLife, errors: &mut Vec<LoadError>) -> EndOfLife {
    let RawEndOfLife {
        source,
        checked,
        release,
    } = raw;
    let mut releases = Vec::new();
    let mut keys = BTreeSet::new();
    for r in release {
        let at = src.at(r.os.span().start, None);
        if !keys.insert(format!("{} {}", r.os.get_ref(), r.version)) {
            errors.push(LoadError::Invalid {
                at: at.clone(),
                message: format!(
                    "release `{} {}` is listed twice in [end_of_life]",
                    r.os.get_ref(),
                    r.version
                ),
            });
        }
        let end_of_support = match &r.end_of_support {
            None => None,
            Some(d) => match toml_date(d.get_ref()) {
                Some(date) => Some(date),
                None => {
                    errors.push(LoadError::Invalid {
                        at: src.at(d.span().start, None),
                        message: "`end_of_support` must be a date, e.g. 2026-08-31".into(),
                    });
                    None
                }
            },
        };
        releases.push(Release {
            os: r.os.into_inner(),
            version: r.version,
            end_of_support,
        });
    }
    EndOfLife {
        source,
        checked: checked.to_string(),
        releases,
    }
}

/// Validates one raw rule; pushes every problem found and returns the rule if there were none.
fn compile_rule(
    env: &Arc<cel::Env>,
    src: Source<'_>,
    raw: RawRule,
    known: Known<'_>,
    errors: &mut Vec<LoadError>,
) -> Option<Rule> {
    let RawRule {
        id,
        title,
        description,
        severity,
        kinds,
        select,
        condition,
        evidence,
        params,
        if_missing,
        aggregate,
        citations,
        proposed_2025,
        applies_to,
        remediation,
    } = raw;
    let before = errors.len();
    let rule_id = id.get_ref().clone();
    let at = |offset: usize| src.at(offset, Some(&rule_id));
    let invalid = |offset: usize, message: String| LoadError::Invalid {
        at: at(offset),
        message,
    };

    if !is_rule_id(&rule_id) {
        errors.push(invalid(
            id.span().start,
            "rule id must be dot-separated lowercase words, e.g. `hipaa.backup.recent`".into(),
        ));
    }
    if title.trim().is_empty() || description.trim().is_empty() {
        errors.push(invalid(
            id.span().start,
            "title and description must not be empty".into(),
        ));
    }

    // Kinds.
    let kinds_at = kinds.span().start;
    let kinds = kinds.into_inner();
    if kinds.is_empty() {
        errors.push(invalid(
            kinds_at,
            "`kinds` must name at least one observation kind".into(),
        ));
    }
    for kind in &kinds {
        if kinds::empty_payload(kind).is_none() {
            errors.push(LoadError::UnknownKind {
                at: at(kinds_at),
                kind: kind.clone(),
                known: rounds_protocol::obs::ALL_KINDS.join(", "),
            });
        }
    }
    let known_kinds: Vec<&String> = kinds.iter().filter(|k| kinds::empty_payload(k).is_some()).collect();

    // Evidence fields exist in at least one kind.
    let evidence_at = evidence.span().start;
    let evidence = evidence.into_inner();
    if evidence.is_empty() {
        errors.push(invalid(
            evidence_at,
            "`evidence` must name at least one payload field".into(),
        ));
    }
    for field in &evidence {
        if !known_kinds.is_empty() && !known_kinds.iter().any(|k| kinds::has_field(k, field)) {
            errors.push(invalid(
                evidence_at,
                format!("evidence field `{field}` is not in the payload of {}", kinds.join(", ")),
            ));
        }
    }

    // Parameters.
    let declared: BTreeSet<String> = params.keys().cloned().collect();
    let mut compiled_params = Vec::new();
    for (name, raw_param) in params {
        let param_at = raw_param.span().start;
        let p = raw_param.into_inner();
        if p.description.trim().is_empty() {
            errors.push(invalid(param_at, format!("parameter `{name}` needs a description")));
        }
        match ParamValue::from_toml(p.ty, p.default.get_ref()) {
            Ok(default) => compiled_params.push(Param {
                name,
                ty: p.ty,
                default,
                description: p.description,
            }),
            Err(message) => errors.push(LoadError::BadParam {
                at: at(p.default.span().start),
                param: name,
                message,
            }),
        }
    }

    // Citations.
    if citations.is_empty() {
        errors.push(invalid(id.span().start, "a rule needs at least one citation".into()));
    }
    let mut cites = Vec::new();
    for c in citations {
        if !is_canonical_citation(c.reference.get_ref()) {
            errors.push(invalid(
                c.reference.span().start,
                format!(
                    "citation `{}` is not in canonical form, e.g. `164.312(a)(2)(iv)`",
                    c.reference.get_ref()
                ),
            ));
        }
        if c.rationale.trim().is_empty() {
            errors.push(invalid(
                c.reference.span().start,
                "each citation needs a one-line rationale".into(),
            ));
        }
        if let Some(sections) = known.sections {
            match sections.current.get(c.reference.get_ref()) {
                None => errors.push(invalid(
                    c.reference.span().start,
                    format!(
                        "citation `{}` is not a section of the Security Rule (the pack's [sections] list, from {})",
                        c.reference.get_ref(),
                        sections.source.trim()
                    ),
                )),
                Some(designation) if *designation != c.requirement => errors.push(invalid(
                    c.reference.span().start,
                    format!(
                        "citation `{}` is marked `{}`, but the Security Rule designates it `{designation}`",
                        c.reference.get_ref(),
                        c.requirement
                    ),
                )),
                Some(_) => {}
            }
        }
        cites.push(Citation {
            reference: c.reference.into_inner(),
            requirement: c.requirement,
            partial: c.partial,
            rationale: c.rationale,
        });
    }
    let mut proposed = Vec::new();
    for p in proposed_2025 {
        if let Some(r) = &p.reference {
            if !is_canonical_citation(r.get_ref()) {
                errors.push(invalid(
                    r.span().start,
                    format!("proposed_2025 reference `{}` is not in canonical form", r.get_ref()),
                ));
            } else if let Some(sections) = known.sections
                && !sections.proposed_2025.contains(r.get_ref())
            {
                errors.push(invalid(
                    r.span().start,
                    format!(
                        "proposed_2025 reference `{}` is not a section of the proposed rule (the pack's [sections] list, from {})",
                        r.get_ref(),
                        sections.proposed_2025_source.trim()
                    ),
                ));
            }
        }
        if p.note.trim().is_empty() {
            errors.push(invalid(id.span().start, "each proposed_2025 entry needs a note".into()));
        }
        let reason = p.no_ref_reason.filter(|r| !r.trim().is_empty());
        match (&p.reference, &reason) {
            (None, None) => errors.push(invalid(
                id.span().start,
                "each proposed_2025 entry needs a `ref` or a `no_ref_reason` saying why no proposed section applies"
                    .into(),
            )),
            (Some(r), Some(_)) => errors.push(invalid(
                r.span().start,
                "a proposed_2025 entry with a `ref` takes no `no_ref_reason`".into(),
            )),
            _ => {}
        }
        proposed.push(ProposedCitation {
            reference: p.reference.map(Spanned::into_inner),
            note: p.note,
            no_ref_reason: reason,
        });
    }
    if applies_to.os.is_empty() || applies_to.role.is_empty() {
        errors.push(invalid(
            id.span().start,
            "`applies_to` needs at least one os and one role".into(),
        ));
    }
    for os in &applies_to.os {
        let text = match os {
            Os::Linux => &remediation.linux,
            Os::Windows => &remediation.windows,
            Os::Macos => &remediation.macos,
        };
        if text.as_deref().is_none_or(|t| t.trim().is_empty()) {
            errors.push(invalid(
                id.span().start,
                format!("remediation for `{os}` is missing (the rule applies to it)"),
            ));
        }
    }

    // Expressions: parse, check names against the parameters and payloads, and dry-run on an
    // all-unknown observation of every kind.
    let compile = |field: &'static str, expr: &Spanned<String>, errors: &mut Vec<LoadError>| {
        let source = expr.get_ref();
        let program = match env.compile(source) {
            Ok(p) => p,
            Err(e) => {
                errors.push(LoadError::BadExpression {
                    at: at(expr.span().start),
                    field,
                    message: e.to_string().replace('\n', " "),
                });
                return None;
            }
        };
        let bound = comprehension_variables(source);
        let references = program.references();
        let mut unknown: Vec<&str> = references
            .variables()
            .into_iter()
            .filter(|v| !VARIABLES.contains(v) && !bound.contains(*v))
            .collect();
        unknown.sort_unstable();
        for name in unknown {
            errors.push(LoadError::BadExpression {
                at: at(expr.span().start),
                field,
                message: format!("unknown variable `{name}` (variables: {})", VARIABLES.join(", ")),
            });
        }
        for name in dotted_names(source, "params") {
            if !declared.contains(&name) {
                errors.push(LoadError::BadExpression {
                    at: at(expr.span().start),
                    field,
                    message: format!("`params.{name}` is not a declared parameter"),
                });
            }
        }
        for name in dotted_names(source, "data") {
            if !known_kinds.is_empty() && !known_kinds.iter().any(|k| kinds::has_field(k, &name)) {
                errors.push(LoadError::BadExpression {
                    at: at(expr.span().start),
                    field,
                    message: format!("`data.{name}` is not a field of {}", kinds.join(", ")),
                });
            }
        }
        Some(program)
    };
    let select_program = select.as_ref().and_then(|s| compile("select", s, errors));
    let condition_program = compile("condition", &condition, errors);
    let sources = format!(
        "{} {}",
        select.as_ref().map_or("", |s| s.get_ref()),
        condition.get_ref()
    );
    for name in &declared {
        if !dotted_names(&sources, "params").contains(name) {
            errors.push(LoadError::BadParam {
                at: at(id.span().start),
                param: name.clone(),
                message: "declared but never used by `select` or `condition`".into(),
            });
        }
    }

    if errors.len() > before {
        return None;
    }
    let condition_program = condition_program?;
    let rule = Rule {
        id: rule_id.clone(),
        title,
        description,
        severity,
        kinds,
        select_source: select.as_ref().map(|s| s.get_ref().clone()),
        condition_source: condition.get_ref().clone(),
        evidence,
        params: compiled_params,
        if_missing,
        aggregate,
        citations: cites,
        proposed_2025: proposed,
        applies_to: AppliesTo {
            os: applies_to.os,
            role: applies_to.role,
        },
        remediation: Remediation {
            linux: remediation.linux,
            windows: remediation.windows,
            macos: remediation.macos,
        },
        defined_at: at(id.span().start),
        select: select_program,
        condition: condition_program,
    };
    // Dry run: every kind's all-unknown payload must give a verdict (bool or null), not an error.
    for kind in &rule.kinds {
        if let Err((field, message)) = eval::dry_run(env, &rule, kind, known.end_of_life) {
            let offset = match field {
                "select" => select.as_ref().map_or(condition.span().start, |s| s.span().start),
                _ => condition.span().start,
            };
            errors.push(LoadError::BadExpression {
                at: at(offset),
                field,
                message: format!("fails on an observation of kind `{kind}` whose fields are all unknown: {message}"),
            });
        }
    }
    (errors.len() == before).then_some(rule)
}

/// Names bound by CEL comprehension macros, e.g. `a` in `list.all(a, a > 0)`.
fn comprehension_variables(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for mac in ["all(", "exists(", "exists_one(", "map(", "filter("] {
        let mut rest = source;
        while let Some(pos) = rest.find(mac) {
            let after = rest[pos + mac.len()..].trim_start();
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && after[name.len()..].trim_start().starts_with(',') {
                out.insert(name);
            }
            rest = &rest[pos + mac.len()..];
        }
    }
    out
}

/// Identifiers following `prefix.` in an expression, e.g. `max_age` in `params.max_age`.
fn dotted_names(source: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let pattern = format!("{prefix}.");
    let mut rest = source;
    while let Some(pos) = rest.find(&pattern) {
        let before_ok = source.len() - rest.len() + pos == 0
            || !rest[..pos]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let after = &rest[pos + pattern.len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if before_ok && !name.is_empty() {
            out.insert(name);
        }
        rest = after;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_citations() {
        for good in [
            "164.312(a)(2)(iv)",
            "164.310(c)",
            "164.308(a)(5)(ii)(D)",
            "164.308(a)(7)",
        ] {
            assert!(is_canonical_citation(good), "{good}");
        }
        for bad in [
            "164.312",
            "45 CFR 164.312(b)",
            "164.312 (b)",
            "164.312(b",
            "164.31(b)",
            "164.312()",
            "§164.312(b)",
        ] {
            assert!(!is_canonical_citation(bad), "{bad}");
        }
    }

    #[test]
    fn finds_comprehension_variables() {
        let names = comprehension_variables("data.a.all(x, x > 1) && data.b.exists( item , item == 2) && f(y)");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["item", "x"]);
    }

    #[test]
    fn finds_dotted_names() {
        let names = dotted_names(
            "params.max_age > now - x && data.a == params.b_2 && myparams.c",
            "params",
        );
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["b_2", "max_age"]);
    }

    #[test]
    fn param_values_check_their_type() {
        let v = |s: &str| {
            s.parse::<toml::Value>()
                .unwrap_or_else(|_| toml::Value::String(s.into()))
        };
        assert_eq!(
            ParamValue::from_toml(ParamType::Duration, &toml::Value::String("26h".into())),
            Ok(ParamValue::Duration(Duration::hours(26)))
        );
        assert!(ParamValue::from_toml(ParamType::Duration, &toml::Value::Integer(26)).is_err());
        assert_eq!(
            ParamValue::from_toml(ParamType::Number, &toml::Value::Integer(3)),
            Ok(ParamValue::Number(3.0))
        );
        assert!(ParamValue::from_toml(ParamType::Integer, &toml::Value::Float(3.5)).is_err());
        let list = toml::Value::Array(vec![v("a"), toml::Value::Integer(1)]);
        assert!(ParamValue::from_toml(ParamType::List, &list).is_err());
        assert!(ParamValue::from_toml(ParamType::Boolean, &v("yes")).is_err());
    }
}
