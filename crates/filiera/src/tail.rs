//! `filiera tail`: follow the events, one JSON line each, over HTTP (the server's SSE feed) or
//! over NATS (a JetStream consumer on `FILIERA_EVENTS`).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;

/// What to follow.
pub struct TailArgs {
    /// `http(s)://…` of a running server, or the NATS URL with `nats`.
    pub url: String,
    pub nats: bool,
    pub territory: Option<String>,
    pub event_type: Option<String>,
    /// HTTP: start after this global position.
    pub after: i64,
    /// NATS: durable consumer name.
    pub durable: Option<String>,
    /// HTTP: the bearer token.
    pub token: Option<String>,
}

/// Follows until interrupted.
pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    if args.nats {
        return filiera_relay::tail_nats(
            &args.url,
            args.durable,
            args.territory,
            args.event_type,
            |event| print_line(&event),
        )
        .await
        .context("cannot follow the NATS stream");
    }
    follow_http(args).await
}

fn print_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, value);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Follows `GET /v1/events/stream`, reconnecting with `Last-Event-ID` after a failure.
async fn follow_http(args: TailArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut last = args.after;
    let mut url = reqwest::Url::parse(&format!(
        "{}/v1/events/stream",
        args.url.trim_end_matches('/')
    ))
    .with_context(|| format!("`{}` is not a URL", args.url))?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(t) = &args.territory {
            query.append_pair("territory", t);
        }
        if let Some(t) = &args.event_type {
            query.append_pair("type", t);
        }
    }
    loop {
        let mut request = client
            .get(url.clone())
            .header("Last-Event-ID", last.to_string());
        if let Some(token) = &args.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await;
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED && args.token.is_none() => {
                bail!(
                    "the server wants a bearer token: pass --token or set FILIERA_TOKEN \
                     (`filiera token issue --role subscriber --territory CODE`)"
                );
            }
            Ok(r) if r.status().is_client_error() => {
                let body = r.text().await.unwrap_or_default();
                bail!("the server refused the tail: {body}");
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), "feed unavailable, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot reach the server, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut body = response.bytes_stream();
        // Bytes, not text: a character may be split across two chunks.
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                let frame = String::from_utf8_lossy(&frame);
                let mut id = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse::<i64>().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let (Some(id), Ok(item)) = (id, serde_json::from_str(&data)) {
                    print_line(&item);
                    last = id;
                }
            }
        }
        tracing::warn!(after = last, "feed stream ended, reconnecting");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
