//! Which failures of the push ladder are worth another attempt: transport errors, throttling,
//! server errors, an upload session that vanished, and bytes damaged on the way.

use super::super::RegistryError;

/// Why one rung of the ladder failed.
pub(crate) enum Fail {
    /// Worth another attempt (transport error, 5xx, 408, 413/416 on a monolithic upload).
    Retry(RegistryError),
    /// Not worth retrying (4xx, local errors).
    Fatal(RegistryError),
}

pub(crate) fn classify(e: RegistryError) -> Fail {
    let retry = match &e {
        RegistryError::Connect { .. } | RegistryError::RateLimited { .. } => true,
        RegistryError::Status {
            status,
            detail,
            url,
            ..
        } => {
            matches!(status, 408 | 413 | 416 | 429 | 500 | 502 | 503 | 504)
                // The session vanished (expired or finished by an earlier attempt).
                || *status == 404
                // The registry refused what it received of the upload (`DIGEST_INVALID`, or an
                // answer whose error body was itself cut off): kiln's blob is verified, so a new
                // session may pass (bounded by the retry policy).
                || (*status == 400
                    && (url.contains("/blobs/uploads/") || damaged_in_transit(detail.as_deref())))
        }
        // The registry committed other bytes than kiln's verified blob: damaged on the way.
        RegistryError::DigestMismatch { .. } => true,
        _ => false,
    };
    if retry {
        Fail::Retry(e)
    } else {
        Fail::Fatal(e)
    }
}

/// Whether a 400's error body says the bytes the registry received are not the bytes kiln
/// sent (kiln's store verified them, so they changed on the way and another upload may pass):
/// `DIGEST_INVALID`, `MANIFEST_INVALID`, `SIZE_INVALID`, a `BLOB_UNKNOWN` named by a manifest
/// (kiln pushes every blob before the manifest, so a damaged digest in it), or no readable error
/// body at all (the answer itself was cut off on the way).
pub(crate) fn damaged_in_transit(detail: Option<&str>) -> bool {
    detail.is_none_or(|d| {
        [
            "DIGEST_INVALID",
            "MANIFEST_INVALID",
            "SIZE_INVALID",
            "BLOB_UNKNOWN",
        ]
        .iter()
        .any(|code| d.contains(code))
    })
}

impl From<RegistryError> for Fail {
    fn from(e: RegistryError) -> Self {
        classify(e)
    }
}

/// Whether a failed manifest PUT is worth sending again: a transport error or exhausted
/// retryable status (the in-place retries already ran), or bytes damaged on the way.
pub(crate) fn manifest_put_retryable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Connect { .. }
        | RegistryError::RateLimited { .. }
        | RegistryError::DigestMismatch { .. } => true,
        RegistryError::Status { status, detail, .. } => {
            matches!(status, 408 | 500 | 502 | 503 | 504)
                || (*status == 400 && damaged_in_transit(detail.as_deref()))
        }
        _ => false,
    }
}
