//! The cursor decoder faces the internet: it must never panic, and a cursor that was altered
//! in any way must be refused.

use chrono::DateTime;
use lab_keyset_pagination::cursor::{Cursor, CursorCodec, CursorError};
use lab_keyset_pagination::filter::{Filter, Status};
use lab_keyset_pagination::keyset::SortKey;
use proptest::prelude::*;

fn codec() -> CursorCodec {
    CursorCodec::from_secret([42; 32])
}

fn any_cursor() -> impl Strategy<Value = Cursor> {
    (
        // Microseconds within Postgres' and chrono's common range.
        -200_000_000_000_000_000_i64..200_000_000_000_000_000,
        any::<i64>(),
        prop::option::of(prop::sample::select(Status::ALL.to_vec())),
        prop::option::of(any::<i32>()),
    )
        .prop_map(|(micros, id, status, tenant_id)| Cursor {
            after: SortKey {
                created_at: DateTime::from_timestamp_micros(micros).unwrap(),
                id,
            },
            filter: Filter { status, tenant_id },
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn decoding_arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = codec().decode(&text);
    }

    #[test]
    fn decoding_arbitrary_base64_never_panics_and_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        prop_assert!(codec().decode(&text).is_err());
    }

    #[test]
    fn every_cursor_round_trips(cursor in any_cursor()) {
        let text = codec().encode(&cursor);
        prop_assert_eq!(codec().decode(&text), Ok(cursor));
    }

    #[test]
    fn any_changed_byte_is_refused(cursor in any_cursor(), at in 0usize..55, flip in 1u8..=255) {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut bytes = engine.decode(codec().encode(&cursor)).unwrap();
        bytes[at] ^= flip;
        let err = codec().decode(&engine.encode(&bytes)).unwrap_err();
        prop_assert!(matches!(err, CursorError::Signature | CursorError::Version), "{err:?}");
    }

    #[test]
    fn another_servers_cursor_is_refused(cursor in any_cursor()) {
        let text = CursorCodec::from_secret([1; 32]).encode(&cursor);
        prop_assert_eq!(codec().decode(&text), Err(CursorError::Signature));
    }
}

#[test]
fn a_truncated_or_extended_cursor_is_refused() {
    let text = codec().encode(&Cursor {
        after: SortKey {
            created_at: DateTime::from_timestamp_micros(1_735_689_600_000_000).unwrap(),
            id: 7,
        },
        filter: Filter::ALL,
    });
    assert_eq!(text.len(), 74);
    assert!(codec().decode(&text[..text.len() - 3]).is_err());
    assert!(codec().decode(&format!("{text}AAAA")).is_err());
}
