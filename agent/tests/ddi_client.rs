//! The agent's DDI client and resumable download against the test kit's stateful fake
//! hawkBit: polling with a target token, the deployment document, feedback recorded by the
//! server, 410 after close, and downloads that are cut twice and still end verified, or that
//! never become visible when the content does not match its hash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nexa_agent::backoff::Backoff;
use nexa_agent::certs::CertsDir;
use nexa_agent::hawkbit::client::{DdiClient, DdiError};
use nexa_agent::hawkbit::digest::Expected;
use nexa_agent::hawkbit::download::{self, DownloadError, Retry, Spool, Wanted};
use nexa_agent::hawkbit::model::{Execution, Feedback, Finished, Handling};
use nexa_agent::hawkbit::settings::{AfterInstall, AuthMode, HawkbitSettings, RebootVia};
use nexa_testkit::hawkbit::{
    Artifact, Assignment, DistributionSet, DownloadFault, FakeHawkbit, generated_bytes,
};

const DEVICE: &str = "dev-ota-1";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Setup {
    fake: FakeHawkbit,
    client: DdiClient,
    tmp: tempfile::TempDir,
}

fn setup() -> Setup {
    let fake = FakeHawkbit::start();
    fake.insert_target_with_token(DEVICE, TOKEN);
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let settings = HawkbitSettings {
        stall_timeout: nexa_agent::hawkbit::settings::DEFAULT_STALL_TIMEOUT,
        url: format!("{}/", fake.url).parse().unwrap(),
        tenant: "DEFAULT".into(),
        controller_id: None,
        auth: AuthMode::TargetToken { file: token_file },
        ca_file: None,
        data_dir: "/nonexistent".into(),
        spool_dir: tmp.path().join("spool"),
        after_install: AfterInstall::Reboot(RebootVia::Logind),
    };
    let client =
        DdiClient::new(&settings, DEVICE, &CertsDir::new(tmp.path().join("certs"))).unwrap();
    Setup { fake, client, tmp }
}

fn quick_retry() -> Retry {
    Retry {
        attempts: 5,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            give_up_after: Duration::MAX,
        },
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn poll_deployment_feedback_and_a_download_cut_twice() {
    let s = setup();
    let size = 3 * 1024 * 1024 + 17;
    let action = s.fake.deploy(
        DEVICE,
        DistributionSet::single(
            "rootfs",
            "1.0.75",
            Artifact::generated("rootfs.raucb", size, 7),
        ),
        Assignment::forced(),
    );
    s.fake
        .inject_download(DownloadFault::drop_after(1_000_000).times(2));
    let rt = rt();
    rt.block_on(async {
        let base = s.client.poll().await.unwrap();
        let href = base
            .links
            .deployment_base
            .expect("deploymentBase link")
            .href;
        let d = s.client.deployment(&href).await.unwrap();
        assert_eq!(d.id, action.to_string());
        assert_eq!(d.deployment.update, Handling::Forced);
        let artifact = &d.deployment.chunks[0].artifacts[0];
        assert_eq!(artifact.size, size);

        s.client
            .feedback(
                &d.id,
                &Feedback::new(1, Execution::Proceeding, Finished::None).detail("retrieved"),
            )
            .await
            .unwrap();

        let digest = Expected::strongest(&artifact.hashes).unwrap();
        assert_eq!(digest.algorithm(), "sha256");
        let name = download::sanitize(&artifact.filename).unwrap();
        let spool = Spool::new(s.tmp.path().join("spool"));
        let mut seen = Vec::new();
        let path = download::fetch(
            s.client.http(),
            s.client.headers(),
            &spool,
            &Wanted {
                url: artifact.download_href().unwrap(),
                name: &name,
                size,
                digest: &digest,
            },
            quick_retry(),
            &mut |done, total| seen.push((done, total)),
        )
        .await
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, generated_bytes(7, 0, size as usize));
        assert_eq!(seen.last(), Some(&(size, size)));
        // Two cuts, so three requests, the last two resuming with a range.
        let ranges: Vec<Option<String>> = s
            .fake
            .requests()
            .iter()
            .filter(|r| r.route.is_download())
            .map(|r| r.header("range").map(str::to_owned))
            .collect();
        assert_eq!(ranges.len(), 3, "{ranges:?}");
        assert_eq!(ranges[0], None);
        assert!(ranges[1].as_deref().unwrap().starts_with("bytes="));
        assert!(ranges[2].is_some());
        // Nothing but the verified file is left in the spool.
        let names: Vec<_> = std::fs::read_dir(spool.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["rootfs.raucb"]);

        s.client
            .feedback(
                &d.id,
                &Feedback::new(2, Execution::Closed, Finished::Success),
            )
            .await
            .unwrap();
        let again = s
            .client
            .feedback(
                &d.id,
                &Feedback::new(3, Execution::Closed, Finished::Success),
            )
            .await;
        assert!(matches!(again, Err(DdiError::Gone { .. })), "{again:?}");
        let base = s.client.poll().await.unwrap();
        assert!(base.links.deployment_base.is_none());
    });
    let fb = s.fake.feedback(action);
    assert!(
        fb.iter()
            .any(|f| f.details.iter().any(|d| d == "retrieved"))
    );
    assert!(!s.fake.action(action).is_active());
}

