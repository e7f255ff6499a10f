//! One shared cache entry as it travels: an OCI image manifest tagged `kiln-step-<key hex>`
//! whose config blob is the key's record (what the key covers, the layer it gave, what the
//! step consumed) and whose layers are the step's layer blob (none when the step changed no
//! file). Any registry that takes OCI manifests stores it; nothing in it is machine-specific.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::manifest::{Descriptor, MEDIA_TYPE_OCI_MANIFEST, Manifest};
use crate::layer::Layer;
use crate::material::{Material, MaterialKind};

/// Tags of entries start with this; prune touches no other tag.
pub const TAG_PREFIX: &str = "kiln-step-";
/// The entry manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.step-cache.v1";
/// The media type of the record (the entry's config blob).
pub const RECORD_MEDIA_TYPE: &str = "application/vnd.kiln.step-cache.record.v1+json";
/// The annotation holding the entry's creation time (RFC 3339, UTC), read by prune.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// The tag of the entry for `key`.
pub fn tag_for(key: &Digest) -> String {
    format!("{TAG_PREFIX}{}", key.hex())
}

/// What a step key stands for, written next to the layer so that anyone can check an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Always 1.
    pub version: u32,
    /// The step key (a sha256).
    pub key: Digest,
    /// `run` (a RUN, keyed by everything it can see before it runs), `copy` (a COPY from an
    /// earlier stage, keyed by that stage's layers before any file is read) or `layer` (a step
    /// whose files kiln computed first, keyed by the layer's content).
    pub kind: String,
    /// The instruction, as written in the Dockerfile (for people reading the entry).
    pub step: String,
    /// The platform the step ran for.
    pub platform: String,
    /// The diffIDs of the layers below the step (covered by a `run` key).
    pub parents: Vec<Digest>,
    /// The step's layer: none when it changed no file.
    pub layers: Vec<Layer>,
    /// What the step consumed (packages, wheels, indexes), restored into the provenance of a
    /// build that takes the entry.
    pub materials: Vec<RecordedMaterial>,
    /// When the entry was written (RFC 3339, UTC).
    pub created: String,
}

/// A [`Material`] with the kind kiln keeps for its SBOM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedMaterial {
    /// The in-toto descriptor.
    pub material: Material,
    /// What kind of thing it is.
    pub kind: RecordedKind,
}

/// [`MaterialKind`] as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RecordedKind {
    /// [`MaterialKind::BaseImage`].
    BaseImage,
    /// [`MaterialKind::BuildContext`].
    BuildContext,
    /// [`MaterialKind::GitCheckout`].
    GitCheckout,
    /// [`MaterialKind::ApkIndex`].
    ApkIndex,
    /// [`MaterialKind::ApkPackage`].
    ApkPackage {
        /// apk's checksum.
        checksum: String,
    },
    /// [`MaterialKind::PythonDistribution`].
    PythonDistribution {
        /// The file name.
        file_name: String,
    },
    /// [`MaterialKind::Other`].
    Other,
}

impl RecordedMaterial {
    /// The record of `material`.
    pub fn of(material: &Material) -> RecordedMaterial {
        let kind = match &material.kind {
            MaterialKind::BaseImage => RecordedKind::BaseImage,
            MaterialKind::BuildContext => RecordedKind::BuildContext,
            MaterialKind::GitCheckout => RecordedKind::GitCheckout,
            MaterialKind::ApkIndex => RecordedKind::ApkIndex,
            MaterialKind::ApkPackage { checksum } => RecordedKind::ApkPackage {
                checksum: checksum.clone(),
            },
            MaterialKind::PythonDistribution { file_name } => RecordedKind::PythonDistribution {
                file_name: file_name.clone(),
            },
            MaterialKind::Other => RecordedKind::Other,
        };
        RecordedMaterial {
            material: material.clone(),
            kind,
        }
    }

    /// The material, with its kind back.
    pub fn to_material(&self) -> Material {
        let mut material = self.material.clone();
        material.kind = match &self.kind {
            RecordedKind::BaseImage => MaterialKind::BaseImage,
            RecordedKind::BuildContext => MaterialKind::BuildContext,
            RecordedKind::GitCheckout => MaterialKind::GitCheckout,
            RecordedKind::ApkIndex => MaterialKind::ApkIndex,
            RecordedKind::ApkPackage { checksum } => MaterialKind::ApkPackage {
                checksum: checksum.clone(),
            },
            RecordedKind::PythonDistribution { file_name } => MaterialKind::PythonDistribution {
                file_name: file_name.clone(),
            },
            RecordedKind::Other => MaterialKind::Other,
        };
        material
    }
}

