//! The SigV4 verifier against vectors produced by AWS's own signers (botocore, in
//! `testdata/sigv4-bedrock`; aws-sigv4 = botocore, protocols.md Appendix A1), and the ways a
//! request must fail.

use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use time::OffsetDateTime;
use tollgate_tests::sigv4::{self, Credentials, SigError};

struct Vector {
    name: String,
    creds: Credentials,
    region: String,
    time: OffsetDateTime,
    method: String,
    wire_path: String,
    body: Vec<u8>,
    /// Request headers as signed: given headers + host + x-amz-date (+ token).
    headers: HeaderMap,
    expected: Value,
}

fn vectors() -> Vec<Vector> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/sigv4-bedrock");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/sigv4-bedrock exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 7,
        "expected the 7 checked-in vectors, found {}",
        paths.len()
    );
    paths
        .iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(p).expect("read vector"))
                .expect("vector is JSON");
            let s = |ptr: &str| {
                v.pointer(ptr)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{ptr} in {p:?}"))
                    .to_owned()
            };
            let mut creds = Credentials::new(
                s("/credentials/access_key_id"),
                s("/credentials/secret_access_key"),
            );
            if let Some(token) = v
                .pointer("/credentials/session_token")
                .and_then(Value::as_str)
            {
                creds = creds.with_session_token(token);
            }
            let time = sigv4::parse_amz_date(&s("/time")).expect("vector time parses");
            let mut headers = HeaderMap::new();
            for (k, val) in v
                .pointer("/request/headers")
                .and_then(Value::as_object)
                .expect("headers")
            {
                headers.insert(
                    HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_str(val.as_str().expect("header value"))
                        .expect("header value"),
                );
            }
            headers.insert(
                "host",
                HeaderValue::from_str(&s("/request/host")).expect("host"),
            );
            headers.insert(
                "x-amz-date",
                HeaderValue::from_str(&s("/expected/x-amz-date")).expect("date"),
            );
            if let Some(token) = v
                .pointer("/expected/x-amz-security-token")
                .and_then(Value::as_str)
            {
                headers.insert(
                    "x-amz-security-token",
                    HeaderValue::from_str(token).expect("token"),
                );
            }
            Vector {
                name: s("/name"),
                creds,
                region: s("/region"),
                time,
                method: s("/request/method"),
                wire_path: s("/request/wire_path"),
                body: s("/request/body").into_bytes(),
                headers,
                expected: v["expected"].clone(),
            }
        })
        .collect()
}

fn with_authorization(v: &Vector, authorization: &str) -> HeaderMap {
    let mut h = v.headers.clone();
    h.insert(
        "authorization",
        HeaderValue::from_str(authorization).expect("authorization"),
    );
    h
}

fn expected(v: &Vector, key: &str) -> String {
    v.expected[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {}", v.name))
        .to_owned()
}

fn lookup(creds: &Credentials) -> impl Fn(&str) -> Option<Credentials> + '_ {
    move |akid| (akid == creds.access_key_id).then(|| creds.clone())
}

fn verify_vector(
    v: &Vector,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    creds: &Credentials,
    now: OffsetDateTime,
) -> Result<sigv4::VerifiedRequest, SigError> {
    sigv4::verify(&v.method, path, headers, body, lookup(creds), now)
}

#[test]
fn every_vector_reproduces_canonical_request_string_to_sign_and_verifies() {
    for v in vectors() {
        let headers = with_authorization(&v, &expected(&v, "authorization"));
        let verified = verify_vector(&v, &headers, &v.wire_path, &v.body, &v.creds, v.time)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(
            verified.canonical_request,
            expected(&v, "canonical_request"),
            "{}",
            v.name
        );
        assert_eq!(
            verified.string_to_sign,
            expected(&v, "string_to_sign"),
            "{}",
            v.name
        );
        assert_eq!(verified.region, v.region, "{}", v.name);
        assert_eq!(verified.access_key_id, v.creds.access_key_id);
        assert_eq!(verified.session_token, v.creds.session_token, "{}", v.name);
    }
}

#[test]
fn the_test_signer_reproduces_every_vector_authorization() {
    for v in vectors() {
        let mut headers = HeaderMap::new();
        for name in ["content-type", "accept", "host"] {
            headers.insert(name, v.headers[name].clone());
        }
        let auth = sigv4::sign(
            &v.method,
            &v.wire_path,
            &mut headers,
            &v.body,
            &v.creds,
            &v.region,
            v.time,
        );
        assert_eq!(auth, expected(&v, "authorization"), "{}", v.name);
    }
}

