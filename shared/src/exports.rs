//! Where data exports (GDPR) are kept until downloaded: files under `<data dir>/exports/`
//! locally, an S3 bucket (`GROUNDWORK_EXPORTS_BUCKET`, objects expiring by lifecycle rule) on
//! AWS. Downloads always go through the API (`GET /exports/{id}?token=`), which checks the
//! single export's token and then streams the local file or redirects to a presigned S3 URL
//! valid for [`PRESIGNED_SECS`].

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::id::{AccountId, ExportId, UserId};
use crate::store::Key;

/// How long a presigned S3 download URL works (the API link itself lasts longer).
pub const PRESIGNED_SECS: u64 = 300;

/// How long an export's download link works.
pub const LINK_TTL_HOURS: u32 = 72;

/// Where exports are kept.
#[derive(Debug, Clone)]
pub enum ExportStorage {
    /// Files in a directory.
    Local(PathBuf),
    /// Objects in an S3 bucket (with the `s3` feature).
    #[cfg(feature = "s3")]
    S3 {
        /// The client.
        client: aws_sdk_s3::Client,
        /// The bucket.
        bucket: String,
    },
}

/// How a download is served.
#[derive(Debug)]
pub enum Download {
    /// The document itself.
    Bytes(Vec<u8>),
    /// A short-lived URL to redirect to.
    Redirect(String),
    /// It is not there (expired by the bucket's lifecycle...).
    Missing,
}

#[cfg(feature = "s3")]
fn object_name(id: ExportId) -> String {
    format!("exports/{id}.json")
}

impl ExportStorage {
    /// The storage `config` asks for: the bucket if one is set, else `<data_dir>/exports`.
    ///
    /// # Errors
    /// A bucket without an AWS configuration, or without the `s3` feature.
    pub fn from_config(
        config: &ExportsConfig,
        data_dir: &std::path::Path,
        aws: &crate::aws::AwsConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> anyhow::Result<Self> {
        let Some(bucket) = &config.bucket else { return Ok(Self::Local(data_dir.join("exports"))) };
        #[cfg(feature = "s3")]
        {
            let sdk = sdk.context("GROUNDWORK_EXPORTS_BUCKET needs AWS configuration")?;
            // Path-style addressing when an endpoint is given (local S3 API servers).
            let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(aws.endpoint_url.is_some()).build();
            Ok(Self::S3 { client: aws_sdk_s3::Client::from_conf(s3), bucket: bucket.clone() })
        }
        #[cfg(not(feature = "s3"))]
        {
            let _ = (bucket, aws, sdk);
            Err(crate::settings::not_built("GROUNDWORK_EXPORTS_BUCKET", "s3"))
        }
    }

    /// Stores the document of export `id` (overwriting: a re-run job writes the same thing).
    ///
    /// # Errors
    /// When the write fails.
    pub async fn put(&self, id: ExportId, document: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Self::Local(dir) => {
                tokio::fs::create_dir_all(dir).await.with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(format!("{id}.json"));
                let tmp = dir.join(format!("{id}.json.tmp"));
                tokio::fs::write(&tmp, document).await.with_context(|| format!("writing {}", tmp.display()))?;
                tokio::fs::rename(&tmp, &path).await.with_context(|| format!("renaming to {}", path.display()))?;
                Ok(())
            }
            #[cfg(feature = "s3")]
            Self::S3 { client, bucket } => {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(object_name(id))
                    .content_type("application/json")
                    .body(document.into())
                    .send()
                    .await
                    .map_err(aws_sdk_s3::Error::from)
                    .context("storing the export in S3")?;
                Ok(())
            }
        }
    }

    /// How to serve export `id`.
    ///
    /// # Errors
    /// When reading or presigning fails.
    pub async fn download(&self, id: ExportId) -> anyhow::Result<Download> {
        match self {
            Self::Local(dir) => match tokio::fs::read(dir.join(format!("{id}.json"))).await {
                Ok(bytes) => Ok(Download::Bytes(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Download::Missing),
                Err(e) => Err(e).context("reading the export"),
            },
            #[cfg(feature = "s3")]
            Self::S3 { client, bucket } => {
                let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(
                    PRESIGNED_SECS,
                ))?;
                let request = client
                    .get_object()
                    .bucket(bucket)
                    .key(object_name(id))
                    .response_content_disposition(format!("attachment; filename=\"export-{id}.json\""))
                    .presigned(config)
                    .await
                    .map_err(|e| anyhow::anyhow!("presigning: {e}"))?;
                Ok(Download::Redirect(request.uri().to_owned()))
            }
        }
    }
}

/// What an export covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ExportSubject {
    /// Everything about one user.
    User(UserId),
    /// Everything one account holds.
    Account(AccountId),
}

/// The state of an export (`EXPORT#<id>` / `EXPORT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportRecord {
    /// Its id.
    #[schema(value_type = String)]
    pub id: ExportId,
    /// What it covers.
    #[schema(value_type = Object)]
    pub subject: ExportSubject,
    /// Who asked.
    #[schema(value_type = String)]
    pub requested_by: UserId,
    /// When (Unix ms).
    pub requested_at_ms: i64,
    /// When the document was ready (Unix ms).
    pub ready_at_ms: Option<i64>,
    /// The SHA-256 of the download token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(ignore)]
    pub token_hash: String,
}

/// The key of an export's record.
pub fn key(id: ExportId) -> Key {
    crate::keys::export(id)
}

/// Where data exports are kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ExportsConfig {
    /// `GROUNDWORK_EXPORTS_BUCKET`: the S3 bucket of data exports (else `<data dir>/exports/`).
    #[serde(rename = "exports_bucket")]
    pub bucket: Option<String>,
}

impl ExportsConfig {
    /// From `GROUNDWORK_EXPORTS_BUCKET`.
    ///
    /// # Errors
    /// Never today; kept fallible like every area.
    pub fn from_env(env: &crate::settings::Env) -> Result<Self, crate::settings::ConfigError> {
        env.area("GROUNDWORK_")
    }
}
