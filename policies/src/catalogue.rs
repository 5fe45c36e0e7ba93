//! The pack's catalogue as Markdown: every rule with its citations, parameters, profiles and
//! remediation. `policies/packs/hipaa/README.md` is this output for the built-in pack; a test
//! fails when the file is out of date (regenerate with `ROUNDS_BLESS=1 cargo test -p
//! rounds-policies catalogue`).

use std::fmt::Write as _;

use crate::pack::{Os, Pack};

/// Renders the catalogue of `pack` as Markdown.
pub fn markdown(pack: &Pack) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_markdown(pack, &mut out);
    out
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn write_markdown(pack: &Pack, out: &mut String) -> std::fmt::Result {
    writeln!(
        out,
        "<!-- Generated from the pack's TOML files by rounds_policies::catalogue; do not edit. -->"
    )?;
    writeln!(
        out,
        "# {} (pack `{}`, version {})\n",
        pack.title, pack.name, pack.version
    )?;
    writeln!(out, "{}\n", pack.description.trim())?;
    writeln!(
        out,
        "Designations: `required` and `addressable` as Appendix A to Subpart C marks the \
         implementation specification (a standard without implementation specifications is \
         `required`); `standard` for a standard that has implementation specifications, which \
         Appendix A leaves unmarked and 164.306(c) makes mandatory. A `partial` citation: the \
         rule gives evidence for part of the section only.\n"
    )?;
    if let Some(s) = &pack.sections {
        writeln!(
            out,
            "Citations are checked against {} current sections ({}) and {} sections of the 2025 \
             proposed rule ({}).\n",
            s.current.len(),
            s.source.trim(),
            s.proposed_2025.len(),
            s.proposed_2025_source.trim()
        )?;
    }
    writeln!(out, "## Rules\n")?;
    writeln!(out, "| rule | severity | citations | applies to |")?;
    writeln!(out, "| --- | --- | --- | --- |")?;
    for r in &pack.rules {
        let cites: Vec<String> = r
            .citations
            .iter()
            .map(|c| {
                if c.partial {
                    format!("{} ({}, partial)", c.reference, c.requirement)
                } else {
                    format!("{} ({})", c.reference, c.requirement)
                }
            })
            .collect();
        let os: Vec<&str> = r.applies_to.os.iter().map(|o| o.as_str()).collect();
        let roles: Vec<&str> = r.applies_to.role.iter().map(|o| o.as_str()).collect();
        writeln!(
            out,
            "| [`{}`](#{}) | {} | {} | {}; {} |",
            r.id,
            r.id.replace('.', ""),
            r.severity,
            cites.join(", "),
            os.join(", "),
            roles.join(", ")
        )?;
    }
    writeln!(out)?;
    for r in &pack.rules {
        writeln!(out, "### {}\n", r.id)?;
        writeln!(out, "**{}** — severity {}\n", r.title, r.severity)?;
        writeln!(out, "{}\n", r.description.trim())?;
        writeln!(
            out,
            "Reads: {}.\n",
            r.kinds.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        )?;
        if let Some(select) = &r.select_source {
            writeln!(
                out,
                "Judges the observations where:\n\n```cel\n{}\n```\n",
                select.trim()
            )?;
        }
        writeln!(
            out,
            "Passes when (`null`: the observation does not say, an error):\n\n```cel\n{}\n```\n",
            r.condition_source.trim()
        )?;
        let missing = match r.if_missing {
            crate::pack::IfMissing::Error => "error",
            crate::pack::IfMissing::NotApplicable => "not applicable",
        };
        let aggregate = match r.aggregate {
            crate::pack::Aggregate::All => "every judged subject must pass",
            crate::pack::Aggregate::Any => "one passing subject is enough",
        };
        writeln!(
            out,
            "With several subjects: {aggregate}. With no observation of its kinds: {missing}.\n"
        )?;
        writeln!(out, "| citation | designation | fit | rationale |")?;
        writeln!(out, "| --- | --- | --- | --- |")?;
        for c in &r.citations {
            let fit = if c.partial { "partial" } else { "full" };
            writeln!(
                out,
                "| {} | {} | {fit} | {} |",
                c.reference,
                c.requirement,
                cell(&c.rationale)
            )?;
        }
        writeln!(out)?;
        if !r.proposed_2025.is_empty() {
            writeln!(out, "2025 proposed rule:\n")?;
            for p in &r.proposed_2025 {
                match (&p.reference, &p.no_ref_reason) {
                    (Some(r), _) => writeln!(out, "- {r}: {}", p.note.trim())?,
                    (None, Some(why)) => writeln!(out, "- (no section: {}) {}", why.trim(), p.note.trim())?,
                    (None, None) => writeln!(out, "- {}", p.note.trim())?,
                }
            }
            writeln!(out)?;
        }
        if !r.params.is_empty() {
            writeln!(out, "| parameter | type | default | profiles | meaning |")?;
            writeln!(out, "| --- | --- | --- | --- | --- |")?;
            for p in &r.params {
                let profiles: Vec<String> = pack
                    .profiles
                    .iter()
                    .filter_map(|prof| {
                        prof.params
                            .get(&r.id)
                            .and_then(|m| m.get(&p.name))
                            .map(|v| format!("{}: {v}", prof.name))
                    })
                    .collect();
                writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} |",
                    p.name,
                    p.ty,
                    p.default,
                    cell(&profiles.join(", ")),
                    cell(&p.description)
                )?;
            }
            writeln!(out)?;
        }
        writeln!(
            out,
            "Evidence: {}.\n",
            r.evidence
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(out, "Remediation:\n")?;
        for os in Os::ALL {
            if let Some(text) = r.remediation.for_os(os) {
                writeln!(out, "- {os}: {}", text.trim())?;
            }
        }
        writeln!(out)?;
    }
    if let Some(sections) = &pack.sections {
        writeln!(out, "## Section ids\n")?;
        writeln!(out, "Current rule: {}.\n", sections.source.trim())?;
        writeln!(out, "| section | designation |")?;
        writeln!(out, "| --- | --- |")?;
        for (id, designation) in &sections.current {
            writeln!(out, "| {id} | {designation} |")?;
        }
        writeln!(out)?;
        writeln!(out, "2025 proposed rule: {}.\n", sections.proposed_2025_source.trim())?;
        let ids: Vec<&str> = sections.proposed_2025.iter().map(String::as_str).collect();
        writeln!(out, "{}\n", ids.join(", "))?;
    }
    if let Some(eol) = &pack.end_of_life {
        writeln!(out, "## End-of-life table\n")?;
        writeln!(out, "{} (checked {}).\n", eol.source.trim(), eol.checked)?;
        writeln!(out, "| os | version | last day of support |")?;
        writeln!(out, "| --- | --- | --- |")?;
        for r in &eol.releases {
            let end = r
                .end_of_support
                .map_or_else(|| "none announced".to_string(), |d| d.to_string());
            writeln!(out, "| {} | {} | {end} |", r.os, r.version)?;
        }
        writeln!(out)?;
    }
    if !pack.profiles.is_empty() {
        writeln!(out, "## Profiles\n")?;
        for p in &pack.profiles {
            writeln!(out, "### {}\n", p.name)?;
            writeln!(out, "{}\n", p.description.trim())?;
            for (rule, values) in &p.params {
                for (name, v) in values {
                    writeln!(out, "- `{rule}` `{name}` = {v}")?;
                }
            }
            for (rule, sev) in &p.severity {
                writeln!(out, "- `{rule}` severity {sev}")?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}
