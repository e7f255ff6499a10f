//! `kiln scan`: the image's packages (read from its layers, as for the SBOM) matched against
//! a local vulnerability database; prints the findings and fails at `--fail-on`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;

use kiln::build;
use kiln::scan::{self, Severity};

/// `--fail-on` levels (lowest first).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum SeverityName {
    /// Every finding, even those without a stated severity (all of Alpine secdb's).
    Unknown,
    /// Low and above.
    Low,
    /// Medium (GitHub's "moderate") and above.
    Medium,
    /// High and above.
    High,
    /// Critical only.
    Critical,
}

impl SeverityName {
    pub(crate) fn severity(self) -> Severity {
        match self {
            SeverityName::Unknown => Severity::Unknown,
            SeverityName::Low => Severity::Low,
            SeverityName::Medium => Severity::Medium,
            SeverityName::High => Severity::High,
            SeverityName::Critical => Severity::Critical,
        }
    }
}

/// How `kiln scan` prints its report.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum ReportFormat {
    /// Aligned columns, then notes.
    #[default]
    Table,
    /// `{distro, packages_checked, findings, notes}`.
    Json,
    /// SARIF 2.1.0.
    Sarif,
}

#[derive(clap::Args)]
#[command(after_long_help = DB_LAYOUT)]
pub(crate) struct ScanArgs {
    /// The image: an OCI layout, `oci:DIR[:TAG]` (not needed with --sbom).
    #[arg(required_unless_present = "sbom")]
    image: Option<String>,
    /// Scan the packages an SPDX or CycloneDX JSON SBOM lists (as kiln writes them: the
    /// distribution and purls with `arch` and `upstream`) instead of an image's layers.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["image", "attest"])]
    sbom: Option<PathBuf>,
    /// The vulnerability database directory (default: `vulndb` in the cache directory).
    #[arg(long, value_name = "DIR")]
    db: Option<PathBuf>,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    fail_on: Option<SeverityName>,
    /// Report format.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// Attach the report to the image as an in-toto statement with cosign's vulnerability
    /// predicate (`https://cosign.sigstore.dev/attestation/vuln/v1`).
    #[arg(long)]
    attest: bool,
    /// Sign that statement (DSSE) with this private key (with --attest).
    #[arg(long, env = "KILN_SIGN_KEY")]
    sign_key: Option<PathBuf>,
    /// How to attach it (with --attest).
    #[arg(long, value_enum, default_value = "referrers")]
    attest_mode: super::attest::AttestModeName,
    /// Directory for the blob store (see `kiln build --cache-dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

const DB_LAYOUT: &str = "\
The database (--db DIR) is a directory of JSON files, in sub-directories or not:
  Alpine secdb files (v3.20/main.json: distroversion, packages[].pkg.name = origin package,
    packages[].pkg.secfixes = fixed version -> ids; \"0\" = never affected), matched by the
    image's /etc/alpine-release branch with apk version ordering;
  OSV records or arrays of them (ecosystems PyPI, Alpine:vX.Y and Debian:N; withdrawn records
    ignored): PyPI with PEP 440 ordering and PEP 503 names, Debian by source package and source
    version with dpkg's ordering, for the image's os-release VERSION_ID;
  Debian's security tracker export (source package -> CVE -> releases -> bookworm -> status,
    fixed_version, urgency), for the releases with a number (bookworm = 12).
Only the advisories for the image's package names are checked and kept; a malformed one of
those fails the scan naming its file and entry (`kiln db fetch` checks every entry it writes).
With an index (DIR/.kiln/index, written by `kiln db index DIR` and by `kiln db fetch`), the scan
reads the index instead of the files, after checking that every file still has the size and
times the index recorded: an index older than its files is refused (index again).
Severities come from OSV's severity words (database_specific.severity); secdb gives none, so its
findings are `unknown` (fail on them with --fail-on unknown).";

pub(crate) fn run_scan(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(build::default_cache_dir);
    let db_dir = args.db.clone().unwrap_or_else(|| cache_dir.join("vulndb"));
    let started = kiln::image::rfc3339(unix_now());
    let (packages, subject, what) = match (&args.sbom, &args.image) {
        (Some(path), _) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("failed to read the SBOM `{}`", path.display()))?;
            let document: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("the SBOM `{}` is not JSON", path.display()))?;
            let packages = scan::from_sbom::packages_from_sbom(&document).ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}` is neither an SPDX (spdxVersion) nor a CycloneDX (bomFormat) JSON document",
                    path.display()
                )
            })?;
            (packages, None, path.display().to_string())
        }
        (None, Some(image)) => {
            let Some(layout) = image.strip_prefix("oci:") else {
                return Err(super::usage(format!(
                    "invalid image `{image}`: kiln scan reads OCI layouts, oci:DIR[:TAG] (pull a registry image first with `kiln pull REF -o type=oci,dest=DIR`)"
                )));
            };
            let store = build::open_store(&cache_dir)?;
            let (built, reference) = super::attest::load_layout_image(&store, layout)
                .with_context(|| format!("failed to read `{image}`"))?;
            let packages = super::attest::image_packages(&store, &built)?;
            (
                packages,
                Some((layout.to_owned(), built, reference)),
                image.clone(),
            )
        }
        (None, None) => {
            return Err(super::usage(
                "kiln scan needs an image or --sbom FILE".to_owned(),
            ));
        }
    };
    let db = scan::Database::load(&db_dir, &scan::Wanted::names_of(&packages))?;
    let report = scan::scan(&packages, &db);
    if args.attest
        && let Some((layout, built, reference)) = &subject
    {
        let subject = kiln::attest::Subject::image(
            reference.as_deref().unwrap_or("image"),
            &built.manifest.digest,
            &built.manifest.platform,
        );
        let predicate = scan::report::vuln_predicate(
            &report,
            Some(&db.digest()?),
            &started,
            &kiln::image::rfc3339(unix_now()),
        );
        let statement =
            kiln::attest::Statement::new(&[subject], scan::report::VULN_PREDICATE_TYPE, predicate);
        let (dir, _) = kiln::dockerfile::plan::split_local_reference(layout);
        super::attest::sign_and_attach(
            &dir,
            reference.as_deref(),
            built,
            &statement,
            args.sign_key.as_deref(),
            args.attest_mode,
        )
        .with_context(|| format!("failed to attach the scan report to `{what}`"))?;
    }
    match args.format {
        ReportFormat::Table => print!("{}", scan::report::table(&report)),
        ReportFormat::Json => println!("{:#}", scan::report::json(&report)),
        ReportFormat::Sarif => println!("{:#}", scan::report::sarif(&report)),
    }
    if let Some(threshold) = args.fail_on {
        let failing = report.at_or_above(threshold.severity());
        if failing > 0 {
            eprintln!(
                "error: {failing} findings at or above {} in `{what}`",
                threshold.severity().as_str(),
            );
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `kiln build --scan-db DIR [--fail-on SEVERITY]`: scans the built image's packages, prints
/// the table to stderr, and fails when a finding reaches `fail_on`.
pub(crate) fn check_build(
    db_dir: &std::path::Path,
    packages: &[kiln::attest::SbomPackage],
    fail_on: Option<SeverityName>,
) -> anyhow::Result<()> {
    let db = scan::Database::load(db_dir, &scan::Wanted::names_of(packages))?;
    let report = scan::scan(packages, &db);
    eprint!("{}", scan::report::table(&report));
    if let Some(threshold) = fail_on {
        let failing = report.at_or_above(threshold.severity());
        if failing > 0 {
            anyhow::bail!(
                "the image has {failing} findings at or above {} (--fail-on); nothing was written or pushed",
                threshold.severity().as_str()
            );
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub(crate) enum DbCommand {
    /// Download Alpine secdb and OSV JSON files into the database directory, each at its URL's
    /// path (`.../v3.20/main.json` -> `DIR/v3.20/main.json`); `URL#sha256=HEX` pins a file's
    /// digest. A file that does not match its pin or is not a database file is not kept. The
    /// directory is then indexed (as `kiln db index` does).
    Fetch {
        /// The files' URLs, each optionally followed by `#sha256=HEX`.
        #[arg(required = true)]
        urls: Vec<String>,
        /// The database directory (default: `vulndb` in the cache directory).
        #[arg(long, value_name = "DIR")]
        db: Option<PathBuf>,
        /// The cache directory (see `kiln build --cache-dir`).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Index a database directory (`DIR/.kiln/index`), for one filled by hand (unzipped OSV
    /// exports, copied secdb files): `kiln scan` then reads the index and the advisories its
    /// image's package names need instead of every file. Every entry of every file is checked.
    /// `kiln db fetch` indexes after fetching; a scan refuses an index older than its files.
    Index {
        /// The database directory.
        dir: PathBuf,
    },
}

pub(crate) fn run_db(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Fetch {
            urls,
            db,
            cache_dir,
        } => {
            let dir = db.unwrap_or_else(|| {
                cache_dir
                    .unwrap_or_else(build::default_cache_dir)
                    .join("vulndb")
            });
            for path in scan::fetch::fetch(&dir, &urls)? {
                eprintln!("kiln: wrote {}", path.display());
            }
            report_index(&dir)
        }
        DbCommand::Index { dir } => report_index(&dir),
    }
}

fn report_index(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let written = scan::index::write(dir)
        .with_context(|| format!("failed to index the database `{}`", dir.display()))?;
    eprintln!(
        "kiln: indexed {} files ({} entries for {} package names) into {}",
        written.files,
        written.entries,
        written.names,
        written.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
