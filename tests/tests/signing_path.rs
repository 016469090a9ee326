//! Tollgate's own signing path (`tollgate_data_plane::signing::sign_request`) against
//! every vector that AWS's Python signer produced in `testdata/sigv4-bedrock`: the headers it adds
//! must give exactly the vector's canonical request, string to sign and Authorization header.
//! The canonical request and string to sign are recomputed from what Tollgate produced by the
//! independent verifier of the test double.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use time::OffsetDateTime;
use tollgate_data_plane::signing::{SigningKeyCache, ToSign, sign_request};
use tollgate_tests::sigv4::{self, Credentials};

#[test]
fn every_vector_is_reproduced_through_the_gateway_signing_path() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/sigv4-bedrock");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/sigv4-bedrock")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 7, "the seven checked-in vectors");
    // One signing-key cache for all vectors, as one provider key would hold it: a key cached
    // for one vector must not leak into the next (other secret, day or region).
    let cache = SigningKeyCache::default();
    for path in paths {
        let v: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let name = s("/name");
        let token = v
            .pointer("/credentials/session_token")
            .and_then(Value::as_str);
        let creds = aws_credential_types::Credentials::new(
            s("/credentials/access_key_id"),
            s("/credentials/secret_access_key"),
            token.map(str::to_owned),
            None,
            "vector",
        );
        let amz = sigv4::parse_amz_date(&s("/time")).expect("vector time");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(amz.unix_timestamp() as u64);
        let host = s("/request/host");
        let url = format!("https://{host}{}", s("/request/wire_path"));
        let headers: Vec<(String, String)> = v["request"]["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = s("/request/body");
        let region = s("/region");
        let method = s("/request/method");
        let added = sign_request(
            &cache,
            &ToSign {
                credentials: &creds,
                region: &region,
                time,
                method: &method,
                url: &url,
                headers: &header_refs,
                body: body.as_bytes(),
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let get = |n: &str| added.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get("authorization").as_deref(),
            Some(s("/expected/authorization").as_str()),
            "{name}: Authorization"
        );
        assert_eq!(
            get("x-amz-date").as_deref(),
            Some(s("/expected/x-amz-date").as_str()),
            "{name}: x-amz-date"
        );
        assert_eq!(
            get("x-amz-security-token").as_deref(),
            v.pointer("/expected/x-amz-security-token")
                .and_then(Value::as_str),
            "{name}: x-amz-security-token"
        );

        // The request as it goes on the wire: the given headers, host, and what signing added.
        let mut wire = HeaderMap::new();
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("host", host.as_str())])
        {
            wire.append(
                HeaderName::try_from(k).expect("name"),
                HeaderValue::try_from(v).expect("value"),
            );
        }
        for (k, v) in &added {
            wire.append(
                HeaderName::from_static(k),
                HeaderValue::try_from(v.as_str()).expect("value"),
            );
        }
        let mut expected_creds = Credentials::new(
            s("/credentials/access_key_id"),
            s("/credentials/secret_access_key"),
        );
        if let Some(t) = token {
            expected_creds = expected_creds.with_session_token(t);
        }
        let verified = sigv4::verify(
            &s("/request/method"),
            &s("/request/wire_path"),
            &wire,
            body.as_bytes(),
            |_| Some(expected_creds.clone()),
            OffsetDateTime::from(time),
        )
        .unwrap_or_else(|e| panic!("{name}: the double rejects Tollgate's signature: {e:?}"));
        assert_eq!(
            verified.canonical_request,
            s("/expected/canonical_request"),
            "{name}: canonical request"
        );
        assert_eq!(
            verified.string_to_sign,
            s("/expected/string_to_sign"),
            "{name}: string to sign"
        );
    }
}
