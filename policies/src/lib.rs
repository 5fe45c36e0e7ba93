//! Policy rules and their evaluation: `(observations, policy, now) -> findings`.
//!
//! A [`Pack`] is a set of rules in TOML (the built-in HIPAA Security Rule pack is embedded:
//! [`Pack::builtin`]); each rule reads observation kinds and judges each observation with a
//! CEL condition. A [`Policy`] is a pack with an optional profile and per-practice and per-site
//! [`Overrides`] (parameter changes, accepted risks). [`evaluate`] turns one machine's
//! observations into one [`Finding`] per rule: pass, fail, error or not applicable, with the
//! evidence it decided on and the Security Rule citations.
//!
//! Loading is strict: unknown keys, bad expressions, unknown observation kinds, parameters of
//! the wrong type and duplicate ids fail with [`LoadErrors`], each naming file, line and rule.
//!
//! This crate does no I/O beyond reading pack and overrides files, and nothing async.

pub mod catalogue;
pub mod duration;
mod error;
mod eval;
mod kinds;
mod pack;
mod policy;
mod raw;

pub use error::{LoadError, LoadErrors, Location};
pub use eval::{CheckReport, EvalContext, Finding, Status, evaluate};
pub use pack::{
    Aggregate, AppliesTo, BUILTIN_FILES, Citation, EndOfLife, IfMissing, MANIFEST, Os, Pack, Param, ParamType,
    ParamValue, Profile, ProposedCitation, Release, Remediation, Requirement, Role, Rule, Sections, Severity,
    VARIABLES, is_canonical_citation,
};
pub use policy::{EffectiveRule, Exception, Overrides, Policy};
