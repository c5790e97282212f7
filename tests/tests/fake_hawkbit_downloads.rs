//! The fake's artifact downloads: headers, Range (single, suffix, multipart, 416),
//! If-Range and If-Match, `.MD5SUM`, the DOWNLOAD entry of a full download, injected drops
//! and stalls with resumption, throttling, generated content beyond 4 GiB and corrupted
//! artifacts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_hawkbit_common;

use std::time::{Duration, Instant};

use fake_hawkbit_common::{Device, ID, download_href, header, read_all, rootfs};
use nexa_testkit::hawkbit::{
    Artifact, Assignment, Chunk, DistributionSet, DownloadFault, Hashes, Route, StatusKind,
    generated_bytes,
};
use serde_json::json;

#[tokio::test]
async fn artifact_download_range_if_range_and_md5sum() {
    let d = Device::new();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let action = d.hb.deploy(ID, rootfs(&data), Assignment::forced());
    let dep = d.get_json(&d.deployment_href().await.unwrap()).await;
    let url = download_href(&dep);
    let sha1 = Hashes::of(&data).sha1;
    let etag = format!("\"{sha1}\"");

    let r = d.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").unwrap(), "1000");
    assert_eq!(
        header(&r, "content-type").unwrap(),
        "application/octet-stream"
    );
    assert_eq!(header(&r, "accept-ranges").unwrap(), "bytes");
    assert_eq!(header(&r, "etag").unwrap(), etag);
    assert_eq!(
        header(&r, "content-disposition").unwrap(),
        "attachment;filename=rootfs.raucb"
    );
    assert_eq!(header(&r, "x-content-type-options").unwrap(), "nosniff");
    assert!(header(&r, "last-modified").unwrap().ends_with(" GMT"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    let downloads = |d: &Device| {
        d.hb.statuses(action)
            .iter()
            .filter(|s| s.kind == StatusKind::Download)
            .count()
    };
    assert_eq!(downloads(&d), 1, "a full download is noted");

    let ranged = |range: &'static str, if_range: Option<String>| {
        let d = &d;
        let url = url.clone();
        async move {
            let mut req = d
                .http
                .get(&url)
                .header("Authorization", &d.auth)
                .header("Range", range);
            if let Some(v) = if_range {
                req = req.header("If-Range", v);
            }
            req.send().await.unwrap()
        }
    };
    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=900-", 900, 999),
        ("bytes=-10", 990, 999),
        ("bytes=990-5000", 990, 999),
    ] {
        let r = ranged(range, None).await;
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            header(&r, "content-range").unwrap(),
            format!("bytes {start}-{end}/1000")
        );
        assert_eq!(
            header(&r, "content-length").unwrap(),
            (end - start + 1).to_string()
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[start..=end]);
    }
    for range in ["bytes=1000-", "bytes=5-1", "bytes=x-y"] {
        let r = ranged(range, None).await;
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(header(&r, "content-range").unwrap(), "bytes */1000");
    }
    assert_eq!(downloads(&d), 1, "Range requests are not noted");

    // If-Range: the same content resumes, another content restarts with 200.
    let r = ranged("bytes=500-", Some(etag.clone())).await;
    assert_eq!(r.status(), 206);
    let r = ranged("bytes=500-", Some("\"0000\"".into())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
    // If-Match naming another content: 412.
    let r = d
        .http
        .get(&url)
        .header("Authorization", &d.auth)
        .header("If-Match", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);

    // Several ranges: multipart/byteranges.
    let r = ranged("bytes=0-1,998-999", None).await;
    assert_eq!(r.status(), 206);
    let ctype = header(&r, "content-type").unwrap();
    let boundary = ctype.split("boundary=").nth(1).unwrap().to_owned();
    let body = r.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with(&format!("--{boundary}\r\n")), "{text}");
    assert!(text.contains("Content-Range: bytes 0-1/1000\r\n\r\n\u{0}\u{1}\r\n"));
    assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));

    // .MD5SUM: `<md5>  <filename>`.
    let md5 = d.get(&format!("{url}.MD5SUM")).await;
    assert_eq!(md5.status(), 200);
    assert_eq!(header(&md5, "content-type").unwrap(), "text/plain");
    assert_eq!(
        md5.text().await.unwrap(),
        format!("{}  rootfs.raucb", Hashes::of(&data).md5)
    );
    assert_eq!(d.get(&format!("{url}.nope")).await.status(), 404);

    // After the action closed a full download is refused, a ranged one still served.
    assert_eq!(d.feedback(action, "closed", "success").await, 200);
    assert_eq!(d.get(&url).await.status(), 404);
    assert_eq!(ranged("bytes=0-0", None).await.status(), 206);
}

