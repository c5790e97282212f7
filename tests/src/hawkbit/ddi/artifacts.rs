//! Artifact bytes and their listings: a module's artifact list, downloads over DDI
//! (200 / 206 / multipart / 416, `If-Range`, `If-Match`, a DOWNLOAD entry for a full
//! download of an assigned module), `.MD5SUM` files and the "external storage" that takes
//! no DDI credentials. Injected download faults and throttling are applied here.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::Answer;
use super::auth::authenticate;
use super::request::{
    base, etag_listed, header_str, json_ok, known, negotiate, not_found, parse_id, refusal,
};
use crate::hawkbit::content::{
    DownloadBody, Misbehaviour, Part, RangeAsk, StoredArtifact, http_date, parse_range,
};
use crate::hawkbit::{Inner, Shared};

const BOUNDARY: &str = "NEXA_FAKE_HAWKBIT_BYTERANGES";

pub(super) async fn artifact_list(
    State(s): State<Shared>,
    Path((tenant, cid, sm)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, false)?;
    let media = negotiate(&headers)?;
    let sm = parse_id(&sm)?;
    known(g, &cid)?;
    let b = base(g, &headers, &cid);
    let body = g
        .ddi
        .artifacts_json(sm, &b)
        .ok_or_else(|| not_found(&format!("software module {sm}")))?;
    Ok(json_ok(&headers, media, &body))
}

fn find_artifact(g: &Inner, sm: u64, file: &str) -> Option<Arc<StoredArtifact>> {
    g.ddi
        .modules
        .get(&sm)?
        .artifacts
        .iter()
        .find(|a| a.filename == file)
        .cloned()
}

/// `If-Match` naming another content: 412.
fn check_if_match(headers: &HeaderMap, art: &StoredArtifact) -> Result<(), Response> {
    match header_str(headers, "if-match") {
        Some(list) if !etag_listed(list, &art.hashes.sha1) => {
            Err(StatusCode::PRECONDITION_FAILED.into_response())
        }
        _ => Ok(()),
    }
}

pub(super) async fn artifact(
    State(s): State<Shared>,
    Path((tenant, cid, sm, file)): Path<(String, String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    authenticate(g, &tenant, &cid, &headers, true)?;
    let sm = parse_id(&sm)?;
    known(g, &cid)?;
    if !g.ddi.modules.contains_key(&sm) {
        return Err(not_found(&format!("software module {sm}")));
    }
    let Some(art) = find_artifact(g, sm, &file) else {
        if let Some(name) = file.strip_suffix(".MD5SUM")
            && let Some(art) = find_artifact(g, sm, name)
        {
            return md5sum(g, &cid, sm, &art, uri.path());
        }
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    check_if_match(&headers, &art)?;
    if !headers.contains_key(header::RANGE) {
        // A full download must belong to an open action; it is noted in its history.
        let action = g
            .ddi
            .download_action(&cid, sm)
            .ok_or_else(|| not_found(&format!("software module {sm} assigned to {cid}")))?;
        g.ddi.log_download(action, uri.path()).map_err(refusal)?;
    }
    let how = if method == Method::GET {
        g.ddi.take_download_fault(&art.filename)
    } else {
        Misbehaviour::default()
    };
    drop(guard);
    Ok(serve_artifact(art, &headers, how))
}

fn md5sum(g: &mut Inner, cid: &str, sm: u64, art: &StoredArtifact, path: &str) -> Answer {
    let action = g
        .ddi
        .download_action(cid, sm)
        .ok_or_else(|| not_found(&format!("software module {sm} assigned to {cid}")))?;
    g.ddi.log_download(action, path).map_err(refusal)?;
    let body = format!("{}  {}", art.hashes.md5, art.filename);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment;filename={}.MD5SUM", art.filename),
            ),
        ],
        body,
    )
        .into_response())
}

pub(super) async fn external_artifact(
    State(s): State<Shared>,
    Path((sm, file)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Answer {
    if headers.contains_key(header::AUTHORIZATION) {
        // Like an object store handed a presigned URL plus foreign credentials.
        return Err(StatusCode::UNAUTHORIZED.into_response());
    }
    let mut guard = s.lock().unwrap();
    let g = &mut *guard;
    let sm = parse_id(&sm)?;
    let art = find_artifact(g, sm, &file)
        .filter(|a| a.external)
        .ok_or_else(|| StatusCode::NOT_FOUND.into_response())?;
    check_if_match(&headers, &art)?;
    let how = if method == Method::GET {
        g.ddi.take_download_fault(&art.filename)
    } else {
        Misbehaviour::default()
    };
    drop(guard);
    Ok(serve_artifact(art, &headers, how))
}

/// 200, 206 (one range, or `multipart/byteranges` for several) or 416, streamed.
fn serve_artifact(art: Arc<StoredArtifact>, headers: &HeaderMap, how: Misbehaviour) -> Response {
    let len = art.size();
    let etag = art.etag();
    let mut r = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, http_date(art.created))
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment;filename={}", art.filename),
        )
        .header("x-content-type-options", "nosniff");
    // A Range counts only while If-Range (if any) still names this content.
    let range = header_str(headers, "range")
        .filter(|_| header_str(headers, "if-range").is_none_or(|v| v.trim() == etag));
    let (status, parts) = match range.map(|h| parse_range(h, len)) {
        None => {
            r = r.header(header::CONTENT_TYPE, "application/octet-stream");
            (StatusCode::OK, vec![content(&art, 0, len)])
        }
        Some(RangeAsk::Unsatisfiable) => {
            return r
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .expect("416 response");
        }
        Some(RangeAsk::Ranges(ranges)) if ranges.len() == 1 => {
            let (a, b) = ranges[0];
            r = r
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
            (StatusCode::PARTIAL_CONTENT, vec![content(&art, a, b + 1)])
        }
        Some(RangeAsk::Ranges(ranges)) => {
            r = r.header(
                header::CONTENT_TYPE,
                format!("multipart/byteranges; boundary={BOUNDARY}"),
            );
            let mut parts = Vec::new();
            for (i, (a, b)) in ranges.into_iter().enumerate() {
                let lead = if i == 0 { "" } else { "\r\n" };
                parts.push(Part::Raw(Bytes::from(format!(
                    "{lead}--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\
                     Content-Range: bytes {a}-{b}/{len}\r\n\r\n"
                ))));
                parts.push(content(&art, a, b + 1));
            }
            parts.push(Part::Raw(Bytes::from(format!("\r\n--{BOUNDARY}--\r\n"))));
            (StatusCode::PARTIAL_CONTENT, parts)
        }
    };
    let body = DownloadBody::new(parts, how);
    r.status(status)
        .header(header::CONTENT_LENGTH, HeaderValue::from(body.len()))
        .body(Body::new(body))
        .expect("artifact response")
}

fn content(art: &Arc<StoredArtifact>, pos: u64, end: u64) -> Part {
    Part::Content {
        artifact: art.clone(),
        pos,
        end,
    }
}