#[test]
fn appendix_a1_vectors_verify() {
    // protocols.md Appendix A1: aws-sigv4 1.6.4 and botocore 1.43.11 agree on these.
    let creds = Credentials::new(
        tollgate_tests::EXAMPLE_ACCESS_KEY_ID,
        tollgate_tests::EXAMPLE_SECRET_ACCESS_KEY,
    );
    let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let now = sigv4::parse_amz_date("20150830T123600Z").expect("date");
    for (path, canonical_uri, signature) in [
        (
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
            "75cefbb2917d9b7183b4f40c26d37d52decdf95ccfed3696d776dd135fc48acb",
        ),
        (
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%253A0/invoke",
            "810f485bdff2cd2a8dcc045837b3caaaa6467db96102715c733529d255499ae9",
        ),
        (
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123/invoke-with-response-stream",
            "/model/arn%253Aaws%253Abedrock%253Aus-east-1%253A123456789012%253Aapplication-inference-profile%252Fabc123/invoke-with-response-stream",
            "925ebbe49452a8ea47c2e5aefc8dcef94988a62e1f339e740eb21222add8bc15",
        ),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "host",
            HeaderValue::from_static("bedrock-runtime.us-east-1.amazonaws.com"),
        );
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
        );
        headers.insert("authorization", HeaderValue::from_str(&auth).expect("auth"));
        let verified = sigv4::verify("POST", path, &headers, body, lookup(&creds), now)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            verified.canonical_request.lines().nth(1),
            Some(canonical_uri)
        );
    }
}

fn first_vector(name: &str) -> Vector {
    vectors()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("vector {name}"))
}

fn assert_rejected(
    result: Result<sigv4::VerifiedRequest, SigError>,
    error_type: &str,
    message_part: &str,
) -> SigError {
    let err = result.expect_err("request must be rejected");
    assert_eq!(err.error_type(), error_type, "{err}");
    assert!(
        err.to_string().contains(message_part),
        "{err:?} does not mention {message_part:?}"
    );
    err
}

#[test]
fn tampered_body_is_rejected() {
    let v = first_vector("invoke-inference-profile");
    let headers = with_authorization(&v, &expected(&v, "authorization"));
    let mut body = v.body.clone();
    let n = body.len();
    body[n - 3] = b'X';
    let err = assert_rejected(
        verify_vector(&v, &headers, &v.wire_path, &body, &v.creds, v.time),
        "InvalidSignatureException",
        "The request signature we calculated does not match",
    );
    assert_eq!(err.status(), 403);
}

#[test]
fn tampered_path_is_rejected_including_encoding_changes() {
    let v = first_vector("invoke-base-model-with-colon");
    let headers = with_authorization(&v, &expected(&v, "authorization"));
    // Same model id, but `:` literal instead of `%3A`: a different request on the wire.
    let literal = v.wire_path.replace("%3A", ":");
    assert_rejected(
        verify_vector(&v, &headers, &literal, &v.body, &v.creds, v.time),
        "InvalidSignatureException",
        "does not match",
    );
    let other_op = v
        .wire_path
        .replace("/invoke", "/invoke-with-response-stream");
    assert_rejected(
        verify_vector(&v, &headers, &other_op, &v.body, &v.creds, v.time),
        "InvalidSignatureException",
        "does not match",
    );
    let with_query = format!("{}?beta=true", v.wire_path);
    assert_rejected(
        verify_vector(&v, &headers, &with_query, &v.body, &v.creds, v.time),
        "InvalidSignatureException",
        "does not match",
    );
}

#[test]
fn wrong_secret_and_unknown_key_are_rejected() {
    let v = first_vector("invoke-stream");
    let headers = with_authorization(&v, &expected(&v, "authorization"));
    let wrong = Credentials::new(v.creds.access_key_id.clone(), "not-the-secret");
    assert_rejected(
        verify_vector(&v, &headers, &v.wire_path, &v.body, &wrong, v.time),
        "InvalidSignatureException",
        "does not match",
    );
    let other = Credentials::new("AKIDOTHER", v.creds.secret_access_key.clone());
    let err = assert_rejected(
        verify_vector(&v, &headers, &v.wire_path, &v.body, &other, v.time),
        "UnrecognizedClientException",
        "security token included in the request is invalid",
    );
    assert_eq!(err.status(), 403);
}

