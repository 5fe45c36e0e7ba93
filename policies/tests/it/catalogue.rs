//! `packs/hipaa/README.md` is generated from the pack and must be up to date. Regenerate with
//! `ROUNDS_BLESS=1 cargo test -p rounds-policies --test it catalogue`.

use crate::support::pack;

#[test]
fn catalogue_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/hipaa/README.md");
    let generated = rounds_policies::catalogue::markdown(pack());
    if std::env::var_os("ROUNDS_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date; regenerate it with ROUNDS_BLESS=1 cargo test -p rounds-policies --test it catalogue",
        path.display()
    );
}

#[test]
fn catalogue_lists_every_rule_citation_parameter_and_remediation() {
    let md = rounds_policies::catalogue::markdown(pack());
    for rule in &pack().rules {
        assert!(md.contains(&format!("### {}", rule.id)), "{}", rule.id);
        for c in &rule.citations {
            assert!(md.contains(&c.rationale), "{}: {}", rule.id, c.reference);
        }
        for p in &rule.params {
            assert!(
                md.contains(&format!("| `{}` | {} |", p.name, p.ty)),
                "{}: {}",
                rule.id,
                p.name
            );
        }
        if let Some(text) = &rule.remediation.windows {
            assert!(md.contains(text.trim()), "{}", rule.id);
        }
    }
    assert!(md.contains("### hipaa-2025-proposed"));
}
