//! Blocking JSON calls to a test bridge's HTTP API, for tests that drive it directly.

use serde_json::Value;

use crate::TestServer;

/// An answer: status, `Retry-After`, body (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Value,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Sends `method path` with an optional bearer token and JSON body; blocks until answered.
pub fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let http = server.http_client();
        let mut req = http.request(method, format!("{}{path}", server.url));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = resp.bytes().await.expect("body");
        Reply {
            status,
            retry_after,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    })
}

/// `POST path` with a JSON body.
pub fn post(server: &TestServer, path: &str, bearer: Option<&str>, body: &Value) -> Reply {
    call(server, reqwest::Method::POST, path, bearer, Some(body))
}

/// `GET path`.
pub fn get(server: &TestServer, path: &str, bearer: Option<&str>) -> Reply {
    call(server, reqwest::Method::GET, path, bearer, None)
}
