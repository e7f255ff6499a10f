//! Prints a scan [`Report`]: a table for people, JSON for programs, SARIF 2.1.0 for code
//! scanning dashboards. Every format lists each finding's package, installed version, fixed
//! version, severity and advisory ids.

use serde_json::{Value, json};

use super::{Finding, Report};

/// The report as a plain-text table, one finding per line, then the notes.
pub fn table(report: &Report) -> String {
    let rows: Vec<[String; 5]> = report
        .findings
        .iter()
        .map(|f| {
            [
                format!("{} ({})", f.package, f.ecosystem),
                f.installed.clone(),
                f.fixed_in.clone().unwrap_or_else(|| "-".to_owned()),
                f.severity.as_str().to_owned(),
                f.ids.join(", "),
            ]
        })
        .collect();
    let header = ["PACKAGE", "INSTALLED", "FIXED IN", "SEVERITY", "IDS"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} findings in {} packages{}\n",
        report.findings.len(),
        report.packages_checked,
        report
            .distro
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    ));
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

fn finding_json(finding: &Finding) -> Value {
    json!({
        "package": finding.package,
        "ecosystem": finding.ecosystem,
        "installed": finding.installed,
        "fixed_in": finding.fixed_in,
        "severity": finding.severity.as_str(),
        "ids": finding.ids,
        "purl": finding.purl,
    })
}

/// The report as JSON: `{distro, packages_checked, findings: [...], notes}` (also the
/// predicate kiln attaches with `--attest`).
pub fn json(report: &Report) -> Value {
    json!({
        "distro": report.distro,
        "packages_checked": report.packages_checked,
        "findings": report.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "notes": report.notes,
    })
}

/// The report as a SARIF 2.1.0 log: one rule per advisory (its first id), one result per
/// finding, located at the package's purl (a logical location: images have no source lines).
pub fn sarif(report: &Report) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut rule_ids: Vec<String> = Vec::new();
    let mut results = Vec::new();
    for finding in &report.findings {
        let rule_id = finding.ids.first().cloned().unwrap_or_default();
        if !rule_ids.contains(&rule_id) {
            rule_ids.push(rule_id.clone());
            rules.push(json!({
                "id": rule_id,
                "shortDescription": {"text": finding.ids.join(", ")},
                "properties": {"severity": finding.severity.as_str()},
            }));
        }
        let level = match finding.severity {
            super::Severity::Critical | super::Severity::High => "error",
            super::Severity::Medium => "warning",
            super::Severity::Low | super::Severity::Unknown => "note",
        };
        results.push(json!({
            "ruleId": rule_id,
            "level": level,
            "message": {"text": format!(
                "{} {} is vulnerable ({}); fixed in {}",
                finding.package,
                finding.installed,
                finding.ids.join(", "),
                finding.fixed_in.as_deref().unwrap_or("no release yet"),
            )},
            "locations": [{"logicalLocations": [{
                "name": finding.package,
                "fullyQualifiedName": finding.purl,
                "kind": "package",
            }]}],
        }));
    }
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {
                "name": "kiln",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// The predicate type of cosign's vulnerability attestation.
pub const VULN_PREDICATE_TYPE: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

/// The report as cosign's vulnerability predicate: `scanner` (kiln, the database's digest,
/// `result` = [`json`]) and `metadata` (scan start and finish, RFC 3339).
pub fn vuln_predicate(
    report: &Report,
    db_digest: Option<&crate::digest::Digest>,
    started: &str,
    finished: &str,
) -> Value {
    json!({
        "invocation": {
            "parameters": [],
            "uri": "",
            "event_id": "",
            "builder.id": "",
        },
        "scanner": {
            "uri": format!("{}/scan", crate::attest::KILN_URI_BASE),
            "version": env!("CARGO_PKG_VERSION"),
            "db": {
                "uri": "",
                "version": db_digest.map(ToString::to_string).unwrap_or_default(),
            },
            "result": json(report),
        },
        "metadata": {
            "scanStartedOn": started,
            "scanFinishedOn": finished,
        },
    })
}
