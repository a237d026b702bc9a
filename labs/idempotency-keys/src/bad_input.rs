//! What a new user (or a fuzzer) sends: a corpus of bad requests, each with the 4xx and
//! error code it must get. The lab run sends it and reports how many got a 5xx; the tests
//! assert every answer exactly. Nothing in it may be stored or reach the provider.
//!
//! It covers every endpoint that takes a body: malformed JSON, a 10 MB body, no or the wrong
//! content type, the wrong shape, and a NUL character in *every* string field (Postgres
//! cannot store `\u0000` in `text` or `jsonb`: the webhook inbox answered 500 for
//! `"id":"evt\u0000x"` until [`labkit::http::JsonBody`] refused it at the edge). On the
//! payment routes it adds tampered and oversized `Idempotency-Key`s and bearer tokens,
//! some of them as raw bytes no HTTP library will send (a NUL or DEL in a header).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The caller every bad request claims to be; nothing may be stored or charged for it.
pub const TOKEN: &str = "bad-input";

/// One bad request and the answer it must get.
#[derive(Debug, Clone)]
pub struct BadRequest {
    /// What is wrong with it, for messages.
    pub what: String,
    pub path: &'static str,
    pub wire: Wire,
    /// The status and `error.code` it must get.
    pub status: u16,
    pub code: &'static str,
}

#[derive(Debug, Clone)]
pub enum Wire {
    /// A `POST` with these headers (bearer token and idempotency key included) and body.
    Post {
        headers: Vec<(&'static str, Vec<u8>)>,
        body: Vec<u8>,
    },
    /// Bytes written to the socket as they are.
    Raw(Vec<u8>),
}

/// What came back: the status and `error.code` (`None` when the body was not a JSON error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub code: Option<String>,
}

const PAYMENT_ROUTES: [&str; 3] = [
    "/v1/payments",
    "/lab/no-key/payments",
    "/lab/naive/payments",
];
const JSON: &[u8] = b"application/json";

