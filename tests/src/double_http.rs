//! The HTTP plumbing the doubles share: recording what arrived, building answers with a status,
//! a content type and headers, streaming SSE one event per body chunk, and reading the
//! `[double:…]` triggers that script them. What makes a double look like its service (error
//! shapes, request-id and organization headers, what each trigger does) stays in the double.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

const SSE_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";

/// Locks `m`, also after a panic elsewhere poisoned it (a double keeps serving).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The request target as received: path and query.
pub(crate) fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

/// Every header as (lowercase name, value), in arrival order; collect into what the record keeps.
pub(crate) fn header_pairs(headers: &HeaderMap) -> impl Iterator<Item = (String, String)> + '_ {
    headers.iter().map(|(k, v)| {
        (
            k.as_str().to_owned(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        )
    })
}

/// First value of a recorded header (name case-insensitive).
pub(crate) fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `len` (at most 32) letters and digits derived from `seed`, for ids shaped like a service's.
pub(crate) fn alnum_id(seed: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    Sha256::digest(seed.as_bytes())
        .iter()
        .take(len)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The `[double:NAME:ARG]` triggers in `text`, in order, as `(NAME, ARG)`: ARG runs to the
/// first `]` and is empty when there is no `:`; an unclosed trigger ends the list.
pub(crate) fn triggers(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find("[double:")?;
        let after = &rest[start + "[double:".len()..];
        let end = after.find(']')?;
        let token = &after[..end];
        rest = &after[end..];
        Some(token.split_once(':').unwrap_or((token, "")))
    })
}

/// Sets a header, skipping a value that is not a valid header value.
pub(crate) fn insert_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Sets every header of `headers` (an error's extra headers: `retry-after`, …).
pub(crate) fn insert_headers(h: &mut HeaderMap, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        insert_header(h, name, value);
    }
}

/// A whole answer: `status` (500 if not a status), `content_type`, then `headers`.
pub(crate) fn response(
    status: u16,
    content_type: &'static str,
    body: Bytes,
    headers: &[(&'static str, &str)],
) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    for (name, value) in headers {
        insert_header(h, name, value);
    }
    response
}

/// A 200 SSE answer sending `chunks` one per body chunk, `slow_ms` apart when set; it ends
/// early when the client goes away or `shutdown` turns true.
pub(crate) fn sse_response(
    chunks: Vec<Bytes>,
    slow_ms: Option<u64>,
    shutdown: watch::Receiver<bool>,
    headers: &[(&'static str, &str)],
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut stop = shutdown;
        for (i, chunk) in chunks.into_iter().enumerate() {
            if i > 0
                && let Some(ms) = slow_ms
            {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = stop.wait_for(|v| *v) => return,
                }
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return; // client went away
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(SSE_CONTENT_TYPE),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    for (name, value) in headers {
        insert_header(h, name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_read_in_order_up_to_an_unclosed_one() {
        let found: Vec<_> =
            triggers("a [double:tool] b [double:read:/x:y] [double:slow:5 x] [double:open")
                .collect();
        assert_eq!(found, [("tool", ""), ("read", "/x:y"), ("slow", "5 x")]);
        assert_eq!(triggers("plain [double:open] [double:").count(), 1);
        assert_eq!(triggers("plain [double:open").count(), 0);
    }
}
