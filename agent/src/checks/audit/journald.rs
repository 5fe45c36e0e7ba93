//! journald: the effective `Storage=` and `Seal=` of journald.conf and its drop-ins, whether
//! forward-secure sealing keys exist, and the result of `journalctl --verify` where they do.

/// `Storage=` and `Seal=` after reading `texts` in order (main file, then drop-ins sorted by
/// name); values lowercased; `None` when unset (journald's defaults: `auto`, `yes`).
pub fn parse_journald_conf<'a>(texts: impl IntoIterator<Item = &'a str>) -> (Option<String>, Option<bool>) {
    let (mut storage, mut seal) = (None, None);
    for text in texts {
        let mut in_journal = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_journal = line == "[Journal]";
                continue;
            }
            if !in_journal || line.starts_with(['#', ';']) {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim().to_ascii_lowercase();
            match k.trim() {
                "Storage" => storage = Some(v),
                "Seal" => seal = Some(matches!(v.as_str(), "yes" | "true" | "1" | "on")),
                _ => {}
            }
        }
    }
    (storage, seal)
}

/// The journal files `journalctl --verify` failed, and whether it passed any (its report goes to
/// standard error: pass the whole text, or the error message that carries it).
pub fn parse_verify(text: &str) -> (Vec<String>, bool) {
    let mut failed = Vec::new();
    let mut passed = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.split_once("FAIL: ").map(|(_, r)| r) {
            let file = rest.split(" (").next().unwrap_or(rest).trim().to_string();
            failed.push(file);
        } else if line.contains("PASS: ") {
            passed = true;
        }
    }
    (failed, passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_ins_override_the_main_file() {
        let main = "[Journal]\n#Storage=auto\nStorage=volatile\nSeal=no\n";
        let drop = "[Journal]\nStorage=persistent\nSeal=yes\n";
        assert_eq!(
            parse_journald_conf([main, drop]),
            (Some("persistent".into()), Some(true))
        );
        assert_eq!(parse_journald_conf(["[Other]\nStorage=none\n"]), (None, None));
    }

    #[test]
    fn verify_failures_name_the_file() {
        let out = "PASS: /var/log/journal/ab/system.journal\n\
                   000a10: Tag failed verification\n\
                   File corruption detected at /var/log/journal/ab/user-1000.journal:000a10 (of 8388608 bytes, 0%).\n\
                   FAIL: /var/log/journal/ab/user-1000.journal (Bad message)\n";
        assert_eq!(
            parse_verify(out),
            (vec!["/var/log/journal/ab/user-1000.journal".to_string()], true)
        );
        assert_eq!(parse_verify("PASS: /x.journal\n"), (vec![], true));
    }
}
