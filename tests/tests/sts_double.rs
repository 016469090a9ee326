//! The STS double over real HTTP: driven by the real AWS SDK (`aws-sdk-sts`, so the XML and the
//! signature check agree with what AWS clients produce and parse) and by hand-signed requests
//! for every rejection.

use std::time::Duration;

use aws_credential_types::Credentials as SdkCredentials;
use http::{HeaderMap, HeaderValue};
use time::OffsetDateTime;
use tollgate_tests::sigv4::Credentials;
use tollgate_tests::sts_double::{
    STS_NAMESPACE, StsDouble, StsDoubleConfig, StsRole, sign_service,
};

const BASE_AKID: &str = "AKIDSTSDOUBLEBASE01";
const BASE_SECRET: &str = "stsDoubleBaseSecret/K7MDENG+bPxRfiCYEXAMPLE";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/tollgate-bedrock";
const OPEN_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/open-role";
const EXTERNAL_ID: &str = "tg-external-7f3a";
const TEMP_AKID: &str = "ASIASTSDOUBLETEMP001";
const TEMP_SECRET: &str = "tempSecret/stsDouble+Issued0000000000000";
const TEMP_TOKEN: &str = "IQoJb3JpZ2luX2VjEDoaCXVzLWVhc3QtMSJHMEUCIQ/sts+double==";

fn issued() -> Credentials {
    Credentials::new(TEMP_AKID, TEMP_SECRET).with_session_token(TEMP_TOKEN)
}

fn start() -> StsDouble {
    StsDouble::start(
        StsDoubleConfig::new()
            .with_key(BASE_AKID, BASE_SECRET)
            .with_key("AKIDUNTRUSTED0000001", "untrustedSecret")
            .with_role(
                StsRole::new(ROLE_ARN, issued())
                    .with_external_id(EXTERNAL_ID)
                    .trusting(&[BASE_AKID]),
            )
            .with_role(
                StsRole::new(
                    OPEN_ROLE_ARN,
                    Credentials::new("ASIAOPENROLE00000001", "openSecret")
                        .with_session_token("openToken"),
                )
                .with_max_session_duration(7200),
            ),
    )
    .expect("double starts")
}

async fn sdk_client(double: &StsDouble, akid: &str, secret: &str) -> aws_sdk_sts::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SdkCredentials::new(akid, secret, None, None, "test"))
        .endpoint_url(double.base_url())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    aws_sdk_sts::Client::new(&config)
}

#[tokio::test]
async fn the_aws_sdk_assumes_a_role_and_parses_the_credentials() {
    let double = start();
    let sts = sdk_client(&double, BASE_AKID, BASE_SECRET).await;
    let before = OffsetDateTime::now_utc();
    let out = sts
        .assume_role()
        .role_arn(ROLE_ARN)
        .role_session_name("tollgate-test")
        .external_id(EXTERNAL_ID)
        .duration_seconds(1800)
        .send()
        .await
        .expect("AssumeRole succeeds");
    let creds = out.credentials().expect("credentials");
    assert_eq!(creds.access_key_id(), TEMP_AKID);
    assert_eq!(creds.secret_access_key(), TEMP_SECRET);
    assert_eq!(creds.session_token(), TEMP_TOKEN);
    let expires = creds.expiration().secs();
    let expected = before.unix_timestamp() + 1800;
    assert!(
        (expected - 1..=expected + 5).contains(&expires),
        "expiration {expires} is now + DurationSeconds ({expected})"
    );
    let user = out.assumed_role_user().expect("assumed role user");
    assert_eq!(
        user.arn(),
        "arn:aws:sts::123456789012:assumed-role/tollgate-bedrock/tollgate-test"
    );
    assert!(user.assumed_role_id().ends_with(":tollgate-test"));

    let calls = double.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call.succeeded(), "{:?}", call.verdict);
    assert_eq!(call.access_key_id.as_deref(), Some(BASE_AKID));
    assert_eq!(call.region.as_deref(), Some("us-east-1"));
    assert!(call.signed_headers.iter().any(|h| h == "host"));
    assert_eq!(call.param("Action"), Some("AssumeRole"));
    assert_eq!(call.param("Version"), Some("2011-06-15"));
    assert_eq!(call.param("RoleArn"), Some(ROLE_ARN));
    assert_eq!(call.param("RoleSessionName"), Some("tollgate-test"));
    assert_eq!(call.param("ExternalId"), Some(EXTERNAL_ID));
    assert_eq!(call.param("DurationSeconds"), Some("1800"));
    assert_eq!(double.assume_role_count(), 1);
}

type AssumeRoleSdkError =
    aws_sdk_sts::error::SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>;

/// HTTP status and STS error code, as the SDK reports them.
fn code(e: &AssumeRoleSdkError) -> (Option<u16>, Option<String>) {
    use aws_sdk_sts::error::ProvideErrorMetadata as _;
    (
        e.raw_response().map(|r| r.status().as_u16()),
        e.as_service_error()
            .and_then(|s| s.code())
            .map(str::to_owned),
    )
}

