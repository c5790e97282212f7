//! The fake's poll and configData as a device sees them: the polling sleep, which links a
//! new, attribute-reporting or re-asked target gets, configData's merge / replace / remove
//! and its refusals, and content negotiation with Spring's shallow ETags and 304.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_hawkbit_common;

use std::time::Duration;

use fake_hawkbit_common::{Device, ID, header, link, rels, rootfs};
use nexa_testkit::hawkbit::Assignment;
use serde_json::{Value, json};

#[tokio::test]
async fn poll_sleep_links_and_config_data() {
    let d = Device::new();
    let r = d.get(&d.base()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").unwrap(), "application/hal+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["config"]["polling"]["sleep"], "00:00:10");
    // A new target is asked for its attributes, nothing else.
    assert_eq!(rels(&body), ["configData"]);
    assert_eq!(
        link(&body, "configData").unwrap(),
        format!("{}/DEFAULT/controller/v1/{ID}/configData", d.hb.url)
    );

    let cfg = format!("{}/configData", d.base());
    let put = |body: Value| {
        let d = &d;
        let cfg = cfg.clone();
        async move { d.put(&cfg, &body).await }
    };
    assert_eq!(put(json!({ "data": {} })).await, 400, "empty data");
    assert_eq!(
        put(json!({ "data": { "a": { "b": "c" } } })).await,
        400,
        "nested"
    );
    assert_eq!(
        put(json!({ "mode": "upsert", "data": { "a": "1" } })).await,
        400
    );
    let wrong_type = d
        .http
        .put(&cfg)
        .header("Authorization", &d.auth)
        .header("Content-Type", "text/plain")
        .body(r#"{"data":{"a":"1"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    assert!(
        d.hb.attributes_requested(ID),
        "refused bodies change nothing"
    );

    assert_eq!(
        put(json!({ "mode": "merge", "data": { "hwRevision": "2", "VIN": "X1" } })).await,
        200
    );
    assert_eq!(rels(&d.poll().await), Vec::<String>::new(), "no links left");
    assert!(
        d.poll().await.get("_links").is_none(),
        "empty _links omitted"
    );
    // merge is the default; replace clears; remove drops the keys named.
    assert_eq!(put(json!({ "data": { "serial": "7", "n": 3 } })).await, 200);
    assert_eq!(
        d.hb.attributes(ID).into_iter().collect::<Vec<_>>(),
        [
            ("VIN".into(), "X1".into()),
            ("hwRevision".into(), "2".into()),
            ("n".into(), "3".into()),
            ("serial".into(), "7".into()),
        ]
    );
    assert_eq!(
        put(json!({ "mode": "remove", "data": { "n": "" } })).await,
        200
    );
    assert_eq!(
        put(json!({ "mode": "replace", "data": { "only": "this" } })).await,
        200
    );
    assert_eq!(
        d.hb.attributes(ID).into_iter().collect::<Vec<_>>(),
        [("only".into(), "this".into())]
    );

    // The operator asks again.
    d.hb.request_attributes(ID);
    assert_eq!(rels(&d.poll().await), ["configData"]);

    // Sleep of a day or more: ISO-8601; and anything a test wants to feed a parser.
    d.hb.set_polling_sleep(Duration::from_secs(36 * 3600));
    assert_eq!(d.poll().await["config"]["polling"]["sleep"], "PT36H");
    d.hb.set_polling_sleep_raw("aa:bb:cc");
    assert_eq!(d.poll().await["config"]["polling"]["sleep"], "aa:bb:cc");
    assert_eq!(d.hb.polls(ID), 6);
    assert!(d.hb.last_poll(ID).is_some());
}

#[tokio::test]
async fn content_negotiation_and_etags() {
    let d = Device::new();
    let get = |accept: &'static str| {
        let d = &d;
        async move {
            d.http
                .get(d.base())
                .header("Authorization", &d.auth)
                .header("Accept", accept)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get("application/json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").unwrap(), "application/json");
    let etag = header(&r, "etag").unwrap();
    assert!(etag.starts_with("\"0") && etag.len() == 35, "{etag}");
    assert_eq!(get("text/plain").await.status(), 406);
    assert_eq!(get("text/html, */*;q=0.1").await.status(), 200);

    let cond = d
        .http
        .get(d.base())
        .header("Authorization", &d.auth)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cond.status(), 304);
    assert_eq!(cond.bytes().await.unwrap().len(), 0);
    // Something changed: the body and its tag change.
    d.hb.deploy(ID, rootfs(b"x"), Assignment::forced());
    let cond = d
        .http
        .get(d.base())
        .header("Authorization", &d.auth)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cond.status(), 200);
    assert_ne!(header(&cond, "etag").unwrap(), etag);
}
