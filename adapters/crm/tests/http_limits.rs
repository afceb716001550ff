//! The shared executor refuses a response body larger than its limit instead of
//! reading it all into memory, and does not retry it.

use std::time::Duration;

use syncledger_crm::http::{build_client, Executor, Lane, RetryPolicy, MAX_BODY_BYTES};
use syncledger_crm::CrmError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one oversized JSON body per connection; returns the address and a counter
/// of connections served.
async fn oversized_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = tx.send(());
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let size = MAX_BODY_BYTES + 1024;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    let n = chunk.len().min(size - sent);
                    if socket.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test]
async fn an_oversized_body_is_refused_once() {
    let (url, mut connections) = oversized_server().await;
    // The test server listens on loopback.
    let guard = syncledger_crm::outbound::Guard::custom(
        syncledger_crm::outbound::outbound::OutboundPolicy::development(),
    );
    let client =
        build_client(Duration::from_secs(2), Duration::from_secs(30), &guard).expect("client");
    let policy = RetryPolicy {
        max_retries: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    let executor = Executor::new(client, guard, None, None, policy);
    let result = executor
        .send::<serde_json::Value>(Lane::General, |c| c.get(&url))
        .await;
    match result {
        Err(CrmError::Malformed(message)) => assert!(message.contains("larger than"), "{message}"),
        other => panic!("expected a refused body, got {other:?}"),
    }
    connections.recv().await.expect("one connection");
    assert!(connections.try_recv().is_err(), "not retried");
}