#[tokio::test]
async fn the_aws_sdk_sees_sts_errors_with_their_codes() {
    let double = start();
    let sts = sdk_client(&double, BASE_AKID, BASE_SECRET).await;
    // Wrong and missing external id: AccessDenied.
    for external_id in [Some("wrong-external-id"), None] {
        let err = sts
            .assume_role()
            .role_arn(ROLE_ARN)
            .role_session_name("tollgate")
            .set_external_id(external_id.map(str::to_owned))
            .send()
            .await
            .expect_err("denied");
        assert_eq!(
            code(&err),
            (Some(403), Some("AccessDenied".to_owned())),
            "{external_id:?}"
        );
    }
    // Bad session name, out-of-range durations, malformed ARN: ValidationError.
    let bad_requests = [
        (ROLE_ARN, "has space", 3600),
        (ROLE_ARN, "x", 3600),
        (ROLE_ARN, "tollgate", 899),
        (ROLE_ARN, "tollgate", 43_201),
        (OPEN_ROLE_ARN, "tollgate", 7201), // above the role's MaxSessionDuration
        (
            "arn:aws:iam::123456789012:user/not-a-role",
            "tollgate",
            3600,
        ),
    ];
    for (arn, session, duration) in bad_requests {
        let err = sts
            .assume_role()
            .role_arn(arn)
            .role_session_name(session)
            .external_id(EXTERNAL_ID)
            .duration_seconds(duration)
            .send()
            .await
            .expect_err("invalid");
        assert_eq!(
            code(&err),
            (Some(400), Some("ValidationError".to_owned())),
            "{arn} {session} {duration}"
        );
    }
    // An unknown role, and a caller the role does not trust: AccessDenied.
    let err = sts
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/no-such-role")
        .role_session_name("tollgate")
        .send()
        .await
        .expect_err("unknown role");
    assert_eq!(code(&err), (Some(403), Some("AccessDenied".to_owned())));
    let untrusted = sdk_client(&double, "AKIDUNTRUSTED0000001", "untrustedSecret").await;
    let err = untrusted
        .assume_role()
        .role_arn(ROLE_ARN)
        .role_session_name("tollgate")
        .external_id(EXTERNAL_ID)
        .send()
        .await
        .expect_err("untrusted");
    assert_eq!(code(&err), (Some(403), Some("AccessDenied".to_owned())));
    // Wrong secret and unknown key: signature errors.
    let wrong_secret = sdk_client(&double, BASE_AKID, "not-the-secret").await;
    let err = wrong_secret
        .assume_role()
        .role_arn(OPEN_ROLE_ARN)
        .role_session_name("tollgate")
        .send()
        .await
        .expect_err("bad signature");
    assert_eq!(
        code(&err),
        (Some(403), Some("SignatureDoesNotMatch".to_owned()))
    );
    let unknown = sdk_client(&double, "AKIDNOBODYKNOWS00001", "x").await;
    let err = unknown
        .assume_role()
        .role_arn(OPEN_ROLE_ARN)
        .role_session_name("tollgate")
        .send()
        .await
        .expect_err("unknown key");
    assert_eq!(
        code(&err),
        (Some(403), Some("InvalidClientTokenId".to_owned()))
    );
    assert_eq!(double.assume_role_count(), 0, "nothing was handed out");
    // Only the open role without an external id works for the base key.
    sts.assume_role()
        .role_arn(OPEN_ROLE_ARN)
        .role_session_name("tollgate")
        .send()
        .await
        .expect("open role");
    assert_eq!(double.assume_role_count(), 1);
}

#[tokio::test]
async fn role_chaining_is_limited_to_one_hour() {
    let double = start();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SdkCredentials::new(
            TEMP_AKID,
            TEMP_SECRET,
            Some(TEMP_TOKEN.to_owned()),
            None,
            "test",
        ))
        .endpoint_url(double.base_url())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let sts = aws_sdk_sts::Client::new(&config);
    let err = sts
        .assume_role()
        .role_arn(OPEN_ROLE_ARN)
        .role_session_name("chained")
        .duration_seconds(7200)
        .send()
        .await
        .expect_err("chaining beyond 1 h");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    sts.assume_role()
        .role_arn(OPEN_ROLE_ARN)
        .role_session_name("chained")
        .duration_seconds(3600)
        .send()
        .await
        .expect("chaining within 1 h");
    let call = double.calls().pop().expect("call");
    assert!(call.session_token_presented);
    assert_eq!(call.access_key_id.as_deref(), Some(TEMP_AKID));
}