#[test]
fn a_corrupt_artifact_never_becomes_visible() {
    let s = setup();
    let size = 256 * 1024;
    s.fake.deploy(
        DEVICE,
        DistributionSet::single(
            "rootfs",
            "2",
            Artifact::generated("bad.raucb", size, 9).corrupted(),
        ),
        Assignment::forced(),
    );
    let rt = rt();
    let err = rt.block_on(async {
        let base = s.client.poll().await.unwrap();
        let d = s
            .client
            .deployment(&base.links.deployment_base.unwrap().href)
            .await
            .unwrap();
        let artifact = &d.deployment.chunks[0].artifacts[0];
        let digest = Expected::strongest(&artifact.hashes).unwrap();
        let spool = Spool::new(s.tmp.path().join("spool"));
        download::fetch(
            s.client.http(),
            s.client.headers(),
            &spool,
            &Wanted {
                url: artifact.download_href().unwrap(),
                name: "bad.raucb",
                size,
                digest: &digest,
            },
            quick_retry(),
            &mut |_, _| {},
        )
        .await
        .unwrap_err()
    });
    assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(s.tmp.path().join("spool"))
            .unwrap()
            .count(),
        0,
        "nothing half-written may stay for RAUC to pick up"
    );
}

#[test]
fn wrong_credentials_and_rate_limits_are_classified() {
    let s = setup();
    let rt = rt();
    s.fake.inject(
        nexa_testkit::hawkbit::Fault::too_many_requests(7).on(nexa_testkit::hawkbit::Route::Poll),
    );
    let e = rt.block_on(s.client.poll()).unwrap_err();
    assert!(matches!(e, DdiError::RateLimited { .. }), "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert!(e.is_transient());

    let token_file = s.tmp.path().join("wrong");
    std::fs::write(&token_file, "not-the-token").unwrap();
    let settings = HawkbitSettings {
        stall_timeout: nexa_agent::hawkbit::settings::DEFAULT_STALL_TIMEOUT,
        url: format!("{}/", s.fake.url).parse().unwrap(),
        tenant: "DEFAULT".into(),
        controller_id: None,
        auth: AuthMode::TargetToken { file: token_file },
        ca_file: None,
        data_dir: "/nonexistent".into(),
        spool_dir: s.tmp.path().join("spool"),
        after_install: AfterInstall::Report,
    };
    let bad = DdiClient::new(&settings, DEVICE, &CertsDir::new(s.tmp.path())).unwrap();
    let e = rt.block_on(bad.poll()).unwrap_err();
    assert!(matches!(e, DdiError::Unauthorized { .. }), "{e}");
    assert!(!e.is_transient());
}

#[test]
fn a_download_left_by_a_previous_run_is_resumed_and_verified() {
    let s = setup();
    let size = 2 * 1024 * 1024 + 5;
    s.fake.deploy(
        DEVICE,
        DistributionSet::single("rootfs", "4", Artifact::generated("r.raucb", size, 11)),
        Assignment::forced(),
    );
    s.fake
        .inject_download(DownloadFault::drop_after(700_000).times(1));
    let rt = rt();
    let spool = Spool::new(s.tmp.path().join("spool"));
    rt.block_on(async {
        let base = s.client.poll().await.unwrap();
        let d = s
            .client
            .deployment(&base.links.deployment_base.unwrap().href)
            .await
            .unwrap();
        let artifact = &d.deployment.chunks[0].artifacts[0];
        let digest = Expected::strongest(&artifact.hashes).unwrap();
        let wanted = Wanted {
            url: artifact.download_href().unwrap(),
            name: "r.raucb",
            size,
            digest: &digest,
        };
        // The first run gives up after one cut attempt (as if the agent stopped there).
        let once = Retry {
            attempts: 1,
            ..quick_retry()
        };
        let first = download::fetch(
            s.client.http(),
            s.client.headers(),
            &spool,
            &wanted,
            once,
            &mut |_, _| {},
        )
        .await;
        assert!(
            matches!(first, Err(DownloadError::GaveUp { .. })),
            "{first:?}"
        );
        let part = spool.dir().join("r.raucb.part");
        let kept = std::fs::metadata(&part).unwrap().len();
        assert!(kept > 0 && kept < size, "{kept}");
        // The next run continues from the part file and checks the whole hash.
        let path = download::fetch(
            s.client.http(),
            s.client.headers(),
            &spool,
            &wanted,
            quick_retry(),
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(path).unwrap(),
            generated_bytes(11, 0, size as usize)
        );
    });
    let ranged = s
        .fake
        .requests()
        .iter()
        .filter(|r| r.route.is_download() && r.header("range").is_some())
        .count();
    assert_eq!(ranged, 1, "the second run asked only for the rest");
}
