//! What identifies a retry: the caller, the `Idempotency-Key` header, and a fingerprint of
//! the request. All three are parsed once at the edge into types the rest of the code trusts.

use axum::http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};

/// The header the IETF httpapi draft (draft-ietf-httpapi-idempotency-key-header) names.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest key accepted. Stripe uses 255 too; it bounds the index entry and the log line.
pub const MAX_KEY_LEN: usize = 255;

/// Why an `Idempotency-Key` header was refused. All of these are the client's mistake: 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Idempotency-Key header is required on this endpoint")]
    Missing,
    #[error("the Idempotency-Key header is empty")]
    Empty,
    #[error("the Idempotency-Key is {len} characters long; at most {MAX_KEY_LEN} are allowed")]
    TooLong { len: usize },
    #[error("the Idempotency-Key header is malformed: {0}")]
    Malformed(&'static str),
    #[error("send exactly one Idempotency-Key header")]
    Repeated,
}

/// A validated idempotency key: 1..=255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parse the header from a request. The draft defines the value as a Structured Field
    /// string (`Idempotency-Key: "8e03978e-..."`); most clients in the wild (Stripe's SDKs)
    /// send it bare (`Idempotency-Key: 8e03978e-...`). We accept both and store the inner
    /// string, so the quoted and the bare spelling of one key are the same key.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, KeyError> {
        let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
        let value = values.next().ok_or(KeyError::Missing)?;
        if values.next().is_some() {
            return Err(KeyError::Repeated);
        }
        let raw = value
            .to_str()
            .map_err(|_| KeyError::Malformed("only printable ASCII is allowed"))?;
        Self::parse(raw)
    }

    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        let raw = raw.trim_matches(' ');
        let key = if let Some(quoted) = raw.strip_prefix('"') {
            parse_sf_string(quoted)?
        } else {
            if let Some(bad) = raw.chars().find(|c| !c.is_ascii_graphic()) {
                return Err(if bad == ' ' {
                    KeyError::Malformed("spaces are only allowed inside a quoted key")
                } else {
                    KeyError::Malformed("only printable ASCII is allowed")
                });
            }
            raw.to_string()
        };
        match key.len() {
            0 => Err(KeyError::Empty),
            len if len > MAX_KEY_LEN => Err(KeyError::TooLong { len }),
            _ => Ok(Self(key)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The rest of an RFC 8941 sf-string after its opening quote: printable ASCII, `\"` and `\\`
/// escapes, a closing quote and nothing after it.
fn parse_sf_string(rest: &str) -> Result<String, KeyError> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().is_empty() {
                    Ok(out)
                } else {
                    Err(KeyError::Malformed("text after the closing quote"))
                };
            }
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                _ => {
                    return Err(KeyError::Malformed(
                        "only \\\" and \\\\ escapes are allowed",
                    ));
                }
            },
            ' '..='~' => out.push(c),
            _ => return Err(KeyError::Malformed("only printable ASCII is allowed")),
        }
    }
    Err(KeyError::Malformed("missing closing quote"))
}

/// Who is calling: the SHA-256 of the bearer token, hex. Keys are scoped per caller, so two
/// customers who both pick key `1` never see each other's payments. We store the hash, not
/// the token: the key table would otherwise be a table of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(String);

impl Caller {
    /// `None` when the `Authorization: Bearer <token>` header is missing or malformed.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        // RFC 6750 token68 characters, bounded so a huge header can't cost us a big hash.
        let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
        if !scheme.eq_ignore_ascii_case("bearer")
            || token.is_empty()
            || token.len() > 512
            || !token.chars().all(token68)
        {
            return None;
        }
        Some(Self::from_token(token))
    }

    /// The caller a (valid) bearer token identifies.
    pub fn from_token(token: &str) -> Self {
        Self(hex(&Sha256::digest(token.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 of method, path and the *canonical* body (the parsed request re-serialised). Raw
/// bytes were turned down: a client that re-encodes its JSON on retry (other key order or
/// whitespace) would get a 422 for the very same payment.
pub fn fingerprint(method: &Method, path: &str, canonical_body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(canonical_body);
    h.finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_and_bare_spellings_are_the_same_key() {
        let bare = IdempotencyKey::parse("8e03978e-40d5").unwrap();
        let quoted = IdempotencyKey::parse("\"8e03978e-40d5\"").unwrap();
        assert_eq!(bare, quoted);
        assert_eq!(
            IdempotencyKey::parse(r#""a \"b\" \\c""#).unwrap().as_str(),
            r#"a "b" \c"#
        );
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert_eq!(IdempotencyKey::parse(""), Err(KeyError::Empty));
        assert_eq!(IdempotencyKey::parse("\"\""), Err(KeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(KeyError::TooLong { len: 256 })
        );
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(matches!(
            IdempotencyKey::parse("a b"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            IdempotencyKey::parse("\"open"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            IdempotencyKey::parse("\"a\"b"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            IdempotencyKey::parse("\"\\n\""),
            Err(KeyError::Malformed(_))
        ));
    }
}