/// A hand-signed request, to reach the checks the SDK never trips.
async fn post(double: &StsDouble, body: &str, service: &str, content_type: &str) -> (u16, String) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "host",
        HeaderValue::from_str(&double.addr().to_string()).expect("host"),
    );
    headers.insert(
        "content-type",
        HeaderValue::from_str(content_type).expect("ct"),
    );
    sign_service(
        service,
        "POST",
        "/",
        &mut headers,
        body.as_bytes(),
        &Credentials::new(BASE_AKID, BASE_SECRET),
        "us-east-1",
        OffsetDateTime::now_utc(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/", double.base_url()))
        .headers(headers)
        .body(body.to_owned())
        .send()
        .await
        .expect("reaches the double");
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/xml")
    );
    assert!(resp.headers().contains_key("x-amzn-requestid"));
    (status, resp.text().await.expect("body"))
}

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

#[tokio::test]
async fn raw_requests_get_the_real_xml_shapes() {
    let double = start();
    let ok = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=raw&ExternalId={EXTERNAL_ID}",
        "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Ftollgate-bedrock"
    );
    let (status, xml) = post(&double, &ok, "sts", FORM).await;
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.starts_with(&format!("<AssumeRoleResponse xmlns=\"{STS_NAMESPACE}\">")),
        "{xml}"
    );
    for needle in [
        "<AssumeRoleResult>",
        &format!("<AccessKeyId>{TEMP_AKID}</AccessKeyId>"),
        &format!("<SecretAccessKey>{TEMP_SECRET}</SecretAccessKey>"),
        &format!("<SessionToken>{TEMP_TOKEN}</SessionToken>"),
        "<Expiration>20",
        "<AssumedRoleUser>",
        "<ResponseMetadata>",
        "<RequestId>",
    ] {
        assert!(xml.contains(needle), "{needle} missing from {xml}");
    }
    // Default duration: one hour.
    let call = double.calls().pop().expect("call");
    let expiration = call.expiration.expect("expiration");
    assert!(
        expiration.ends_with('Z') && expiration.len() == 20,
        "{expiration}"
    );

    // Signed for the wrong service.
    let (status, xml) = post(&double, &ok, "bedrock", FORM).await;
    assert_eq!(status, 403);
    assert!(xml.contains("<Code>SignatureDoesNotMatch</Code>"), "{xml}");
    assert!(xml.contains("<Type>Sender</Type>"), "{xml}");
    assert!(xml.starts_with(&format!("<ErrorResponse xmlns=\"{STS_NAMESPACE}\">")));
    // Not form-encoded.
    let (status, xml) = post(&double, &ok, "sts", "application/json").await;
    assert_eq!(status, 400, "{xml}");
    // Another action or version.
    let (status, xml) = post(
        &double,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "sts",
        FORM,
    )
    .await;
    assert_eq!(status, 400);
    assert!(xml.contains("<Code>InvalidAction</Code>"), "{xml}");
    let (status, xml) = post(
        &double,
        &ok.replace("2011-06-15", "2099-01-01"),
        "sts",
        FORM,
    )
    .await;
    assert_eq!(status, 400);
    assert!(xml.contains("<Code>InvalidAction</Code>"), "{xml}");
    // Missing RoleSessionName; an external id with a forbidden character.
    let (status, xml) = post(
        &double,
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fopen-role",
        "sts",
        FORM,
    )
    .await;
    assert_eq!(status, 400);
    assert!(xml.contains("<Code>ValidationError</Code>"), "{xml}");
    assert!(xml.contains("roleSessionName"), "{xml}");
    let (status, xml) = post(&double, &ok.replace(EXTERNAL_ID, "bad%20id"), "sts", FORM).await;
    assert_eq!(status, 400);
    assert!(xml.contains("externalId"), "{xml}");
    // Unsigned.
    let resp = reqwest::Client::new()
        .post(format!("{}/", double.base_url()))
        .header("content-type", FORM)
        .body(ok)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 403);
    assert!(
        resp.text()
            .await
            .expect("text")
            .contains("<Code>MissingAuthenticationToken</Code>")
    );
    assert_eq!(double.assume_role_count(), 1);
}

#[tokio::test]
async fn a_lifetime_override_shortens_the_expiration() {
    let double = StsDouble::start(
        StsDoubleConfig::new()
            .with_key(BASE_AKID, BASE_SECRET)
            .with_role(
                StsRole::new(OPEN_ROLE_ARN, issued()).with_lifetime(Duration::from_secs(60)),
            ),
    )
    .expect("double");
    let sts = sdk_client(&double, BASE_AKID, BASE_SECRET).await;
    let before = OffsetDateTime::now_utc().unix_timestamp();
    let out = sts
        .assume_role()
        .role_arn(OPEN_ROLE_ARN)
        .role_session_name("short")
        .send()
        .await
        .expect("assume");
    let expires = out.credentials().expect("creds").expiration().secs();
    assert!((before + 59..=before + 65).contains(&expires), "{expires}");
    // Issued credentials must be temporary.
    let err = StsDouble::start(StsDoubleConfig::new().with_role(StsRole::new(
        OPEN_ROLE_ARN,
        Credentials::new("AKIDLONGTERM", "x"),
    )))
    .expect_err("long-term issued keys are refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
