//! How failed log-ins are named in the log and the audit table (issue 15, item 9).

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// A random key for this process: the same unknown name gets the same tag until the collector
/// restarts (so repeated attempts can be told apart), and the tag cannot be tried against a
/// dictionary offline.
static KEY: LazyLock<String> = LazyLock::new(crate::secrets::random_id);

/// The name recorded for a log-in attempt with a username that is no user: never the text
/// typed (it may be a password), a short keyed hash of it instead.
pub fn unknown_user(typed: &str) -> String {
    let mut h = Sha256::new();
    h.update(KEY.as_bytes());
    h.update([0]);
    h.update(typed.to_lowercase().as_bytes());
    format!("unknown-user#{}", &hex::encode(h.finalize())[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_stable_and_does_not_show_the_text() {
        let a = unknown_user("Tr0ub4dor&3");
        assert_eq!(a, unknown_user("tr0ub4dor&3"));
        assert_ne!(a, unknown_user("correct horse"));
        assert!(!a.contains("Tr0ub4dor") && !a.to_lowercase().contains("tr0ub4dor"));
    }
}
