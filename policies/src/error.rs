//! Load errors: every problem in a pack, a profile or an overrides file names the file, the
//! line and, where there is one, the rule id.

use std::fmt;
use std::path::PathBuf;

/// Where a problem is: file, 1-based line, and the rule it belongs to when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as it was named when loading: a path, or `packs/hipaa/...` for the built-in pack.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The rule id the problem belongs to, when it is inside a rule (or names one).
    pub rule: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(rule) = &self.rule {
            write!(f, ": rule `{rule}`")?;
        }
        Ok(())
    }
}

/// One problem found while loading a pack, a profile or overrides.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax or shape: a syntax error, an unknown key, a missing key, a value of the wrong
    /// type, an unknown severity.
    #[error("{at}: {message}")]
    Toml { at: Location, message: String },
    /// A rule reads an observation kind this build does not know.
    #[error("{at}: unknown observation kind `{kind}` (known kinds: {known})")]
    UnknownKind { at: Location, kind: String, known: String },
    /// A CEL expression does not parse, or fails on an all-unknown observation.
    #[error("{at}: bad expression in `{field}`: {message}")]
    BadExpression {
        at: Location,
        field: &'static str,
        message: String,
    },
    /// A parameter's value does not fit its declared type, or it is not declared.
    #[error("{at}: parameter `{param}`: {message}")]
    BadParam {
        at: Location,
        param: String,
        message: String,
    },
    /// Two rules share an id.
    #[error("{at}: duplicate rule id, first defined at {first}")]
    DuplicateId { at: Location, first: String },
    /// A profile or an override names a rule the pack does not have.
    #[error("{at}: no such rule in pack `{pack}`")]
    UnknownRule { at: Location, pack: String },
    /// Anything else that makes a rule, profile or override invalid.
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    /// A policy asks for a profile the pack does not have.
    #[error("pack `{pack}` has no profile `{profile}` (profiles: {known})")]
    UnknownProfile {
        pack: String,
        profile: String,
        known: String,
    },
}

impl LoadError {
    /// Where the problem is, when it is inside a file that was read.
    pub fn location(&self) -> Option<&Location> {
        match self {
            LoadError::Io { .. } | LoadError::UnknownProfile { .. } => None,
            LoadError::Toml { at, .. }
            | LoadError::UnknownKind { at, .. }
            | LoadError::BadExpression { at, .. }
            | LoadError::BadParam { at, .. }
            | LoadError::DuplicateId { at, .. }
            | LoadError::UnknownRule { at, .. }
            | LoadError::Invalid { at, .. } => Some(at),
        }
    }
}

/// Every problem found in one load, in file order. Loading fails if there is any.
#[derive(Debug, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} found", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Text of one file being loaded, to turn byte offsets into lines and rule ids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// A location at a byte offset, with the rule id given.
    pub fn at(&self, offset: usize, rule: Option<&str>) -> Location {
        Location {
            file: self.name.to_string(),
            line: self.line_of(offset),
            rule: rule.map(str::to_string),
        }
    }

    /// The id of the `[[rule]]` table that contains byte `offset`, found in the text, for
    /// errors reported by the TOML parser before any rule was built.
    pub fn rule_id_around(&self, offset: usize) -> Option<String> {
        let start = self.text.get(..offset.min(self.text.len()))?.rfind("[[rule]]")?;
        let rest = &self.text[start + "[[rule]]".len()..];
        // The block ends at the next array-of-tables header for another rule.
        let block = rest.find("[[rule]]").map_or(rest, |end| &rest[..end]);
        block.lines().find_map(|line| {
            let line = line.trim();
            let value = line.strip_prefix("id")?.trim_start().strip_prefix('=')?.trim();
            let value = value.strip_prefix('"')?;
            Some(value[..value.find('"')?].to_string())
        })
    }

    /// Turns a TOML error into a located load error.
    pub fn toml_error(&self, e: &toml::de::Error) -> LoadError {
        let offset = e.span().map_or(0, |s| s.start);
        let rule = self.rule_id_around(offset);
        LoadError::Toml {
            at: self.at(offset, rule.as_deref()),
            message: e.message().trim().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_and_rule_around_an_offset() {
        let text = "[pack]\nname = \"x\"\n\n[[rule]]\nid = \"a.b\"\ntitle = \"t\"\n\n[[rule]]\nid = \"c.d\"\nbad = 1\n";
        let src = Source { name: "f.toml", text };
        let offset = text.find("bad").unwrap();
        assert_eq!(src.line_of(offset), 10);
        assert_eq!(src.rule_id_around(offset).as_deref(), Some("c.d"));
        assert_eq!(src.rule_id_around(text.find("title").unwrap()).as_deref(), Some("a.b"));
        assert_eq!(src.rule_id_around(3), None);
        assert_eq!(src.at(offset, Some("c.d")).to_string(), "f.toml:10: rule `c.d`");
    }
}