#[test]
fn unsigned_host_or_date_is_rejected_even_with_a_correct_signature() {
    let v = first_vector("invoke-inference-profile");
    // A correct signature over content-type;x-amz-date only (host omitted from SignedHeaders).
    for (omit, message) in [
        ("host", "'Host' or ':authority' must be a 'SignedHeader'"),
        ("x-amz-date", "'X-Amz-Date' must be a 'SignedHeader'"),
    ] {
        let signed: Vec<String> = ["content-type", "host", "x-amz-date"]
            .iter()
            .filter(|h| **h != omit)
            .map(|h| (*h).to_owned())
            .collect();
        let payload_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&v.body));
        let canonical =
            sigv4::canonical_request(&v.method, &v.wire_path, &v.headers, &signed, &payload_hash);
        let scope = format!("20261124/{}/bedrock/aws4_request", v.region);
        let sts = sigv4::string_to_sign("20261124T123045Z", &scope, &canonical);
        let key = sigv4::signing_key(&v.creds.secret_access_key, "20261124", &v.region, "bedrock");
        let sig = hex::encode(hmac_sha256(&key, sts.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
            v.creds.access_key_id,
            signed.join(";")
        );
        let headers = with_authorization(&v, &auth);
        assert_rejected(
            verify_vector(&v, &headers, &v.wire_path, &v.body, &v.creds, v.time),
            "InvalidSignatureException",
            message,
        );
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn stale_and_future_dates_are_rejected() {
    let v = first_vector("invoke-inference-profile");
    let headers = with_authorization(&v, &expected(&v, "authorization"));
    let six_minutes = time::Duration::minutes(6);
    assert_rejected(
        verify_vector(
            &v,
            &headers,
            &v.wire_path,
            &v.body,
            &v.creds,
            v.time + six_minutes,
        ),
        "InvalidSignatureException",
        "Signature expired: 20261124T123045Z is now earlier than 20261124T123145Z (20261124T123645Z - 5 min.)",
    );
    assert_rejected(
        verify_vector(
            &v,
            &headers,
            &v.wire_path,
            &v.body,
            &v.creds,
            v.time - six_minutes,
        ),
        "InvalidSignatureException",
        "Signature not yet current",
    );
    // Within the window both ways.
    let four_minutes = time::Duration::minutes(4);
    assert!(
        verify_vector(
            &v,
            &headers,
            &v.wire_path,
            &v.body,
            &v.creds,
            v.time + four_minutes
        )
        .is_ok()
    );
    assert!(
        verify_vector(
            &v,
            &headers,
            &v.wire_path,
            &v.body,
            &v.creds,
            v.time - four_minutes
        )
        .is_ok()
    );
}

#[test]
fn missing_or_garbled_authorization() {
    let v = first_vector("invoke-inference-profile");
    let err = verify_vector(&v, &v.headers, &v.wire_path, &v.body, &v.creds, v.time)
        .expect_err("no auth");
    assert_eq!(err, SigError::MissingAuthorization);
    assert_eq!(err.status(), 403);
    let garbled = with_authorization(&v, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE");
    let err = assert_rejected(
        verify_vector(&v, &garbled, &v.wire_path, &v.body, &v.creds, v.time),
        "IncompleteSignatureException",
        "requires 'Signature' parameter",
    );
    assert_eq!(err.status(), 400);
    let mut no_date = with_authorization(&v, &expected(&v, "authorization"));
    no_date.remove("x-amz-date");
    assert_rejected(
        verify_vector(&v, &no_date, &v.wire_path, &v.body, &v.creds, v.time),
        "IncompleteSignatureException",
        "X-Amz-Date",
    );
}

#[test]
fn scope_must_name_bedrock_and_match_the_date() {
    let v = first_vector("invoke-inference-profile");
    // Re-sign with service "bedrock-runtime" by editing the Authorization scope: the scope check
    // fires before the signature comparison.
    let auth = expected(&v, "authorization").replace("/bedrock/", "/bedrock-runtime/");
    assert_rejected(
        verify_vector(
            &v,
            &with_authorization(&v, &auth),
            &v.wire_path,
            &v.body,
            &v.creds,
            v.time,
        ),
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'bedrock'",
    );
    let auth = expected(&v, "authorization").replace("/20261124/", "/20261123/");
    assert_rejected(
        verify_vector(
            &v,
            &with_authorization(&v, &auth),
            &v.wire_path,
            &v.body,
            &v.creds,
            v.time,
        ),
        "InvalidSignatureException",
        "Date in Credential scope does not match",
    );
}

#[test]
fn session_token_must_be_signed_present_and_correct() {
    let v = first_vector("invoke-session-token");
    let good = with_authorization(&v, &expected(&v, "authorization"));
    assert!(verify_vector(&v, &good, &v.wire_path, &v.body, &v.creds, v.time).is_ok());

    // Signed token header stripped by a proxy: a signed header is missing.
    let mut stripped = good.clone();
    stripped.remove("x-amz-security-token");
    assert_rejected(
        verify_vector(&v, &stripped, &v.wire_path, &v.body, &v.creds, v.time),
        "InvalidSignatureException",
        "listed in SignedHeaders but is not present",
    );
    // Correctly signed without any token, but the key is temporary: not recognised.
    let long_term = Credentials::new(
        v.creds.access_key_id.clone(),
        v.creds.secret_access_key.clone(),
    );
    let mut no_token = HeaderMap::new();
    for name in ["content-type", "accept", "host"] {
        no_token.insert(name, v.headers[name].clone());
    }
    sigv4::sign(
        &v.method,
        &v.wire_path,
        &mut no_token,
        &v.body,
        &long_term,
        &v.region,
        v.time,
    );
    assert!(verify_vector(&v, &no_token, &v.wire_path, &v.body, &long_term, v.time).is_ok());
    assert_rejected(
        verify_vector(&v, &no_token, &v.wire_path, &v.body, &v.creds, v.time),
        "UnrecognizedClientException",
        "invalid",
    );
    // Another token than the one issued with the key.
    let mut wrong = good.clone();
    wrong.insert("x-amz-security-token", HeaderValue::from_static("forged"));
    assert_rejected(
        verify_vector(&v, &wrong, &v.wire_path, &v.body, &v.creds, v.time),
        "UnrecognizedClientException",
        "invalid",
    );
    // Token present but left out of SignedHeaders (signature otherwise correct).
    let mut headers = HeaderMap::new();
    for name in ["content-type", "accept", "host"] {
        headers.insert(name, v.headers[name].clone());
    }
    sigv4::sign(
        &v.method,
        &v.wire_path,
        &mut headers,
        &v.body,
        &long_term,
        &v.region,
        v.time,
    );
    headers.insert(
        "x-amz-security-token",
        v.headers["x-amz-security-token"].clone(),
    );
    assert_rejected(
        verify_vector(&v, &headers, &v.wire_path, &v.body, &v.creds, v.time),
        "InvalidSignatureException",
        "'X-Amz-Security-Token' must be a 'SignedHeader'",
    );
    // A token sent for a long-term key.
    assert_rejected(
        verify_vector(&v, &good, &v.wire_path, &v.body, &long_term, v.time),
        "UnrecognizedClientException",
        "invalid",
    );
}

#[test]
fn content_sha256_header_is_checked_against_the_body() {
    // botocore trusts x-amz-content-sha256 as the payload hash; the verifier must not.
    let v = first_vector("invoke-inference-profile");
    let mut headers = HeaderMap::new();
    for name in ["content-type", "accept", "host"] {
        headers.insert(name, v.headers[name].clone());
    }
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&v.body));
    headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_str(&hash).expect("hash"),
    );
    sigv4::sign(
        &v.method,
        &v.wire_path,
        &mut headers,
        &v.body,
        &v.creds,
        &v.region,
        v.time,
    );
    assert!(verify_vector(&v, &headers, &v.wire_path, &v.body, &v.creds, v.time).is_ok());
    let tampered = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":64000,"messages":[{"role":"user","content":"Hello, Bedrock"}]}"#;
    let err = verify_vector(&v, &headers, &v.wire_path, tampered, &v.creds, v.time)
        .expect_err("tampered");
    assert!(
        matches!(err, SigError::ContentSha256Mismatch { .. }),
        "{err:?}"
    );
    assert_eq!(
        (err.status(), err.error_type()),
        (403, "InvalidSignatureException")
    );
}

#[test]
fn header_values_are_canonicalised_before_comparison() {
    // A proxy that re-spaces a signed header value must not break the signature.
    let v = first_vector("invoke-inference-profile");
    let mut headers = with_authorization(&v, &expected(&v, "authorization"));
    headers.insert(
        "content-type",
        HeaderValue::from_static("  application/json  "),
    );
    assert!(verify_vector(&v, &headers, &v.wire_path, &v.body, &v.creds, v.time).is_ok());
    // But a changed value is a different request.
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    assert!(verify_vector(&v, &headers, &v.wire_path, &v.body, &v.creds, v.time).is_err());
}
