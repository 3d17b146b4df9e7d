//! Every provider this worker is configured for, chosen by a job's `source`: the one object
//! the rest of the worker talks to for access (the job pipeline, `sign`, `check`, `extract
//! s3://…`). Built once from [`Settings`] at start.

use std::path::Path;
use std::time::Duration;

use super::aws::{S3Access, S3AccessSettings};
use super::gcs::{GcsAccess, GcsSettings};
use super::local::LocalAccess;
use super::{AccessError, Fetchable, MintRequest, Provider};
use crate::config::Settings;
use crate::job::Source;

/// The configured providers.
#[derive(Debug)]
pub struct Access {
    s3: S3Access,
    /// Why GCS can't be used, when it can't: reported to the jobs that need it, not at start
    /// (a worker that serves only S3 customers needs no Google identity).
    gcs: Result<GcsAccess, String>,
    local: Option<LocalAccess>,
}

impl Access {
    /// Builds every provider from the settings; the worker's cloud identities come from each
    /// SDK's standard chain and are only used when a job needs them.
    pub async fn from_settings(settings: &Settings) -> Result<Access, AccessError> {
        let s3 = S3Access::from_environment(
            S3AccessSettings {
                sts_endpoint: settings.sts_endpoint.clone(),
                s3_endpoint: settings.s3_endpoint.clone(),
                force_path_style: settings.s3_force_path_style,
                url_ttl: Duration::from_secs(settings.url_ttl_seconds.max(settings.display_url_ttl_seconds)),
                session_duration: Duration::from_secs(settings.session_duration_seconds),
                session_max_age: Duration::from_secs(settings.session_max_age_seconds),
            },
            settings.aws_region(),
        )
        .await?;
        let local = settings.local_root.as_deref().map(LocalAccess::new).transpose()?;
        Ok(Access { s3, gcs: gcs_access(settings), local })
    }

    /// Makes one object readable for `request.ttl` at most.
    pub async fn mint(&self, source: &Source, request: &MintRequest) -> Result<Fetchable, AccessError> {
        match source {
            Source::S3(s3) => self.s3.mint(s3, request).await,
            Source::Gcs(gcs) => match &self.gcs {
                Ok(access) => access.mint(gcs, request).await,
                Err(why) => Err(AccessError::Misconfigured(why.clone())),
            },
            Source::Local(local) => match &self.local {
                Some(access) => access.mint(local, request).await,
                None => Err(AccessError::InvalidJob(
                    "the local provider is off on this worker (ASSET_WORKER_LOCAL_ROOT is unset)".into(),
                )),
            },
        }
    }

    /// The S3 provider, for checks that only S3 offers (`check`'s HEAD of the object).
    pub fn s3(&self) -> &S3Access {
        &self.s3
    }
}

/// The GCS provider: impersonation with the worker's application default credentials, plus a
/// service-account key when `ASSET_WORKER_GCS_KEY_FILE` names one.
fn gcs_access(settings: &Settings) -> Result<GcsAccess, String> {
    let endpoints = GcsSettings {
        storage_endpoint: settings
            .gcs_endpoint
            .clone()
            .unwrap_or_else(|| GcsSettings::default().storage_endpoint),
        iam_credentials_endpoint: settings
            .iam_credentials_endpoint
            .clone()
            .unwrap_or_else(|| GcsSettings::default().iam_credentials_endpoint),
    };
    let mut access = GcsAccess::new(&endpoints).map_err(|e| e.to_string())?;
    if let Some(key_file) = &settings.gcs_key_file {
        access = access.with_service_account_key(read_key(key_file)?).map_err(|e| e.to_string())?;
    }
    // No application default credentials is not fatal while a key can sign.
    match access.clone().with_application_default_credentials() {
        Ok(with_adc) => Ok(with_adc),
        Err(_) if settings.gcs_key_file.is_some() => Ok(access),
        Err(e) => Err(e.to_string()),
    }
}

fn read_key(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("ASSET_WORKER_GCS_KEY_FILE={}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|_| {
        format!("ASSET_WORKER_GCS_KEY_FILE={}: not a service-account key (JSON)", path.display())
    })
}
