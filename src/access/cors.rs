//! Will the platform's web page be allowed to show a signed URL? A browser asks the bucket
//! first (a CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`) when
//! the page reads the object from script (`fetch`, a canvas, a video player sending `Range`),
//! and a bucket without a rule for the page's origin answers 403: the asset never shows,
//! though the URL itself works. `asset-worker check --origin` sends that preflight and, when
//! it fails, prints the bucket configuration that fixes it, in the provider's own format.

use std::time::Duration;

use serde_json::{Value, json};

use super::{AccessError, SignedUrl};

/// A preflight gets this long (connect, send, answer): it is one small request.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers a labeling page's reads send or read: `Range` (video and audio players, PDF
/// viewers), and the size, type and validators of the answer.
const REQUEST_HEADERS: [&str; 1] = ["Range"];
const EXPOSED_HEADERS: [&str; 5] =
    ["Content-Length", "Content-Range", "Content-Type", "ETag", "Accept-Ranges"];
/// How long a browser may cache a positive preflight.
const MAX_AGE_SECONDS: u32 = 3600;

/// What the bucket answered to a browser's preflight from `origin`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Preflight {
    pub origin: String,
    /// Whether a browser on `origin` may GET the URL: a 2xx answer whose
    /// `Access-Control-Allow-Origin` is the origin (or `*`) and whose
    /// `Access-Control-Allow-Methods`, if sent, include GET.
    pub allowed: bool,
    pub http_status: u16,
    /// `Access-Control-Allow-Origin` as answered, if any.
    pub allow_origin: Option<String>,
}

/// Refuses anything a browser would not send as `Origin`: a scheme and a host (and port),
/// without path, query or trailing slash.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|host| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    });
    if host_ok {
        Ok(())
    } else {
        Err(format!(
            "is {origin:?}; expected a web origin as browsers send it: https://HOST or https://HOST:PORT, \
             without a path or a trailing slash"
        ))
    }
}

/// Sends a browser's preflight for a GET of `url` from `origin` to the URL's host, with no
/// credential but the URL's own query (what a browser sends).
pub async fn preflight(url: &SignedUrl, origin: &str) -> Result<Preflight, AccessError> {
    let client = reqwest::Client::builder().timeout(PREFLIGHT_TIMEOUT).build().map_err(|e| {
        AccessError::Misconfigured(format!("the HTTP client for the CORS preflight can't start: {e}"))
    })?;
    let response = client
        .request(reqwest::Method::OPTIONS, url.expose())
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .map_err(|e| {
            AccessError::Transient(format!(
                "the CORS preflight to {} got no answer: {}",
                url.redacted(),
                e.without_url()
            ))
        })?;
    let header =
        |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let allow_origin = header("access-control-allow-origin");
    let allow_methods = header("access-control-allow-methods");
    let status = response.status().as_u16();
    Ok(Preflight {
        origin: origin.to_owned(),
        allowed: is_allowed(status, allow_origin.as_deref(), allow_methods.as_deref(), origin),
        http_status: status,
        allow_origin,
    })
}

/// The browser's rule for a preflight's answer (Fetch standard, CORS check).
fn is_allowed(status: u16, allow_origin: Option<&str>, allow_methods: Option<&str>, origin: &str) -> bool {
    let origin_ok = allow_origin.is_some_and(|allowed| allowed.trim() == "*" || allowed.trim() == origin);
    // GET is a CORS-safelisted method: an answer that lists no methods still allows it.
    let method_ok = allow_methods.is_none_or(|methods| {
        methods.split(',').map(str::trim).any(|m| m == "*" || m.eq_ignore_ascii_case("GET"))
    });
    (200..300).contains(&status) && origin_ok && method_ok
}

/// The S3 bucket CORS configuration that lets `origin` read objects
/// (`aws s3api put-bucket-cors --cors-configuration file://cors.json`).
pub fn s3_configuration(origin: &str) -> Value {
    json!({
        "CORSRules": [{
            "AllowedOrigins": [origin],
            "AllowedMethods": ["GET", "HEAD"],
            "AllowedHeaders": REQUEST_HEADERS,
            "ExposeHeaders": EXPOSED_HEADERS,
            "MaxAgeSeconds": MAX_AGE_SECONDS,
        }]
    })
}

/// The GCS bucket CORS configuration (`cors.json` of `gcloud storage buckets update
/// --cors-file`) that lets `origin` read objects. GCS's `responseHeader` lists both the
/// request headers it allows and the response headers it exposes.
pub fn gcs_configuration(origin: &str) -> Value {
    let headers: Vec<&str> = REQUEST_HEADERS.iter().chain(EXPOSED_HEADERS.iter()).copied().collect();
    json!([{
        "origin": [origin],
        "method": ["GET", "HEAD"],
        "responseHeader": headers,
        "maxAgeSeconds": MAX_AGE_SECONDS,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preflight_passes_only_as_a_browser_would_pass_it() {
        let origin = "https://app.example";
        assert!(is_allowed(200, Some(origin), Some("GET, HEAD"), origin));
        assert!(is_allowed(204, Some("*"), None, origin));
        assert!(is_allowed(200, Some(origin), Some("get"), origin));
        assert!(!is_allowed(403, None, None, origin), "no rule");
        assert!(!is_allowed(200, Some("https://other.example"), Some("GET"), origin), "another origin");
        assert!(!is_allowed(200, Some(origin), Some("PUT, POST"), origin), "not GET");
        assert!(!is_allowed(200, None, Some("GET"), origin), "no Access-Control-Allow-Origin");
        assert!(!is_allowed(500, Some(origin), Some("GET"), origin));
    }

    #[test]
    fn origins_are_what_browsers_send() {
        for good in ["https://app.example", "http://localhost:3000", "https://a-b.example.co.uk:8443"] {
            assert!(check_origin(good).is_ok(), "{good}");
        }
        for bad in
            ["app.example", "https://app.example/", "https://app.example/page", "https://", "ftp://x", ""]
        {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_configurations_allow_the_origin_to_get_and_range() {
        let s3 = s3_configuration("https://app.example");
        let rule = &s3["CORSRules"][0];
        assert_eq!(rule["AllowedOrigins"], json!(["https://app.example"]));
        assert_eq!(rule["AllowedMethods"], json!(["GET", "HEAD"]));
        assert_eq!(rule["AllowedHeaders"], json!(["Range"]));
        let gcs = gcs_configuration("https://app.example");
        assert_eq!(gcs[0]["origin"], json!(["https://app.example"]));
        assert_eq!(gcs[0]["method"], json!(["GET", "HEAD"]));
        assert!(gcs[0]["responseHeader"].as_array().unwrap().contains(&json!("Range")));
    }
}
