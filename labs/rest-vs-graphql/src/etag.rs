//! HTTP revalidation for GET responses (REST resources and persisted GraphQL queries alike):
//! a strong `ETag` that is a hash of the body, `Cache-Control: no-cache` (store it, but ask
//! before reusing it), and `304 Not Modified` with no body when `If-None-Match` matches.
//!
//! The honest caveat, measured by the lab: the server still runs every query to build the
//! body it hashes, so a 304 saves bytes and client parsing, not database work. Saving the
//! queries needs a validator that is cheaper than the body (a version column, `max(updated_at)`),
//! which this lab leaves out.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// `"<first 16 bytes of sha256(body), hex>"` — strong: equal bodies, equal tags.
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Does `If-None-Match` name this tag? A list (`"a", "b"`), weak tags (`W/"a"`, compared
/// weakly as RFC 9110 says for If-None-Match) and `*` all count. A header that is not
/// visible ASCII is ignored, as if absent.
pub fn if_none_match_hits(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// A 200 with the body and its tag, or a bodiless 304 when the client already has it.
pub fn respond(request: &HeaderMap, content_type: &'static str, body: Vec<u8>) -> Response {
    let etag = etag_of(&body);
    let tag = HeaderValue::from_str(&etag).expect("hex in quotes is a valid header value");
    let no_cache = HeaderValue::from_static("no-cache");
    if if_none_match_hits(request, &etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, tag), (header::CACHE_CONTROL, no_cache)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::ETAG, tag),
            (header::CACHE_CONTROL, no_cache),
        ],
        Body::from(body),
    )
        .into_response()
}

/// JSON-serialize `value` and answer with [`respond`].
pub fn json<T: serde::Serialize>(request: &HeaderMap, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("our view types serialize");
    respond(request, "application/json", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = etag_of(b"hello");
        let mut h = HeaderMap::new();
        assert!(!if_none_match_hits(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"nope\", W/{tag}")).unwrap(),
        );
        assert!(if_none_match_hits(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match_hits(&h, &tag));
        assert_ne!(etag_of(b"hello"), etag_of(b"hello!"));
    }
}