#[tokio::test]
async fn dropped_downloads_resume_and_stalls_and_throttling() {
    let d = Device::new();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    d.hb.deploy(ID, rootfs(&data), Assignment::forced());
    let url = download_href(&d.get_json(&d.deployment_href().await.unwrap()).await);
    let etag = format!("\"{}\"", Hashes::of(&data).sha1);

    d.hb.inject_download(DownloadFault::drop_after(30_000).times(2));
    let r = d.get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length").unwrap(), "100000");
    let (mut got, failed) = read_all(r).await;
    assert!(failed, "the body must end in an error");
    assert_eq!(got.len(), 30_000);
    // Resume; dropped again 30 000 bytes later, then complete.
    while got.len() < data.len() {
        let r = d
            .http
            .get(&url)
            .header("Authorization", &d.auth)
            .header("Range", format!("bytes={}-", got.len()))
            .header("If-Range", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        let (part, _) = read_all(r).await;
        got.extend_from_slice(&part);
    }
    assert_eq!(got, data);
    let ranged = d.requests_to_ranges();
    assert_eq!(ranged, ["bytes=30000-", "bytes=60000-"]);

    // A stall: the body pauses, then completes.
    d.hb.inject_download(DownloadFault::stall_after(1000, Duration::from_millis(400)));
    let t = Instant::now();
    let (body, failed) = read_all(d.get(&url).await).await;
    assert!(!failed && body == data);
    assert!(t.elapsed() >= Duration::from_millis(400));

    // Throttled to 200 kB/s: 100 kB take about half a second.
    d.hb.set_download_rate(Some(200_000));
    let t = Instant::now();
    let (body, _) = read_all(d.get(&url).await).await;
    assert_eq!(body, data);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

impl Device {
    fn requests_to_ranges(&self) -> Vec<String> {
        self.hb
            .requests_to(Route::Artifact)
            .iter()
            .filter_map(|r| r.header("range").map(str::to_owned))
            .collect()
    }
}

#[tokio::test]
async fn generated_content_streams_and_corruption_shows() {
    let d = Device::new();
    // 3 MiB generated, hashed by the fake; plus a 5 GB one with declared hashes.
    let size = 3 * 1024 * 1024 + 17;
    let big = 5_000_000_000_u64;
    let declared = Hashes {
        sha1: "0".repeat(40),
        md5: "0".repeat(32),
        sha256: "0".repeat(64),
    };
    let set = DistributionSet::new("gen", "1").chunk(
        Chunk::new("os", "gen", "1")
            .artifact(Artifact::generated("gen.bin", size, 42))
            .artifact(Artifact::generated("huge.bin", big, 7).with_hashes(declared)),
    );
    d.hb.deploy(ID, set, Assignment::forced());
    let dep = d.get_json(&d.deployment_href().await.unwrap()).await;
    let arts = &dep["deployment"]["chunks"][0]["artifacts"];
    assert_eq!(arts[1]["size"], json!(big), "64-bit size");
    let expected = generated_bytes(42, 0, size as usize);
    assert_eq!(arts[0]["hashes"]["sha256"], Hashes::of(&expected).sha256);

    let body = d.get(&download_href(&dep)).await.bytes().await.unwrap();
    assert_eq!(body.as_ref(), &expected[..]);
    let huge = arts[1]["_links"]["download-http"]["href"].as_str().unwrap();
    let r = d
        .http
        .get(huge)
        .header("Authorization", &d.auth)
        .header("Range", "bytes=4999999990-")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-range").unwrap(),
        format!("bytes 4999999990-4999999999/{big}")
    );
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &generated_bytes(7, big - 10, 10)[..]
    );

    // Corrupted: same size and advertised hashes, different content.
    d.hb.set_corrupted("gen.bin", true);
    let bad = d.get(&download_href(&dep)).await.bytes().await.unwrap();
    assert_eq!(bad.len(), expected.len());
    assert_ne!(
        Hashes::of(&bad).sha256,
        arts[0]["hashes"]["sha256"].as_str().unwrap()
    );
    d.hb.set_corrupted("gen.bin", false);
    let good = d.get(&download_href(&dep)).await.bytes().await.unwrap();
    assert_eq!(good.as_ref(), &expected[..]);

    // The flipped byte sits in the middle.
    let d2 = Device::new();
    let set = DistributionSet::single(
        "c",
        "1",
        Artifact::bytes("c.bin", b"0123456789").corrupted(),
    );
    d2.hb.deploy(ID, set, Assignment::forced());
    let dep = d2.get_json(&d2.deployment_href().await.unwrap()).await;
    let body = d2.get(&download_href(&dep)).await.bytes().await.unwrap();
    assert_eq!(body.as_ref(), b"01234\xca6789");
}
