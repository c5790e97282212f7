//! Who the fake lets in: tenants, target and gateway tokens, reverse-proxy certificate
//! headers (current and legacy names), anonymous downloads and anonymous access, the
//! credentials the request log records, percent-encoded controller ids in paths and
//! links, and external-storage downloads that refuse DDI credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_hawkbit_common;

use fake_hawkbit_common::{ID, TOKEN, download_href, http, link, rootfs};
use nexa_testkit::hawkbit::{
    Artifact, Assignment, AuthKind, DdiAuth, DistributionSet, FakeHawkbit, HeaderAuth, Route,
};
use serde_json::Value;

#[tokio::test]
async fn authentication_modes() {
    let hb = FakeHawkbit::start();
    hb.set_tenant("acme");
    hb.insert_target_with_token(ID, TOKEN);
    hb.insert_target_with_token("dev-0002", "other-token");
    let http = http();
    let base = hb.controller_url(ID);
    assert_eq!(base, format!("{}/acme/controller/v1/{ID}", hb.url));
    let get = |url: String, headers: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let mut req = http.get(&url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send().await.unwrap().status()
        }
    };
    let token = |t: &str| vec![("Authorization", format!("TargetToken {t}"))];

    // Target token (the default).
    assert_eq!(get(base.clone(), vec![]).await, 401);
    assert_eq!(get(base.clone(), token(TOKEN)).await, 200);
    assert_eq!(get(base.clone(), token("wrong")).await, 401);
    // (Trailing whitespace is not part of a header value on the wire; a second space is.)
    assert_eq!(
        get(base.clone(), token(&format!(" {TOKEN}"))).await,
        401,
        "two spaces"
    );
    assert_eq!(
        get(base.clone(), token("other-token")).await,
        401,
        "another target's token"
    );
    let wrong_tenant = base.replace("/acme/", "/DEFAULT/");
    assert_eq!(get(wrong_tenant, token(TOKEN)).await, 401);
    let unknown = hb.controller_url("dev-new");
    assert_eq!(
        get(unknown.clone(), token(TOKEN)).await,
        401,
        "unknown target"
    );
    let gw = |k: &str| vec![("Authorization", format!("GatewayToken {k}"))];
    assert_eq!(
        get(base.clone(), gw("gw-key")).await,
        401,
        "gateway tokens off"
    );

    // Gateway token: any controller, unknown ones registered on poll.
    hb.set_auth(DdiAuth {
        gateway_token: Some("gw-key".into()),
        ..DdiAuth::default()
    });
    assert_eq!(get(base.clone(), gw("gw-key")).await, 200);
    assert_eq!(get(base.clone(), gw("nope")).await, 401);
    assert_eq!(get(unknown.clone(), gw("gw-key")).await, 200);
    assert!(hb.targets().iter().any(|t| t.controller_id == "dev-new"));
    hb.set_auto_register(false);
    assert_eq!(get(hb.controller_url("dev-newer"), gw("gw-key")).await, 404);
    hb.set_auto_register(true);

    // Certificate through a reverse proxy: headers only.
    hb.set_auth(DdiAuth {
        target_token: false,
        header: Some(HeaderAuth::new(&["4f1c2a9b"])),
        ..DdiAuth::default()
    });
    assert_eq!(get(base.clone(), token(TOKEN)).await, 401, "tokens off now");
    let proxy = |cn: &str, auth: (&'static str, &str)| {
        vec![
            ("X-Controller-Id", cn.to_owned()),
            (auth.0, auth.1.to_owned()),
        ]
    };
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority", "abc, 4F1C2A9B"))).await,
        200
    );
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority", "abc;def"))).await,
        401
    );
    assert_eq!(
        get(base.clone(), proxy("dev-0002", ("X-Authority", "4f1c2a9b"))).await,
        401
    );
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority-0", "4f1c2a9b"))).await,
        200
    );
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority-1", "4f1c2a9b"))).await,
        200
    );
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority-2", "4f1c2a9b"))).await,
        401,
        "gap"
    );
    hb.set_auth(DdiAuth {
        target_token: false,
        header: Some(HeaderAuth {
            legacy_names: true,
            ..HeaderAuth::new(&["4f1c2a9b"])
        }),
        ..DdiAuth::default()
    });
    let legacy = vec![
        ("X-Ssl-Client-Cn", ID.to_owned()),
        ("X-Ssl-Issuer-Hash-1", "4f1c2a9b".to_owned()),
    ];
    assert_eq!(get(base.clone(), legacy).await, 200);
    assert_eq!(
        get(base.clone(), proxy(ID, ("X-Authority", "4f1c2a9b"))).await,
        401
    );

    // Anonymous downloads only; anonymous everything.
    hb.set_auth(DdiAuth {
        anonymous_download: true,
        ..DdiAuth::default()
    });
    hb.deploy(ID, rootfs(b"abc"), Assignment::forced());
    let dep_href = {
        let poll: Value = http
            .get(&base)
            .header("Authorization", format!("TargetToken {TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        link(&poll, "deploymentBase").unwrap()
    };
    assert_eq!(get(dep_href.clone(), vec![]).await, 401);
    let dep: Value = http
        .get(&dep_href)
        .header("Authorization", format!("TargetToken {TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(get(download_href(&dep), vec![]).await, 200);
    hb.set_auth(DdiAuth {
        target_token: false,
        anonymous: true,
        ..DdiAuth::default()
    });
    assert_eq!(get(dep_href, vec![]).await, 200);

    // The log names the credentials each request carried.
    let kinds: Vec<AuthKind> = hb.requests().iter().map(|r| r.auth).collect();
    for k in [
        AuthKind::None,
        AuthKind::TargetToken,
        AuthKind::GatewayToken,
        AuthKind::Header,
    ] {
        assert!(kinds.contains(&k), "{k:?}");
    }
    let first = &hb.requests()[0];
    assert_eq!(
        (first.method.as_str(), first.route, first.status, first.auth),
        ("GET", Route::Poll, 401, AuthKind::None)
    );
    assert_eq!(first.controller_id.as_deref(), Some(ID));
    assert_eq!(first.tenant.as_deref(), Some("acme"));
    assert!(hb.ddi_unauthorized_calls() >= 10);
}

#[tokio::test]
async fn percent_encoded_ids_and_external_downloads() {
    let hb = FakeHawkbit::start();
    let id = "rack-7/dev@1";
    hb.insert_target_with_token(id, TOKEN);
    let http = http();
    let base = hb.controller_url(id);
    assert!(
        base.ends_with("/DEFAULT/controller/v1/rack-7%2Fdev%401"),
        "{base}"
    );
    let auth = format!("TargetToken {TOKEN}");
    let poll: Value = http
        .get(&base)
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        link(&poll, "configData").unwrap(),
        format!("{base}/configData")
    );
    assert_eq!(hb.polls(id), 1);
    assert_eq!(hb.requests()[0].controller_id.as_deref(), Some(id));

    // An artifact on "external storage": no DDI auth, and an Authorization header refused.
    hb.deploy(
        id,
        DistributionSet::single("x", "1", Artifact::bytes("../evil name", b"xyz").external()),
        Assignment::forced(),
    );
    let poll: Value = http
        .get(&base)
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dep: Value = http
        .get(link(&poll, "deploymentBase").unwrap())
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let art = &dep["deployment"]["chunks"][0]["artifacts"][0];
    assert_eq!(art["filename"], "../evil name");
    let url = download_href(&dep);
    assert_eq!(url, format!("{}/external/1/..%2Fevil%20name", hb.url));
    let with_auth = http
        .get(&url)
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(with_auth.status(), 401);
    let without = http.get(&url).send().await.unwrap();
    assert_eq!(without.status(), 200);
    assert_eq!(without.bytes().await.unwrap().as_ref(), b"xyz");
    assert_eq!(hb.requests_to(Route::ExternalArtifact).len(), 2);
}