/// The corpus.
pub fn corpus() -> Vec<BadRequest> {
    let mut out = Vec::new();
    // Every route with a body, and one valid body for it; the string fields of that body.
    let payment = r#"{"amount_cents":1299,"currency":"usd","source":"tok_visa"}"#;
    let mut routes: Vec<(&'static str, &str, Vec<&str>)> = PAYMENT_ROUTES
        .iter()
        .map(|p| (*p, payment, vec!["currency", "source"]))
        .collect();
    routes.extend([
        (
            "/v1/webhooks/provider",
            r#"{"id":"evt_bad","type":"charge.succeeded","data":{"charge_id":"ch_1","note":"x"}}"#,
            vec!["id", "type", "data.charge_id", "data.note"],
        ),
        (
            "/lab/faults",
            r#"{"crash_at":"after_finished"}"#,
            vec!["crash_at"],
        ),
        (
            "/lab/provider/v1/charges",
            r#"{"amount_cents":1,"currency":"usd","source":"tok_visa","customer":"bad-input"}"#,
            vec!["currency", "source", "customer"],
        ),
        ("/lab/provider/control", r#"{"latency_ms":0}"#, vec![]),
    ]);
    for (path, valid, strings) in routes {
        let body = |what: String, ct: Option<&[u8]>, body: Vec<u8>, status, code| BadRequest {
            what,
            path,
            wire: post(ct, None, body),
            status,
            code,
        };
        out.push(body(
            "malformed JSON".into(),
            Some(JSON),
            valid[..valid.len() / 2].into(),
            400,
            "malformed_json",
        ));
        out.push(body(
            "a 10 MB body".into(),
            Some(JSON),
            ten_megabytes(),
            413,
            "body_too_large",
        ));
        out.push(body(
            "text/plain".into(),
            Some(b"text/plain"),
            valid.into(),
            415,
            "unsupported_media_type",
        ));
        out.push(body(
            "no content type".into(),
            None,
            valid.into(),
            415,
            "unsupported_media_type",
        ));
        out.push(body(
            "a JSON array".into(),
            Some(JSON),
            b"[]".to_vec(),
            422,
            "invalid_body",
        ));
        let with_nul = |field: &str| {
            let mut v: serde_json::Value = serde_json::from_str(valid).expect("valid body");
            let slot = field.split('.').fold(&mut v, |v, k| &mut v[k]);
            *slot = format!("{}\0x", slot.as_str().unwrap_or("")).into();
            serde_json::to_vec(&v).expect("json")
        };
        for field in strings {
            out.push(body(
                format!("NUL in {field}"),
                Some(JSON),
                with_nul(field),
                400,
                "invalid_text",
            ));
        }
        let mut v: serde_json::Value = serde_json::from_str(valid).expect("valid body");
        v["nul\0key"] = 1.into();
        out.push(body(
            "NUL in a key".into(),
            Some(JSON),
            serde_json::to_vec(&v).expect("json"),
            400,
            "invalid_text",
        ));
    }

    // curl's way with a big body: announce it, wait for `100 Continue`, which never comes.
    for path in ["/v1/payments", "/v1/webhooks/provider"] {
        out.push(BadRequest {
            what: "a 10 MB body announced with Expect: 100-continue (raw)".into(),
            path,
            wire: Wire::Raw(
                format!(
                    "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
                     authorization: Bearer {TOKEN}\r\nidempotency-key: k\r\n\
                     content-type: application/json\r\ncontent-length: {}\r\n\
                     expect: 100-continue\r\n\r\n",
                    10 * 1024 * 1024
                )
                .into_bytes(),
            ),
            status: 413,
            code: "body_too_large",
        });
    }

    // Keys and tokens: tampered, oversized, or bytes no client library sends.
    let payment = payment.as_bytes().to_vec();
    for path in ["/v1/payments", "/lab/naive/payments"] {
        let key = |what: &str, key: &[u8], status, code| BadRequest {
            what: format!("Idempotency-Key {what}"),
            path,
            wire: post(Some(JSON), Some(key), payment.clone()),
            status,
            code,
        };
        let k256 = vec![b'k'; 256];
        let k100k = vec![b'k'; 100 * 1024];
        for (what, bad) in [
            ("of 256 characters", k256.as_slice()),
            ("of 100 KB", k100k.as_slice()),
            ("unterminated", b"\"order-1".as_slice()),
            ("with text after the quote", b"\"order-1\"x"),
            ("empty and quoted", b"\"\""),
            ("with a bad escape", br#""a\nb""#),
            ("with a space", b"order 1"),
            ("with a tab", b"order\t1"),
            ("in UTF-8", "clé-1".as_bytes()),
        ] {
            out.push(key(what, bad, 400, "idempotency_key_invalid"));
        }
        out.push(key(
            "of 1 MB",
            &vec![b'k'; 1024 * 1024],
            431,
            "headers_too_large",
        ));
        for (what, byte) in [("NUL", 0u8), ("DEL", 0x7f)] {
            out.push(BadRequest {
                what: format!("Idempotency-Key with a {what} byte (raw)"),
                path,
                wire: Wire::Raw(raw_post(
                    path,
                    &[b"order".as_slice(), &[byte], b"1"].concat(),
                )),
                status: 400,
                code: "bad_request",
            });
        }
    }
    for path in PAYMENT_ROUTES {
        out.push(BadRequest {
            what: "a bearer token with a NUL byte (raw)".into(),
            path,
            wire: Wire::Raw(
                format!(
                    "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
                     authorization: Bearer a\0b\r\n\
                     idempotency-key: k\r\ncontent-type: application/json\r\n\
                     content-length: 2\r\n\r\n{{}}"
                )
                .into_bytes(),
            ),
            status: 400,
            code: "bad_request",
        });
        out.push(BadRequest {
            what: "a bearer token in UTF-8".into(),
            path,
            wire: Wire::Post {
                headers: vec![
                    ("authorization", "Bearer clé".as_bytes().to_vec()),
                    ("idempotency-key", b"k".to_vec()),
                    ("content-type", JSON.to_vec()),
                ],
                body: payment.clone(),
            },
            status: 401,
            code: "unauthorized",
        });
    }
    out
}

fn post(content_type: Option<&[u8]>, key: Option<&[u8]>, body: Vec<u8>) -> Wire {
    let mut headers = vec![("authorization", format!("Bearer {TOKEN}").into_bytes())];
    headers.push(("idempotency-key", key.unwrap_or(b"bad-input-1").to_vec()));
    if let Some(ct) = content_type {
        headers.push(("content-type", ct.to_vec()));
    }
    Wire::Post { headers, body }
}

fn raw_post(path: &str, key: &[u8]) -> Vec<u8> {
    let body = br#"{"amount_cents":1299,"currency":"usd","source":"tok_visa"}"#;
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         authorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nidempotency-key: ",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// A syntactically valid JSON document of 10 MB (a long string).
fn ten_megabytes() -> Vec<u8> {
    let mut b = Vec::with_capacity(10 * 1024 * 1024 + 2);
    b.push(b'"');
    b.resize(10 * 1024 * 1024 + 1, b'a');
    b.push(b'"');
    b
}

/// Send one bad request to the service at `addr` and read its answer.
pub async fn send(http: &reqwest::Client, addr: SocketAddr, bad: &BadRequest) -> Answer {
    let (status, body) = match &bad.wire {
        Wire::Post { headers, body } => {
            let mut req = http
                .post(format!("http://{addr}{}", bad.path))
                .body(body.clone());
            for (name, value) in headers {
                req = req.header(*name, value.as_slice());
            }
            match req.send().await {
                Ok(r) => (r.status().as_u16(), r.bytes().await.unwrap_or_default()),
                // A transport error is a wrong answer too.
                Err(_) => (0, Default::default()),
            }
        }
        Wire::Raw(bytes) => raw(addr, bytes).await.unwrap_or((0, Default::default())),
    };
    let code = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    Answer { status, code }
}

/// One request as raw bytes on a fresh connection; the status and body of the answer.
async fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<(u16, bytes::Bytes)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut buf = Vec::new();
    // The server closes the connection after a request it could not parse.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body.into()))
}
