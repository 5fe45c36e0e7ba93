//! Caps on values echoed back from a request into an answer or a log line (issue 15, item 8).
//! Anything a client sent is cut to [`MAX_ECHO`] characters, control characters shown escaped,
//! with the original length said, so an unauthenticated caller cannot make the collector write
//! megabytes into its log or its answers.

/// Most characters of a client-supplied value echoed.
pub const MAX_ECHO: usize = 64;
/// Most characters of an error message answered or logged (it may quote client values, as
/// serde's messages do).
pub const MAX_MESSAGE: usize = 512;

/// `value` for an answer or log line: at most [`MAX_ECHO`] characters, control characters
/// escaped, and `… (N bytes)` when cut.
pub fn capped(value: &str) -> String {
    capped_to(value, MAX_ECHO)
}

/// An error message for an answer or a log line, at most [`MAX_MESSAGE`] characters.
pub fn capped_message(message: &str) -> String {
    capped_to(message, MAX_MESSAGE)
}

/// `value` cut to `max` characters, control characters escaped.
pub fn capped_to(value: &str, max: usize) -> String {
    let mut out = String::new();
    let mut cut = false;
    for (n, c) in value.chars().enumerate() {
        if n >= max {
            cut = true;
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        out.push_str(&format!("… ({} bytes)", value.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_say_their_length() {
        let long = "x".repeat(10_000);
        let c = capped(&long);
        assert!(c.len() < 100, "{c}");
        assert!(c.ends_with("(10000 bytes)"));
        assert_eq!(capped("rounds/1"), "rounds/1");
        assert_eq!(capped("a\nb"), "a\\nb");
    }
}
