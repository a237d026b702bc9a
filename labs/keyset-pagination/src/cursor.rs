//! The opaque cursor: where the next page starts, and the filter it was issued for.
//!
//! Wire format (then base64url without padding, 74 characters):
//!
//! ```text
//! byte 0       version (1)
//! bytes 1..9   created_at of the last row served, microseconds since the epoch (i64 BE)
//! bytes 9..17  id of the last row served (i64 BE)
//! byte 17      status filter (0 = none, 1..=4)
//! byte 18      tenant filter present (0/1)
//! bytes 19..23 tenant_id (i32 BE, 0 when absent)
//! bytes 23..55 HMAC-SHA256 over bytes 0..23 with the server's secret
//! ```
//!
//! Why signed: a client that can edit the cursor can aim it anywhere (or at another filter's
//! rows), and clients that can read it start depending on its layout. Signing makes it
//! tamper-evident and keeps it ours to change (the version byte). Encryption (AES-GCM) was
//! turned down: the contents are a timestamp and id the client has already seen in the page.
//! Why binary, not JSON: fixed length, one bounds check, nothing for a fuzzer to recurse into.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::filter::{Filter, Status};
use crate::keyset::SortKey;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 23;
const TAG_LEN: usize = 32;
const TOKEN_LEN: usize = PAYLOAD_LEN + TAG_LEN;
/// Anything longer than a real token is rejected before it is decoded.
const MAX_TEXT_LEN: usize = 128;

/// A decoded, verified cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last row of the previous page; the next page starts strictly after it.
    pub after: SortKey,
    /// The filter the cursor was issued for. Using it with another filter is an error: the
    /// position would silently mean something else.
    pub filter: Filter,
}

/// Why a cursor string was rejected. All of them are the client's fault (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor is not a token this API issued (bad encoding)")]
    Encoding,
    #[error("cursor version is not supported")]
    Version,
    #[error("cursor has the wrong length")]
    Length,
    #[error("cursor signature does not match: it was altered or issued by another server")]
    Signature,
    #[error("cursor contents are invalid")]
    Contents,
}

/// Signs and verifies cursors with a per-server secret.
///
/// A fresh random secret per process means cursors die on restart; a fleet behind a load
/// balancer would share one secret from configuration (and rotate by accepting two).
#[derive(Clone)]
pub struct CursorCodec {
    secret: [u8; 32],
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec { secret: <redacted> }")
    }
}

impl CursorCodec {
    /// A codec with a random secret.
    pub fn random() -> Self {
        Self {
            secret: rand::random(),
        }
    }

    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length")
    }

    /// The token for `cursor`.
    pub fn encode(&self, cursor: &Cursor) -> String {
        let mut buf = [0u8; TOKEN_LEN];
        buf[0] = VERSION;
        buf[1..9].copy_from_slice(&cursor.after.created_at.timestamp_micros().to_be_bytes());
        buf[9..17].copy_from_slice(&cursor.after.id.to_be_bytes());
        buf[17] = cursor.filter.status.map_or(0, Status::code);
        buf[18] = u8::from(cursor.filter.tenant_id.is_some());
        buf[19..23].copy_from_slice(&cursor.filter.tenant_id.unwrap_or(0).to_be_bytes());
        let mut mac = self.mac();
        mac.update(&buf[..PAYLOAD_LEN]);
        buf[PAYLOAD_LEN..].copy_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Parse and verify a token. Never panics, whatever the input (fuzzed in
    /// `tests/cursor_fuzz.rs`).
    pub fn decode(&self, text: &str) -> Result<Cursor, CursorError> {
        if text.is_empty() || text.len() > MAX_TEXT_LEN {
            return Err(CursorError::Encoding);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Encoding)?;
        if bytes.first() != Some(&VERSION) {
            return Err(CursorError::Version);
        }
        if bytes.len() != TOKEN_LEN {
            return Err(CursorError::Length);
        }
        let (payload, tag) = bytes.split_at(PAYLOAD_LEN);
        let mut mac = self.mac();
        mac.update(payload);
        // `verify_slice` compares in constant time: a byte-by-byte `==` would let a client
        // forge a tag one byte at a time by timing the 400s.
        mac.verify_slice(tag).map_err(|_| CursorError::Signature)?;

        // Signed by us, so these only fail if our own encoder has a bug; still no panics.
        let field = |r: std::ops::Range<usize>| payload.get(r).ok_or(CursorError::Contents);
        let micros =
            i64::from_be_bytes(field(1..9)?.try_into().map_err(|_| CursorError::Contents)?);
        let id = i64::from_be_bytes(
            field(9..17)?
                .try_into()
                .map_err(|_| CursorError::Contents)?,
        );
        let status = match payload[17] {
            0 => None,
            code => Some(Status::from_code(code).ok_or(CursorError::Contents)?),
        };
        let tenant = i32::from_be_bytes(
            field(19..23)?
                .try_into()
                .map_err(|_| CursorError::Contents)?,
        );
        let tenant_id = match payload[18] {
            0 => None,
            1 => Some(tenant),
            _ => return Err(CursorError::Contents),
        };
        let created_at = DateTime::from_timestamp_micros(micros).ok_or(CursorError::Contents)?;
        Ok(Cursor {
            after: SortKey { created_at, id },
            filter: Filter { status, tenant_id },
        })
    }
}
