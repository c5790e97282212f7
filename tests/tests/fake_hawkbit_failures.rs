//! The failures a test can make the fake show: injected 429 (with Retry-After), 5xx and
//! 410 answers aimed at a route, ahead of authentication and without effect, and a server
//! that is down — closing connections, for a period, or hanging until it comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_hawkbit_common;

use std::time::{Duration, Instant};

use fake_hawkbit_common::{Device, ID, download_href, header, rootfs};
use nexa_testkit::hawkbit::{Assignment, DownMode, Fault, Route};

#[tokio::test]
async fn injected_429_5xx_and_410() {
    let d = Device::new();
    d.hb.inject(Fault::too_many_requests(7).times(2).on(Route::Poll));
    for _ in 0..2 {
        let r = d.get(&d.base()).await;
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, "retry-after").unwrap(), "7");
    }
    assert_eq!(d.get(&d.base()).await.status(), 200);

    // Any route, before authentication.
    d.hb.inject(Fault::status(503).times(1));
    let r = d.http.get(d.base()).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(d.http.get(d.base()).send().await.unwrap().status(), 401);

    let action = d.hb.deploy(ID, rootfs(b"x"), Assignment::forced());
    d.hb.inject(Fault::gone().on(Route::DeploymentFeedback));
    d.hb.inject(Fault::status(502).on(Route::Artifact));
    assert_eq!(d.feedback(action, "proceeding", "none").await, 410);
    assert!(
        d.hb.feedback(action).is_empty(),
        "an injected answer changes nothing"
    );
    assert_eq!(d.feedback(action, "proceeding", "none").await, 200);
    let url = download_href(&d.get_json(&d.deployment_href().await.unwrap()).await);
    assert_eq!(d.get(&url).await.status(), 502);
    assert_eq!(d.get(&url).await.status(), 200);

    let statuses: Vec<(Route, u16)> =
        d.hb.requests()
            .iter()
            .map(|r| (r.route, r.status))
            .collect();
    assert_eq!(
        statuses,
        [
            (Route::Poll, 429),
            (Route::Poll, 429),
            (Route::Poll, 200),
            (Route::Poll, 503),
            (Route::Poll, 401),
            (Route::DeploymentFeedback, 410),
            (Route::DeploymentFeedback, 200),
            (Route::Poll, 200),
            (Route::DeploymentBase, 200),
            (Route::Artifact, 502),
            (Route::Artifact, 200),
        ]
    );
}

#[tokio::test]
async fn server_down_closes_or_hangs_and_comes_back() {
    let d = Device::new();
    assert_eq!(d.get(&d.base()).await.status(), 200);

    d.hb.set_down(DownMode::Close);
    for _ in 0..3 {
        let r = d
            .http
            .get(d.base())
            .header("Authorization", &d.auth)
            .send()
            .await;
        assert!(r.is_err(), "down: {r:?}");
    }
    d.hb.set_up();
    assert_eq!(d.get(&d.base()).await.status(), 200);

    // Down for a period: requests fail until it is over.
    d.hb.down_for(Duration::from_millis(500), DownMode::Close);
    let t = Instant::now();
    let mut failures = 0;
    loop {
        match d
            .http
            .get(d.base())
            .header("Authorization", &d.auth)
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => break,
            _ => failures += 1,
        }
        assert!(t.elapsed() < Duration::from_secs(10), "never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failures > 0 && t.elapsed() >= Duration::from_millis(450));

    // Hanging: nothing answers (client timeouts fire); back up, it answers again.
    d.hb.set_down(DownMode::Hang);
    let r = d
        .http
        .get(d.base())
        .header("Authorization", &d.auth)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    let polls = d.hb.polls(ID);
    let waiting = {
        let http = d.http.clone();
        let url = d.base();
        let auth = d.auth.clone();
        tokio::spawn(async move {
            http.get(url)
                .header("Authorization", auth)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(d.hb.polls(ID), polls, "nothing handled while hanging");
    d.hb.set_up();
    assert_eq!(
        waiting.await.unwrap().unwrap(),
        200,
        "the waiting request is answered"
    );
    assert_eq!(d.get(&d.base()).await.status(), 200);
}
