//! The data plane's Vertex AI access tokens (`tollgate_data_plane::google::VertexAuth`) against
//! the Vertex double's token endpoint, which verifies every JWT assertion with the service
//! account's public key: one exchange serves many requests, concurrent requests wait for one
//! exchange instead of each starting their own, a token is refreshed before it expires while the
//! current one keeps serving, and a key file Google refuses gets no token and says why.

use std::time::Duration;

use tollgate_data_plane::google::VertexAuth;
use tollgate_data_plane::upstream::HttpClient;
use tollgate_proto::config::v1 as pb;
use tollgate_proto::env::EnvAllowlist;
use tollgate_tests::vertex_double::{VertexDouble, VertexDoubleConfig, test_key_file};

fn value(source: pb::value_ref::Source) -> Option<pb::ValueRef> {
    Some(pb::ValueRef {
        source: Some(source),
    })
}

fn key(auth_credentials: pb::value_ref::Source, token_uri: &str) -> pb::ProviderKey {
    pb::ProviderKey {
        id: "pk-vertex".into(),
        name: "vertex-key".into(),
        vertex: Some(pb::VertexKeyConfig {
            project_id: value(pb::value_ref::Source::Literal("tollgate-test".into())),
            region: value(pb::value_ref::Source::Literal("us-east5".into())),
            auth_credentials: value(auth_credentials),
            token_uri: token_uri.into(),
        }),
        ..Default::default()
    }
}

fn double(lifetime: Duration) -> VertexDouble {
    VertexDouble::start(VertexDoubleConfig {
        token_lifetime: lifetime,
        ..VertexDoubleConfig::for_test_account()
    })
    .expect("vertex double")
}

async fn bearer(auth: &VertexAuth, client: &HttpClient) -> String {
    auth.bearer(client, "vertex", Duration::from_secs(10))
        .await
        .expect("a token")
        .to_str()
        .expect("text")
        .to_owned()
}

#[tokio::test]
async fn one_exchange_serves_concurrent_requests_and_is_refreshed_before_it_expires() {
    // A 4 s token is refreshed at half its life (the margin is 5 minutes or half the life).
    let vertex = double(Duration::from_secs(4));
    let literal = pb::value_ref::Source::Literal(test_key_file("service-account.json"));
    let auth = VertexAuth::from_proto(&key(literal, &vertex.token_url()), &EnvAllowlist::default())
        .expect("auth");
    let client = HttpClient::new(Duration::from_secs(5));

    let waiting = (0..16).map(|_| bearer(&auth, &client));
    let tokens = futures::future::join_all(waiting).await;
    assert!(
        tokens.iter().all(|t| *t == "Bearer ya29.double-1"),
        "{tokens:?}"
    );
    assert_eq!(
        vertex.tokens_issued(),
        1,
        "one exchange for 16 waiting requests"
    );

    // Past the refresh point but before expiry: the request that finds it due refreshes.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert_eq!(bearer(&auth, &client).await, "Bearer ya29.double-2");
    assert_eq!(bearer(&auth, &client).await, "Bearer ya29.double-2");
    assert_eq!(vertex.tokens_issued(), 2);

    // Dropped (Vertex refused it): the next request exchanges again.
    auth.invalidate();
    assert_eq!(bearer(&auth, &client).await, "Bearer ya29.double-3");
}

#[tokio::test]
async fn a_key_file_google_refuses_says_why_and_gets_no_token() {
    let vertex = double(Duration::from_secs(3599));
    let other = pb::value_ref::Source::Literal(test_key_file("other-service-account.json"));
    let auth = VertexAuth::from_proto(&key(other, &vertex.token_url()), &EnvAllowlist::default())
        .expect("auth");
    let client = HttpClient::new(Duration::from_secs(5));
    for _ in 0..2 {
        let err = auth
            .bearer(&client, "vertex", Duration::from_secs(10))
            .await
            .expect_err("refused");
        assert!(
            err.client_message().contains("invalid_grant"),
            "{}",
            err.client_message()
        );
    }
    // Nothing cached: each request asked again, and no token was issued.
    assert_eq!(vertex.requests().len(), 2);
    assert_eq!(vertex.tokens_issued(), 0);
    // A token endpoint that is not there is an unreachable upstream (another key may serve).
    let gone = VertexAuth::from_proto(
        &key(
            pb::value_ref::Source::Literal(test_key_file("service-account.json")),
            "http://127.0.0.1:9/token",
        ),
        &EnvAllowlist::default(),
    )
    .expect("auth");
    match gone.bearer(&client, "vertex", Duration::from_secs(5)).await {
        Err(tollgate_data_plane::google::TokenError::Transport(e)) => {
            assert_eq!(e.class, tollgate_data_plane::upstream::UNREACHABLE_CLASS)
        }
        other => panic!("{other:?}"),
    }
}
