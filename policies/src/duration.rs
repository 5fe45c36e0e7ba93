//! Durations as rule parameters are written: `"26h"`, `"15d"`, `"1h30m"`, `"90s"`.
//!
//! Units are `d` (24 hours), `h`, `m` and `s`, largest first, each at most once. The format is
//! round-trip stable: [`format`] writes what [`parse`] reads, in the shortest form.

use chrono::Duration;

/// Parses a duration such as `"26h"` or `"1d12h"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; expected e.g. \"26h\", \"15d\", \"30m\"".into());
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut last_rank = usize::MAX;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (rank, secs) = match c {
            'd' => (3, 86_400),
            'h' => (2, 3_600),
            'm' => (1, 60),
            's' => (0, 1),
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {c:?} (use d, h, m, s)"
                ));
            }
        };
        if number.is_empty() {
            return Err(format!("invalid duration {text:?}: unit {c:?} without a number"));
        }
        if rank >= last_rank {
            return Err(format!(
                "invalid duration {text:?}: units must go from largest to smallest, once each"
            ));
        }
        last_rank = rank;
        let n: i64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: number without a unit (use d, h, m, s)"
        ));
    }
    Duration::try_seconds(total).ok_or_else(|| format!("invalid duration {text:?}: too large"))
}

/// Writes a duration in the form [`parse`] reads, e.g. `"26h"`, `"15d"`, `"1h30m"`: whole
/// days from a week up, hours, minutes and seconds below.
pub fn format(d: Duration) -> String {
    let mut secs = d.num_seconds();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    if secs < 0 {
        out.push('-');
        secs = -secs;
    }
    // Whole weeks and more read better in days ("15d", "365d"); shorter spans in hours, so
    // "26h" and "72h" stay as they are usually written.
    let units: &[(i64, char)] = if secs % 86_400 == 0 && secs >= 7 * 86_400 {
        &[(86_400, 'd')]
    } else {
        &[(3_600, 'h'), (60, 'm'), (1, 's')]
    };
    for &(size, unit) in units {
        let n = secs / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            secs -= n * size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (text, secs, back) in [
            ("26h", 26 * 3600, "26h"),
            ("15d", 15 * 86_400, "15d"),
            ("1h30m", 5400, "1h30m"),
            ("90s", 90, "1m30s"),
            ("1d12h", 36 * 3600, "36h"),
            ("3d", 72 * 3600, "72h"),
            ("7d", 7 * 86_400, "7d"),
            ("0s", 0, "0s"),
        ] {
            let d = parse(text).unwrap();
            assert_eq!(d.num_seconds(), secs, "{text}");
            assert_eq!(format(d), back, "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "26",
            "h",
            "26x",
            "1m1h",
            "1h1h",
            "-3h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