/// The manifest of an entry whose record is the blob `record` (`digest`, `size`).
pub fn manifest_for(record: &Record, digest: Digest, size: u64) -> Manifest {
    let mut extra = BTreeMap::new();
    extra.insert(
        "artifactType".to_owned(),
        serde_json::Value::String(ARTIFACT_TYPE.to_owned()),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(CREATED_ANNOTATION.to_owned(), record.created.clone());
    Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_owned()),
        config: Descriptor::new(RECORD_MEDIA_TYPE, digest, size),
        layers: record
            .layers
            .iter()
            .map(|layer| Descriptor::new(&layer.media_type, layer.digest.clone(), layer.size))
            .collect(),
        annotations,
        extra,
    }
}

/// Unix seconds of an RFC 3339 UTC time as [`crate::image::rfc3339`] writes it
/// (`2026-01-31T12:00:00Z`); `None` for any other form.
pub fn parse_created(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
        || bytes[19] != b'Z'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Why an entry read back is not usable, for the warning that skips it.
pub fn check(manifest: &Manifest, record: &Record, key: &Digest) -> Result<(), String> {
    if record.version != 1 {
        return Err(format!("record version {} is not 1", record.version));
    }
    if &record.key != key {
        return Err(format!("its record is for key {}", record.key));
    }
    let listed: Vec<(&Digest, u64)> = manifest
        .layers
        .iter()
        .map(|l| (&l.digest, l.size))
        .collect();
    let recorded: Vec<(&Digest, u64)> = record.layers.iter().map(|l| (&l.digest, l.size)).collect();
    if listed != recorded {
        return Err(format!(
            "its manifest lists layers {} but its record says {}",
            describe(&listed),
            describe(&recorded)
        ));
    }
    Ok(())
}

fn describe(layers: &[(&Digest, u64)]) -> String {
    if layers.is_empty() {
        return "none".to_owned();
    }
    layers
        .iter()
        .map(|(digest, size)| format!("{digest} ({size} bytes)"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &Digest) -> Record {
        Record {
            version: 1,
            key: key.clone(),
            kind: "run".to_owned(),
            step: "RUN true".to_owned(),
            platform: "linux/amd64".to_owned(),
            parents: vec![Digest::of(b"parent")],
            layers: vec![Layer {
                diff_id: Digest::of(b"tar"),
                digest: Digest::of(b"gz"),
                size: 2,
                media_type: crate::layer::MEDIA_TYPE_GZIP.to_owned(),
            }],
            materials: vec![RecordedMaterial::of(&Material::new(
                MaterialKind::PythonDistribution {
                    file_name: "a-1-py3-none-any.whl".to_owned(),
                },
                "pkg:pypi/a@1",
                Digest::of(b"wheel"),
            ))],
            created: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    #[test]
    fn a_record_round_trips_and_is_checked_against_its_manifest_and_key() {
        let key = Digest::of(b"key");
        let record = record(&key);
        let bytes = serde_json::to_vec(&record).unwrap();
        let mut back: Record = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            back.materials[0].to_material(),
            record.materials[0].material,
            "the material's kind comes back from the record"
        );
        back.materials.clone_from(&record.materials);
        assert_eq!(back, record);
        let manifest = manifest_for(&record, Digest::of(&bytes), bytes.len() as u64);
        assert_eq!(check(&manifest, &record, &key), Ok(()));
        assert!(check(&manifest, &record, &Digest::of(b"other")).is_err());
        let mut swapped = manifest.clone();
        swapped.layers[0].digest = Digest::of(b"another blob");
        let why = check(&swapped, &record, &key).unwrap_err();
        assert!(why.contains("its manifest lists layers"), "{why}");
        assert_eq!(tag_for(&key).len(), TAG_PREFIX.len() + 64);
    }

    #[test]
    fn creation_times_read_back_what_rfc3339_writes() {
        for seconds in [0, 86_399, 951_782_400, 1_798_761_599, 4_102_444_800] {
            let text = crate::image::rfc3339(seconds);
            assert_eq!(parse_created(&text), Some(seconds), "{text}");
        }
        for bad in [
            "",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00+01:00",
        ] {
            assert_eq!(parse_created(bad), None, "{bad}");
        }
    }
}
