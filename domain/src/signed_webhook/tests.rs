use super::*;
use proptest::prelude::*;

const SECRET: &[u8] = b"whsec-test-0123456789";
const NOW: i64 = 1_800_000_000;

/// Signs as Chatwoot does, independently of the verifier.
fn sign(secret: &[u8], ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn delivery<'a>(body: &'a [u8], ts: &'a str, sig: &'a str) -> SignedDelivery<'a> {
    SignedDelivery {
        body,
        timestamp: Some(ts),
        signature: Some(sig),
        delivery_id: Some("0b7c7a4e-6d3c-4f7e-9d55-1f2d3c4b5a69"),
    }
}

#[test]
fn a_signed_fresh_delivery_verifies() {
    let ts = NOW.to_string();
    let sig = sign(SECRET, &ts, br#"{"event":"contact_updated"}"#);
    let ok = verify_chatwoot(
        SECRET,
        delivery(br#"{"event":"contact_updated"}"#, &ts, &sig),
        NOW,
    );
    assert_eq!(ok.map(|v| v.timestamp), Ok(NOW));
}

#[test]
fn the_window_is_five_minutes_either_way() {
    for (offset, expected) in [
        (-WINDOW_SECS, true),
        (WINDOW_SECS, true),
        (-WINDOW_SECS - 1, false),
        (WINDOW_SECS + 1, false),
    ] {
        let ts = (NOW + offset).to_string();
        let sig = sign(SECRET, &ts, b"{}");
        let got = verify_chatwoot(SECRET, delivery(b"{}", &ts, &sig), NOW);
        assert_eq!(got.is_ok(), expected, "offset {offset}: {got:?}");
        if !expected {
            assert_eq!(got, Err(SignatureError::OutsideWindow));
        }
    }
}

#[test]
fn missing_or_malformed_headers_are_refused() {
    let ts = NOW.to_string();
    let sig = sign(SECRET, &ts, b"{}");
    let full = delivery(b"{}", &ts, &sig);
    let cases = [
        SignedDelivery {
            timestamp: None,
            ..full
        },
        SignedDelivery {
            signature: None,
            ..full
        },
        SignedDelivery {
            delivery_id: None,
            ..full
        },
        SignedDelivery {
            delivery_id: Some(" "),
            ..full
        },
        SignedDelivery {
            timestamp: Some("yesterday"),
            ..full
        },
        SignedDelivery {
            signature: Some(&sig[7..]),
            ..full
        },
        SignedDelivery {
            signature: Some("sha256=zz"),
            ..full
        },
    ];
    for case in cases {
        assert_eq!(
            verify_chatwoot(SECRET, case, NOW),
            Err(SignatureError::Missing),
            "{case:?}"
        );
    }
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    for ts in [i64::MIN.to_string(), i64::MAX.to_string()] {
        let sig = sign(SECRET, &ts, b"{}");
        let got = verify_chatwoot(SECRET, delivery(b"{}", &ts, &sig), NOW);
        assert_eq!(got, Err(SignatureError::OutsideWindow));
    }
}

#[test]
fn an_empty_secret_verifies_nothing() {
    let ts = NOW.to_string();
    let sig = sign(b"", &ts, b"{}");
    assert_eq!(
        verify_chatwoot(b"", delivery(b"{}", &ts, &sig), NOW),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn errors_name_no_secret() {
    for e in [
        SignatureError::Missing,
        SignatureError::OutsideWindow,
        SignatureError::Mismatch,
    ] {
        assert!(!e.to_string().contains("whsec"));
    }
}

proptest! {
    #[test]
    fn any_signed_body_and_timestamp_verifies(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        offset in -WINDOW_SECS..=WINDOW_SECS,
    ) {
        let ts = (NOW + offset).to_string();
        let sig = sign(SECRET, &ts, &body);
        prop_assert!(verify_chatwoot(SECRET, delivery(&body, &ts, &sig), NOW).is_ok());
    }

    #[test]
    fn any_single_byte_change_does_not_verify(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        offset in -WINDOW_SECS..=WINDOW_SECS,
        which in 0usize..3,
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let ts = (NOW + offset).to_string();
        let sig = sign(SECRET, &ts, &body);
        let (mut body2, mut ts2, mut secret2) = (body.clone(), ts.clone().into_bytes(), SECRET.to_vec());
        match which {
            0 => { let i = at.index(body2.len()); body2[i] ^= flip; }
            1 => { let i = at.index(ts2.len()); ts2[i] ^= flip; }
            _ => { let i = at.index(secret2.len()); secret2[i] ^= flip; }
        }
        let ts2 = String::from_utf8_lossy(&ts2).into_owned();
        prop_assert!(verify_chatwoot(&secret2, delivery(&body2, &ts2, &sig), NOW).is_err());
    }

    #[test]
    fn any_single_byte_change_of_the_signature_does_not_verify(
        at in 7usize..71,
        flip in 1u8..=127,
    ) {
        let ts = NOW.to_string();
        let sig = sign(SECRET, &ts, b"{}");
        let mut bytes = sig.clone().into_bytes();
        bytes[at] ^= flip;
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        // Hex is read case-insensitively: `a` and `A` are the same MAC byte.
        prop_assume!(!changed.eq_ignore_ascii_case(&sig));
        let verdict = verify_chatwoot(SECRET, delivery(b"{}", &ts, &changed), NOW);
        prop_assert!(verdict.is_err());
    }
}
