//! The source bundle: the files CodePipeline's S3 source reads (the stage template, each
//! stage's template configuration and test buildspec), zipped deterministically.

use super::SOURCE_PREFIX;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;

/// Where a stage's test buildspec is in the source bundle.
pub fn test_buildspec_path(environment: &str) -> String {
    format!("tests/{environment}/buildspec.yml")
}

/// The files of the source bundle: the stage template, each stage's template configuration,
/// each stage's test buildspec.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// A digest of the names and contents, independent of zip timestamps.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (name, bytes) in &self.files {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        hex::encode(h.finalize())
    }

    /// The content-addressed key the bundle is kept under in the artifact bucket.
    pub fn key(&self) -> String {
        format!("{SOURCE_PREFIX}{}.zip", &self.digest()[..16])
    }

    /// The zip CodePipeline's S3 source reads. Entries carry a fixed timestamp, so the same
    /// files always give the same bytes.
    pub fn zip(&self) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        for (name, bytes) in &self.files {
            out.start_file(name.as_str(), options)
                .expect("writing to memory");
            out.write_all(bytes).expect("writing to memory");
        }
        out.finish().expect("writing to memory").into_inner()
    }
}

/// A stage's template configuration: its parameters and the estate's tags.
pub fn stage_configuration(
    parameters: &BTreeMap<String, String>,
    estate: &str,
    environment: &str,
) -> Vec<u8> {
    let config = json!({
        "Parameters": parameters,
        "Tags": {
            crate::live::TAG_MANAGED_BY: estate,
            crate::live::TAG_ENVIRONMENT: environment
        }
    });
    serde_json::to_vec_pretty(&config).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_deterministic_and_content_addressed() {
        let mut files = BTreeMap::new();
        files.insert("template.json".to_string(), b"{}".to_vec());
        let a = Bundle {
            files: files.clone(),
        };
        assert_eq!(a.zip(), a.clone().zip());
        files.insert("stages/staging.json".to_string(), b"{}".to_vec());
        let b = Bundle { files };
        assert_ne!(a.key(), b.key());
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(b.zip())).unwrap();
        let mut names: Vec<String> = (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["stages/staging.json", "template.json"]);
    }
}
